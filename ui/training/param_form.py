"""The form of every LoraParams field, grouped in expanders; the wizard's Parameters step and the
configs section draw it under their own key prefix."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.models_registry import registry
from core.training import views as training_views
from core.training.views import FieldSpec
from ui.text import literal, plain

# Presentation only: the fields, ranges and help texts themselves come from LoraParams.
GROUPS: dict[str, tuple[str, ...]] = {
    "Model": ("family", "base_model", "resolution"),
    "Duration": ("duration_unit", "steps", "epochs", "batch_size"),
    "Optimisation": ("learning_rate", "optimizer", "lr_scheduler", "warmup_steps", "weight_decay", "max_grad_norm"),
    "LoRA": ("adapter", "rank", "alpha", "lokr_factor", "train_text_encoder", "text_encoder_lr"),
    "Loss & noise": ("min_snr_gamma", "timestep_sampling", "noise_offset", "caption_dropout"),
    "Speed & memory": ("mixed_precision", "gradient_checkpointing", "quantize_base", "seed"),
    "Samples & checkpoints": ("sample_every", "sample_steps", "sample_guidance", "sample_seed", "checkpoint_every",
                              "keep_checkpoints", "sample_prompts"),
}
OPEN_GROUPS = ("Model", "Duration", "LoRA")
LABELS = {"lr_scheduler": "LR scheduler", "min_snr_gamma": "Min-SNR gamma", "text_encoder_lr": "Text-encoder LR",
          "max_grad_norm": "Max gradient norm", "base_model": "Base model"}
OTHER = ""  # the base-model picker's "a hub id or a folder" option


def field_label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def _widget_value(spec: FieldSpec, value: Any) -> Any:
    """A stored value as its widget wants it: the right type, inside the widget's range."""
    if spec.kind == "choice":
        return value if value in spec.options else spec.options[0]
    if spec.kind == "lines":
        return "\n".join(value or [])
    if spec.kind in ("int", "float", "optional_float"):
        if value is None:
            return None if spec.kind == "optional_float" else spec.minimum
        number = int(value) if spec.kind == "int" else float(value)
        low = spec.minimum if spec.minimum is not None else number
        high = spec.maximum if spec.maximum is not None else number
        return type(number)(min(max(number, low), high))
    if spec.kind == "bool":
        return bool(value)
    return "" if value is None else str(value)


def _inactive(name: str, values: dict[str, Any]) -> bool:
    """Fields that the values chosen so far make irrelevant (drawn, but greyed out)."""
    return ((name == "steps" and values.get("duration_unit") == "epochs")
            or (name == "epochs" and values.get("duration_unit") == "steps")
            or (name == "text_encoder_lr" and values.get("train_text_encoder") is False))


def _field(spec: FieldSpec, key: str, values: dict[str, Any]) -> Any:
    """One widget, keyed, whose default is the value seeded in session state.

    Widgets in a collapsed expander are not mounted in the browser; a widget mounted later (the user opens
    the expander after any rerun) shows, and sends back, its *default*, not the seeded value (Streamlit
    #5604). So the default must be that value: a form reopened late still submits the config's numbers
    (the "Samples & checkpoints" group once came back as checkpoint every 1 step, keep 1)."""
    label, disabled, current = field_label(spec.name), _inactive(spec.name, values), st.session_state[key]
    if spec.name == "base_model":
        return _base_model(spec, key, values)
    if spec.kind == "choice":
        return st.selectbox(label, spec.options, index=spec.options.index(current), format_func=spec.option_label,
                            key=key, help=spec.help, disabled=disabled)
    if spec.kind == "bool":
        return st.toggle(label, value=current, key=key, help=spec.help, disabled=disabled)
    if spec.kind == "int":
        return st.number_input(label, min_value=int(spec.minimum or 0), max_value=int(spec.maximum or 2**31),
                               value=current, step=int(spec.step or 1), key=key, help=spec.help, disabled=disabled)
    if spec.kind == "optional_float":  # empty turns the setting off
        return st.number_input(label, min_value=spec.minimum, max_value=spec.maximum, value=current, step=spec.step,
                               format=spec.number_format, key=key, disabled=disabled,
                               help=spec.help + " Leave empty to turn it off.")
    if spec.kind == "float":
        return st.number_input(label, min_value=spec.minimum, max_value=spec.maximum, value=current, step=spec.step,
                               format=spec.number_format, key=key, disabled=disabled, help=spec.help)
    if spec.kind == "lines":
        text = st.text_area(label, value=current, key=key, help=f"{spec.help} One per line, at most {spec.max_length}.",
                            disabled=disabled, height=90)
        return [line.strip() for line in text.splitlines() if line.strip()]
    return st.text_input(label, value=current, key=key, help=spec.help, max_chars=spec.max_length, disabled=disabled)


def _base_model(spec: FieldSpec, key: str, values: dict[str, Any]) -> str:
    """The installed models of the chosen family (name · family · format), or a hub id / folder typed in.

    The text box keeps the value (``key``); the picker (``key.installed``) starts on it when it is installed and
    falls back to "hub id or folder" when the family changes under it."""
    installed = {m.name: m for m in registry.ready_models(values.get("family") or "sd15")}
    pick_key = f"{key}.installed"
    if st.session_state.get(pick_key) not in (*installed, OTHER):
        st.session_state[pick_key] = st.session_state[key] if st.session_state[key] in installed else OTHER
    chosen = st.selectbox(field_label(spec.name), [*installed, OTHER], key=pick_key,
                          format_func=lambda n: plain(registry.describe(installed[n])) if n else "Hub id or folder…",
                          help="Models installed on the Models page, of this config's family.")
    if chosen != OTHER:
        st.session_state[key] = chosen
        return chosen
    return st.text_input("Hub id or folder", value=st.session_state[key], key=key, max_chars=spec.max_length,
                         help=spec.help + " A hub id that is not installed is downloaded by the GPU worker.")


def param_form(prefix: str, initial: dict[str, Any]) -> dict[str, Any]:
    """Every LoraParams field, grouped in expanders and prefilled from ``initial``; returns the raw
    values (``parse_params`` validates them). Keys are ``<prefix>.<field>``: a new prefix, a fresh form."""
    specs = training_views.field_specs()
    grouped = {name for names in GROUPS.values() for name in names}
    groups = {**GROUPS, "Other": tuple(name for name in specs if name not in grouped)}
    values: dict[str, Any] = {}
    for group, names in groups.items():
        if not names:
            continue
        with st.expander(group, expanded=group in OPEN_GROUPS):
            columns = st.columns(3)
            for index, name in enumerate(n for n in names if specs[n].kind != "lines"):
                key = f"{prefix}.{name}"
                if key not in st.session_state:
                    st.session_state[key] = _widget_value(specs[name], initial.get(name))
                with columns[index % 3]:
                    values[name] = _field(specs[name], key, values)
            for name in (n for n in names if specs[n].kind == "lines"):
                key = f"{prefix}.{name}"
                if key not in st.session_state:
                    st.session_state[key] = _widget_value(specs[name], initial.get(name))
                values[name] = _field(specs[name], key, values)
    wanted = initial.get("optimizer")
    if wanted and wanted != values.get("optimizer"):
        st.caption(f"The config asks for the {literal(repr(wanted))} optimizer, which is not installed here.")
    return values


def forget_form(prefix: str) -> None:
    for key in [k for k in st.session_state if str(k).startswith(f"{prefix}.")]:
        del st.session_state[key]
