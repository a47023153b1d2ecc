"""Tiny randomly initialised models, built locally so tests and the offline demo need no downloads.

Each builder saves a complete model folder with ``save_pretrained`` so it is loaded by the very same
``from_pretrained`` code as a real hub id (e.g. ``Salesforce/blip-image-captioning-large``). The
weights are random: outputs have the right shape and type, never the right meaning.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

# Bumped whenever a builder changes, so an older build on disk is replaced instead of reused.
BUILD_VERSION = 1
MARKER = "tiny-model.json"

# Plain English words so that random captions at least look like words.
_WORDS = """
a an the of in on at with and or to from by for under over near behind beside between into out up down
is are was be being has have this that these those it its their his her my our your one two three four five
photo picture image portrait close-up shot view painting drawing render illustration selfie
man woman person people girl boy child baby friend couple group crowd model influencer
face smile eyes hair hand hands arm legs head lips nose beard glasses hat cap shirt dress jacket coat
sweater jeans shoes boots bag necklace earrings watch scarf suit tie skirt hoodie
cat dog bird horse cow sheep fish flower flowers tree trees grass leaf leaves plant garden forest park
street road city building house room kitchen bedroom office window door wall floor table chair sofa bed
car bike bus train boat plane sky cloud clouds sun moon star stars rain snow water sea ocean beach lake river
mountain mountains hill field desert sand rock stone bridge tower light lights lamp mirror phone camera
laptop book cup coffee tea glass bottle plate food pizza cake bread fruit apple banana salad
red orange yellow green blue purple pink brown black white gray grey gold silver dark bright colorful
big small large little tall short long young old new happy sad beautiful pretty cute smiling standing
sitting walking running looking holding wearing posing lying jumping dancing playing eating drinking
reading writing riding swimming talking laughing sleeping
morning evening night day sunset sunrise summer winter autumn spring weather background foreground
front back side top bottom left right center middle corner edge inside outside together alone
very some many few all each other another next first last same different open closed empty full
wooden metal plastic soft hard warm cold hot wet dry clean dirty modern vintage classic studio
natural outdoor indoor sunny cloudy foggy snowy blurry sharp detailed simple
""".split()

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]


def _is_complete(path: Path, kind: str, seed: int) -> bool:
    """A build is complete once its marker (written last) names this kind, version and seed."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == {"kind": kind, "version": BUILD_VERSION, "seed": seed}


def _publish(build_dir: Path, path: Path) -> None:
    """Move a finished build into place; a concurrent builder that got there first wins."""
    if path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            shutil.rmtree(build_dir, ignore_errors=True)
            raise FileExistsError(f"{path} exists and is not a tiny model build; refusing to overwrite it")
        shutil.rmtree(path, ignore_errors=True)
    try:
        build_dir.rename(path)
    except OSError:
        # Another process published its build between our check and the rename.
        shutil.rmtree(build_dir, ignore_errors=True)


def build_tiny_blip(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny BLIP captioning model and its processor into ``path``.

    Loads with ``BlipForConditionalGeneration.from_pretrained(path)`` and
    ``BlipProcessor.from_pretrained(path)``, like the real ``Salesforce/blip-image-captioning-*``.
    """
    path = Path(path)
    if _is_complete(path, "blip", seed):
        return path

    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    vocab = {token: i for i, token in enumerate(_SPECIALS + list(dict.fromkeys([*_WORDS, ".", ",", "'"])))}
    # Like the real BLIP tokenizer: a BERT WordPiece vocabulary whose bos token is [DEC], which the
    # text decoder starts every caption with.
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", model_max_length=64)  # noqa: S106 (not a secret)
    # transformers v5's default BlipImageProcessor needs torchvision; the PIL variant does not.
    image_processor = BlipImageProcessorPil(size={"height": 64, "width": 64})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    config = BlipConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
            # The default (1e-10) makes every image embed alike, so every image would get one caption.
            "initializer_range": 0.2,
        },
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            # Wider than the default 0.02 so the decoder listens to the image: distinct images get
            # distinct captions (and well-separated logits, so batched and one-by-one greedy decoding agree).
            "initializer_range": 0.1,
            "bos_token_id": vocab["[DEC]"],
            "eos_token_id": vocab["[SEP]"],
            "sep_token_id": vocab["[SEP]"],
            "pad_token_id": vocab["[PAD]"],
        },
        projection_dim=32,
        image_text_hidden_size=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()

    path.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(build_dir)
        processor.save_pretrained(build_dir)
        (build_dir / MARKER).write_text(json.dumps({"kind": "blip", "version": BUILD_VERSION, "seed": seed}))
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    _publish(build_dir, path)
    return path


def ensure_tiny_models(root: Path) -> dict[str, Path]:
    """Build every tiny model under ``root`` (skipping complete builds); returns name → folder."""
    root = Path(root)
    return {"blip": build_tiny_blip(root / "tiny-blip")}
