"""LyCORIS adapters (LoKr, LoHa) by their keys, without torch: which tensors make a module, which algorithm a
file uses, and what we refuse (DoRA, the other LyCORIS algorithms) with the keys named.

The names are LyCORIS' own (``lycoris/modules/lokr.py``, ``loha.py``), which kohya sd-scripts, ComfyUI,
A1111/Forge, ai-toolkit, SimpleTuner and OneTrainer all write: a module ``<stem>`` holds

* LoKr: ``<stem>.lokr_w1`` or ``lokr_w1_a`` + ``lokr_w1_b``; ``lokr_w2`` or ``lokr_w2_a`` + ``lokr_w2_b`` (+
  ``lokr_t2``, a Tucker core for convolutions); optional ``<stem>.alpha``.
* LoHa: ``hada_w1_a``, ``hada_w1_b``, ``hada_w2_a``, ``hada_w2_b`` (+ ``hada_t1``, ``hada_t2``); optional alpha.

peft's LoKr (what the studio trains) uses the same tensor names under ``transformer.<module>.`` with no alpha
key: its scale comes from the adapter config in the file's metadata (``lora_adapter_metadata``).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import InvalidInput

LOKR_PARTS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
LOHA_PARTS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LORA_PARTS = ("lora_down.weight", "lora_up.weight", "lora_A.weight", "lora_B.weight", "lora.down.weight",
              "lora.up.weight", "lora_mid.weight")
# Tensors of other LyCORIS algorithms or of DoRA: refused by name rather than dropped (what loaders that skip
# them silently render is not the LoRA its author trained).
REFUSED_PARTS = {
    "dora_scale": "DoRA (weight-decomposed) modules",
    "lokr_t1": "a LoKr Tucker core on w1 (no LyCORIS version writes it)",
    "oft_blocks": "OFT", "oft_diag": "OFT", "oft_R": "OFT", "boft_blocks": "BOFT",
    "diff": "full weight differences", "diff_b": "full bias differences", "set_weight": "full weights",
    "on_input": "(IA)³", "a1.weight": "GLoRA", "a2.weight": "GLoRA", "b1.weight": "GLoRA", "b2.weight": "GLoRA",
    "w_norm": "norm-layer weights", "b_norm": "norm-layer biases", "scalar": "a trained LyCORIS scalar",
    "lora_up.bias": "LoRA biases", "lora_B.bias": "LoRA biases",
}
ALGORITHMS = {"lokr": LOKR_PARTS, "loha": LOHA_PARTS}


def split_key(key: str) -> tuple[str, str]:
    """(module stem, part) of a LyCORIS/LoRA key; part '' when the suffix is none we know."""
    for part in (*LOKR_PARTS, *LOHA_PARTS, *LORA_PARTS, "alpha", *REFUSED_PARTS):
        if key.endswith("." + part):
            return key[: -len(part) - 1], part
    return key, ""


def algorithm(keys: Iterable[str]) -> str:
    """``lokr``, ``loha`` or ``lora`` (LoRA/LoCon): the file's adapter kind, one per file.

    Raises ``InvalidInput`` naming the keys of DoRA and of the LyCORIS algorithms we do not apply, and naming
    both kinds' modules when a file mixes LoKr and LoHa."""
    refused: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for key in keys:
        _, part = split_key(key)
        if part in REFUSED_PARTS:
            refused.setdefault(REFUSED_PARTS[part], []).append(key)
        for kind, parts in ALGORITHMS.items():
            if part in parts:
                kinds.setdefault(kind, key)
    if refused:
        raise InvalidInput("the file holds tensors we do not apply (so the LoRA would not render as trained): "
                           + "; ".join(f"{what}: {names(sorted(found), 5)}" for what, found in refused.items()))
    if len(kinds) > 1:
        raise InvalidInput("the file mixes LoKr and LoHa modules: " + ", ".join(f"{k} ({v})" for k, v in kinds.items()))
    return next(iter(kinds), "lora")


def names(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")
