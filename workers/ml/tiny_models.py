"""Tiny randomly initialised models, built locally so tests and the offline demo need no downloads.

Each builder saves a complete model folder with ``save_pretrained`` so it is loaded by the very same
``from_pretrained`` code as a real hub id (e.g. ``Salesforce/blip-image-captioning-large``,
``stable-diffusion-v1-5/stable-diffusion-v1-5``, ``stabilityai/stable-diffusion-xl-base-1.0``). The
weights are random: outputs have the right shape and type, never the right meaning.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

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


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte → printable character table: byte-level BPE never meets an unknown character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def tiny_clip_tokenizer() -> object:
    """A CLIP BPE tokenizer from an in-memory vocabulary: every byte, every byte ending a word, a few merges."""
    from transformers import CLIPTokenizer

    characters = list(_bytes_to_unicode().values())
    # A handful of merges so that common words become single tokens, like the real (49,408-token) vocabulary.
    merges = [("t", "h"), ("th", "e</w>"), ("o", "f</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n</w>"),
              ("o", "n</w>"), ("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>")]
    tokens = [*characters, *(c + "</w>" for c in characters), *(a + b for a, b in merges)]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    # The special tokens come last, as in the real vocabulary (so the end-of-text id is the largest, never 2).
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    # transformers annotates merges as strings; the tokenizer takes (left, right) pairs as well.
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)  # type: ignore[arg-type]


def _tiny_clip_config(tokenizer: Any, *, hidden_size: int = 32, projection_dim: int = 32) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        hidden_act="quick_gelu",
        # Pooling takes the hidden state at the eos token; the ids must be the tokenizer's.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_vae(scaling_factor: float) -> object:
    from diffusers import AutoencoderKL

    # Four blocks like the real VAE, so latents are 1/8 of the image side (the tiny UNet then runs on
    # 16×16 latents at the tiny preset's 128 px): bucket sides that are multiples of 64 stay valid.
    blocks = (32, 32, 64, 64)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=1,
        latent_channels=4,
        sample_size=128,
        scaling_factor=scaling_factor,
    )


def _sd_scheduler() -> object:
    from diffusers import EulerDiscreteScheduler

    # The betas, step count and prediction type of SD 1.5 and SDXL, so DDPMScheduler.from_pretrained(
    # path, subfolder="scheduler") gives the trainer the same noise schedule as the real models.
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )


def _save_pipeline(pipeline: object, path: Path, kind: str, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        pipeline.save_pretrained(build_dir)  # type: ignore[attr-defined]
        (build_dir / MARKER).write_text(json.dumps({"kind": kind, "version": BUILD_VERSION, "seed": seed}))
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    _publish(build_dir, path)
    return path


def build_tiny_sd15(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny Stable Diffusion 1.x pipeline folder into ``path``.

    Same layout as ``stable-diffusion-v1-5/stable-diffusion-v1-5``: ``StableDiffusionPipeline.from_pretrained(path)``
    and ``UNet2DConditionModel.from_pretrained(path, subfolder="unet")`` (etc.) load it.
    """
    path = Path(path)
    if _is_complete(path, "sd15", seed):
        return path

    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(_tiny_clip_config(tokenizer))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=16,  # × 8 (VAE) = 128 px, the tiny preset's resolution
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    pipeline = StableDiffusionPipeline(
        vae=_tiny_vae(0.18215), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=_sd_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return _save_pipeline(pipeline, path, "sd15", seed)


def build_tiny_sdxl(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny Stable Diffusion XL pipeline folder into ``path``.

    Same layout as ``stabilityai/stable-diffusion-xl-base-1.0``: two text encoders (the second with a
    projection, whose pooled output conditions the UNet with the size/crop time ids).
    """
    path = Path(path)
    if _is_complete(path, "sdxl", seed):
        return path

    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    tokenizer_2 = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(_tiny_clip_config(tokenizer, hidden_size=32))
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_clip_config(tokenizer_2, hidden_size=32, projection_dim=32))
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        # Both encoders' hidden states are concatenated: 32 + 32.
        cross_attention_dim=64,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # Six time ids (original size, crop top-left, target size), each embedded, plus the pooled text embedding.
        projection_class_embeddings_input_dim=6 * time_embed_dim + 32,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=_tiny_vae(0.13025), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=_sd_scheduler(), force_zeros_for_empty_prompt=True,
    )
    return _save_pipeline(pipeline, path, "sdxl", seed)


TINY_WHISPER_FILE = "whisper-tiny-random.pt"


def build_tiny_whisper(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny openai-whisper checkpoint into the folder ``path``; returns the ``.pt`` file.

    The checkpoint has the layout of the released ones (``{"dims", "model_state_dict"}``), so
    ``whisper.load_model(file)`` loads it like ``base.pt``. The multilingual vocabulary (51,865 tokens)
    and the 1,500-frame audio context are what the bundled tokenizer and 30 s windows require; the
    layers are one block of width 64. Random weights decode garbage, slowly unless ``sample_len`` is small.
    """
    path = Path(path)
    if _is_complete(path, "whisper", seed):
        return path / TINY_WHISPER_FILE

    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1, n_audio_layer=1,
        n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=1, n_text_layer=1,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Whisper(dims).eval()
    # The decoder's positional embedding is allocated with torch.empty (a checkpoint always overwrites
    # it): uninitialised memory would make every logit NaN.
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(std=0.02)

    path.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, build_dir / TINY_WHISPER_FILE)
        (build_dir / MARKER).write_text(json.dumps({"kind": "whisper", "version": BUILD_VERSION, "seed": seed}))
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    _publish(build_dir, path)
    return path / TINY_WHISPER_FILE


# Characters of the MMS-TTS English vocabulary (facebook/mms-tts-eng): lower-case letters, digits and
# a few marks; id 0 is the blank the tokenizer puts between characters.
_VITS_TOKENS = ["<pad>", " ", "'", "-", *"abcdefghijklmnopqrstuvwxyz", *"0123456789", "<unk>"]


def build_tiny_vits(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny VITS text-to-speech model and its tokenizer into ``path``.

    Loads with ``VitsModel.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``, like
    ``facebook/mms-tts-eng`` (character tokenizer without phonemizer, 16 kHz output).
    """
    path = Path(path)
    if _is_complete(path, "vits", seed):
        return path

    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    path.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        vocab = {token: index for index, token in enumerate(_VITS_TOKENS)}
        # VitsTokenizer only reads its vocabulary from a file.
        (build_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        tokenizer = VitsTokenizer(
            str(build_dir / "vocab.json"), language="eng", add_blank=True, normalize=True, phonemize=False
        )
        config = VitsConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            ffn_dim=32,
            flow_size=16,
            spectrogram_bins=33,
            upsample_initial_channel=16,
            # 8 × 8 × 4 = 256 samples per frame, as the real model's 8 × 8 × 2 × 2.
            upsample_rates=[8, 8, 4],
            upsample_kernel_sizes=[16, 16, 8],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1]],
            duration_predictor_filter_channels=16,
            duration_predictor_num_flows=1,
            prior_encoder_num_flows=1,
            prior_encoder_num_wavenet_layers=1,
            posterior_encoder_num_wavenet_layers=1,
            depth_separable_num_layers=1,
            sampling_rate=16_000,
            pad_token_id=vocab["<pad>"],
        )
        torch.manual_seed(seed)
        model = VitsModel(config).eval()
        model.save_pretrained(build_dir)
        tokenizer.save_pretrained(build_dir)
        (build_dir / MARKER).write_text(json.dumps({"kind": "vits", "version": BUILD_VERSION, "seed": seed}))
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    _publish(build_dir, path)
    return path


# Llama 3's names for the tokens CSM's processor and chat template use.
_CSM_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|AUDIO|>", "<|audio_eos|>", "<|finetune_right_pad_id|>")
# Like sesame/csm-1b's template: "<|begin_of_text|>[speaker]text<|end_of_text|>" then each audio of the turn.
CSM_CHAT_TEMPLATE = (
    "{%- for message in messages -%}{{ bos_token }}[{{ message['role'] }}]"
    "{%- for item in message['content'] if item['type'] == 'text' -%}{{ item['text'] }}{%- endfor -%}"
    "{{ eos_token }}{%- for item in message['content'] if item['type'] == 'audio' -%}<|AUDIO|><|audio_eos|>"
    "{%- endfor -%}{%- endfor -%}"
)


def build_tiny_csm(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny Sesame CSM (backbone, depth decoder, Mimi codec) and its processor into ``path``.

    Loads with ``CsmForConditionalGeneration.from_pretrained(path)`` and ``AutoProcessor.from_pretrained(path)``
    like ``sesame/csm-1b``: byte-level BPE tokenizer (no merges) with Llama 3's special tokens, the Encodec
    feature extractor at 24 kHz, and a Mimi codec with the real strides (1,920 samples a frame, 12.5 frames/s,
    which the processor's audio-token count assumes) but 4 codebooks of 64 codes.
    """
    path = Path(path)
    if _is_complete(path, "csm", seed):
        return path

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        CsmConfig,
        CsmForConditionalGeneration,
        CsmProcessor,
        EncodecFeatureExtractor,
        MimiConfig,
        PreTrainedTokenizerFast,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        vocab = {character: index for index, character in enumerate(_bytes_to_unicode().values())}
        for token in _CSM_SPECIALS:
            vocab[token] = len(vocab)
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        backend.add_special_tokens(list(_CSM_SPECIALS))
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",  # noqa: S106
                                            eos_token="<|end_of_text|>", pad_token="<|finetune_right_pad_id|>")  # noqa: S106
        processor = CsmProcessor(feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=24_000),
                                 tokenizer=tokenizer, chat_template=CSM_CHAT_TEMPLATE)
        ids: dict[str, Any] = {token: tokenizer.convert_tokens_to_ids(token) for token in _CSM_SPECIALS}
        codebooks, codes = 4, 64
        codec = MimiConfig(
            hidden_size=16, num_filters=4, num_residual_layers=1, codebook_size=codes, codebook_dim=16,
            num_quantizers=codebooks, vector_quantization_hidden_dimension=16, upsample_groups=16,
            num_hidden_layers=1, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2,
            sliding_window=16, max_position_embeddings=256,
        )
        config = CsmConfig(
            # The audio vocabulary is the codebook (the real one adds 3 ids the codec never sees; random
            # weights would sample them): its last code doubles as the padding code.
            num_codebooks=codebooks, vocab_size=codes, codebook_pad_token_id=codes - 1, codebook_eos_token_id=0,
            text_vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
            pad_token_id=ids["<|finetune_right_pad_id|>"], bos_token_id=ids["<|begin_of_text|>"],
            eos_token_id=ids["<|end_of_text|>"], audio_token_id=ids["<|AUDIO|>"],
            audio_eos_token_id=ids["<|audio_eos|>"], codec_config=codec.to_dict(),
            depth_decoder_config=dict(
                num_codebooks=codebooks, backbone_hidden_size=32, vocab_size=codes, hidden_size=16,
                intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                max_position_embeddings=codebooks + 1,
            ),
        )
        torch.manual_seed(seed)
        model = CsmForConditionalGeneration(config).eval()
        with torch.no_grad():
            # Mimi's codebooks start at zero (trained ones are learnt centroids): every frame would quantize to
            # code 0 and a reference clip would change nothing. Random centroids make the codes follow the audio.
            for name, buffer in model.codec_model.named_buffers():
                if name.endswith("codebook.embed_sum"):
                    buffer.normal_(0.0, 1.0)
            # Random weights at the usual 0.02 scale give near-uniform logits, so seeded sampling picks the same
            # codes whatever the context; a wider spread lets the context (the reference clip) show in the output.
            for name, parameter in model.named_parameters():
                if not name.startswith("codec_model.") and parameter.dim() > 1:
                    parameter.normal_(0.0, 0.5)
        model.save_pretrained(build_dir)
        processor.save_pretrained(build_dir)
        (build_dir / MARKER).write_text(json.dumps({"kind": "csm", "version": BUILD_VERSION, "seed": seed}))
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    _publish(build_dir, path)
    return path


def tiny_t5_tokenizer() -> object:
    """A T5-style (Unigram, "▁" word starts) tokenizer from an in-memory vocabulary: ids 0/1/2 are
    pad/eos/unk as in umt5; every printable ASCII character, and a few whole words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>", *(chr(c) for c in range(32, 127)), "▁",
              *(f"▁{word}" for word in _WORDS)]
    vocab = [(piece, 0.0 if index < 3 else -float(index)) for index, piece in enumerate(dict.fromkeys(pieces))]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    return T5Tokenizer(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",  # noqa: S106 (not secrets)
                       unk_token="<unk>", extra_ids=0, model_max_length=512)  # noqa: S106


def build_tiny_wan(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny Wan 2.2 TI2V image-to-video pipeline folder into ``path``.

    Same layout and components as ``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (one transformer with
    ``expand_timesteps``, the 48-channel VAE that compresses sides by 16 and 4 frames into one, a umt5
    encoder, no image encoder): ``WanImageToVideoPipeline.from_pretrained(path)`` loads it.
    """
    path = Path(path)
    if _is_complete(path, "wan", seed):
        return path

    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer: Any = tiny_t5_tokenizer()
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
        latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    # Wan's own scheduler settings (flow matching, shift 5 as the 5B model ships).
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    pipeline = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer,
        transformer_2=None, image_encoder=None, image_processor=None, expand_timesteps=True)
    return _save_pipeline(pipeline, path, "wan", seed)



# ---------------------------------------------------------------------------------- the 2026 DiT families

# Qwen's special tokens, in the order of the real vocabulary's added tokens (after the byte-level BPE).
_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<think>", "</think>"]
# A chat template with the fields the pipelines pass (Qwen3's own, trimmed: no tools, no reasoning history).
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


def tiny_qwen_tokenizer() -> object:
    """A Qwen2 byte-level BPE tokenizer from an in-memory vocabulary (every byte, merges for a few common
    words) with Qwen's chat special tokens and a chat template: what FLUX.2 [klein], Z-Image and
    Qwen-Image tokenise prompts with, 158 tokens instead of 151,646."""
    from transformers import Qwen2Tokenizer

    characters = list(_bytes_to_unicode().values())
    space = _bytes_to_unicode()[ord(" ")]  # "Ġ": a word's leading space, as GPT-2/Qwen spell it
    merges: list[tuple[str, str]] = []
    words = ["photo", "of", "the", "a", "in", "portrait"]
    tokens = list(characters)
    for word in words:
        # Merge "Ġ" + letters left to right, so " photo" becomes one token as in the real vocabulary.
        piece = space
        for letter in word:
            merges.append((piece, letter))
            piece += letter
            tokens.append(piece)
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    for special in _QWEN_SPECIALS:
        vocab[special] = len(vocab)
    # transformers annotates merges as strings; the tokenizer takes (left, right) pairs as well.
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)),  # type: ignore[arg-type]
                               model_max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": _QWEN_SPECIALS[1:]})
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


def _qwen3_config(tokenizer: Any, *, layers: int, hidden: int = 16) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, head_dim=hidden // 2, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=True)


def build_tiny_flux2_klein(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny FLUX.2 [klein] pipeline folder into ``path``.

    Same layout and classes as ``black-forest-labs/FLUX.2-klein-base-4B``: ``Flux2Transformer2DModel``
    (double- and single-stream blocks), ``AutoencoderKLFlux2`` (latents patchified 2×2 and normalised by
    its batch-norm statistics), a ``Qwen3ForCausalLM`` whose hidden states 9, 18 and 27 are stacked as the
    prompt embedding (so it has 27 layers, each 16 wide) and a Qwen2 tokenizer. Not distilled: the base model
    is the one to train.
    """
    path = Path(path)
    if _is_complete(path, "flux2_klein", seed):
        return path

    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    tokenizer: Any = tiny_qwen_tokenizer()
    text_encoder = Qwen3ForCausalLM(_qwen3_config(tokenizer, layers=27, hidden=16))
    # Four blocks: 1/8 of the side, then 2×2 patches of 4 channels → 16-channel tokens at 1/16.
    vae: Any = AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8,
        sample_size=128)
    with torch.no_grad():  # non-trivial batch-norm statistics, so the normalisation is exercised
        vae.bn.running_mean.normal_(std=0.1)
        vae.bn.running_var.uniform_(0.5, 2.0)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=3 * 16, timestep_guidance_channels=64, axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False)
    # FLUX.2's scheduler: dynamic shifting by image sequence length (the pipeline computes mu).
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    pipeline = Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                  transformer=transformer, is_distilled=False)
    return _save_pipeline(pipeline, path, "flux2_klein", seed)


def build_tiny_z_image(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny Z-Image pipeline folder into ``path``.

    Same layout and classes as ``Tongyi-MAI/Z-Image-Turbo``: ``ZImageTransformer2DModel``, an
    ``AutoencoderKL`` with 16 latent channels and a shift factor, a ``Qwen3Model`` text encoder (its
    penultimate hidden state conditions the transformer) and a Qwen2 tokenizer; shift 3 flow matching.
    """
    path = Path(path)
    if _is_complete(path, "z_image", seed):
        return path

    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    torch.manual_seed(seed)
    tokenizer: Any = tiny_qwen_tokenizer()
    text_encoder = Qwen3Model(_qwen3_config(tokenizer, layers=2, hidden=16))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(16, 16, 32, 32), layers_per_block=1,
        latent_channels=16, norm_num_groups=8, sample_size=128, scaling_factor=0.3611, shift_factor=0.1159)
    transformer: Any = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 4, 4], axes_lens=[1024, 64, 64])
    with torch.no_grad():  # allocated with torch.empty; a real checkpoint always overwrites them
        transformer.x_pad_token.normal_(std=0.02)
        transformer.cap_pad_token.normal_(std=0.02)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipeline = ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              transformer=transformer)
    return _save_pipeline(pipeline, path, "z_image", seed)


def build_tiny_qwen_image(path: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny Qwen-Image pipeline folder into ``path``.

    Same layout and classes as ``Qwen/Qwen-Image``: ``QwenImageTransformer2DModel``, the
    ``AutoencoderKLQwenImage`` (video-style, one frame; latents normalised by per-channel mean/std), a
    ``Qwen2_5_VLForConditionalGeneration`` text encoder (with its small vision tower) and a Qwen2 tokenizer.
    """
    path = Path(path)
    if _is_complete(path, "qwen_image", seed):
        return path

    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer: Any = tiny_qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer), "max_position_embeddings": 2048,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0, "bos_token_id": tokenizer.eos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"))
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    z_dim = 8
    # Sides / 8 like the real VAE (three down-samplings), one frame.
    vae = AutoencoderKLQwenImage(
        base_dim=16, z_dim=z_dim, dim_mult=[1, 1, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[round(0.05 * (i - z_dim / 2), 3) for i in range(z_dim)],
        latents_std=[round(1.0 + 0.1 * i, 3) for i in range(z_dim)])
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * z_dim, out_channels=z_dim, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")
    pipeline = QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                 transformer=transformer)
    return _save_pipeline(pipeline, path, "qwen_image", seed)

def ensure_tiny_models(root: Path) -> dict[str, Path]:
    """Build every tiny model under ``root`` (skipping complete builds); returns name → folder.

    ``"whisper"`` is the checkpoint file itself (``whisper.load_model`` takes a file, not a folder).
    """
    root = Path(root)
    return {
        "blip": build_tiny_blip(root / "tiny-blip"),
        "sd15": build_tiny_sd15(root / "tiny-sd15"),
        "sdxl": build_tiny_sdxl(root / "tiny-sdxl"),
        "whisper": build_tiny_whisper(root / "tiny-whisper"),
        "vits": build_tiny_vits(root / "tiny-vits"),
        "flux2_klein": build_tiny_flux2_klein(root / "tiny-flux2-klein"),
        "z_image": build_tiny_z_image(root / "tiny-z-image"),
        "qwen_image": build_tiny_qwen_image(root / "tiny-qwen-image"),
    }
