"""The new-run wizard: Dataset → Config → Parameters → Review, then the run is submitted.

Widgets forget their value when they are not drawn (another wizard step, another section), so the
wizard keeps its own copy of what matters under keys no widget owns, and refills the widgets from it
when they come back.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.datasets.datasets import get_dataset
from core.errors import InvalidInput, NotFound, StudioError
from core.jobs.queue import gpu_worker_memory_gib
from core.models import LoraConfig
from core.training import runs as training
from core.training import views as training_views
from core.training.configs import get_config, list_configs, params_of
from core.training.params import LoraParams, parse_params
from ui import page_paths
from ui.datasets.picker import dataset_picker
from ui.feedback import flash
from ui.text import literal, plain
from ui.training.choices import CONFIG, DATASET, chosen_config, config_label, runs_offline
from ui.training.navigation import FLASH, GOTO, RUN
from ui.training.param_form import field_label, forget_form, param_form
from ui.widgets import pick, stored_id

_ANNOUNCED = "training.wizard.announced"  # the preselected dataset already confirmed
_STEP = "training.wizard.step"
_VALUES = "training.wizard.values"  # the parameter form's values, kept while other steps show
_VALUES_OF = "training.wizard.values_of"  # the config those values were loaded from
_SAVE_AS = "training.wizard.save_as_name"

STEPS = ("Dataset", "Config", "Parameters", "Review")


def _go(step: int) -> None:
    st.session_state[_STEP] = step
    st.rerun()


def _nav(step: int, *, next_label: str = "Next", next_disabled: bool = False) -> bool:
    """Back and Next buttons; returns whether Next was clicked (Back moves at once)."""
    left, _, right = st.columns([1, 4, 1])
    if step > 1 and left.button("Back", key=f"training.wizard.back.{step}", icon=":material/arrow_back:"):
        _go(step - 1)
    return right.button(next_label, key=f"training.wizard.next.{step}", type="primary", disabled=next_disabled)


def _configs_by_id() -> dict[int, LoraConfig]:
    configs = {c.id: c for c in list_configs(page=1, page_size=100).items if c.id is not None}
    chosen = st.session_state.get(CONFIG)
    if chosen is not None and chosen not in configs:
        try:
            configs = {chosen: get_config(chosen), **configs}
        except NotFound:
            st.session_state.pop(CONFIG, None)
    return configs


def _wizard_values(config: LoraConfig) -> dict[str, Any]:
    """The form's values for this config: kept across steps, reloaded when another config is chosen."""
    if st.session_state.get(_VALUES_OF) != config.id or _VALUES not in st.session_state:
        st.session_state[_VALUES] = params_of(config).model_dump(mode="json")
        st.session_state[_VALUES_OF] = config.id
    values: dict[str, Any] = st.session_state[_VALUES]
    return values


def _dataset_step() -> None:
    preselected = st.session_state.get(DATASET)
    dataset = dataset_picker("training")
    if dataset is None:
        st.info("No dataset yet: create one (or the demo dataset) on the Datasets page.")
        st.page_link(page_paths.DATASETS, label="Open Datasets", icon=":material/photo_library:")
        return
    if dataset.id == preselected and st.session_state.get(_ANNOUNCED) != dataset.id:
        # Confirms the Datasets page's "Train a LoRA on this dataset" hand-over, once.
        st.success(f"Dataset selected for training: {literal(dataset.name)} ({dataset.image_count} images).")
    st.session_state[DATASET] = st.session_state[_ANNOUNCED] = dataset.id
    config = chosen_config()
    resolution = int(st.session_state.get(_VALUES, {}).get("resolution")
                     or (params_of(config).resolution if config else 512))
    readiness = training_views.dataset_readiness(stored_id(dataset), resolution=resolution)
    counts = st.columns(3)
    counts[0].metric("Images", readiness.image_count)
    counts[1].metric("Captioned", readiness.captioned)
    counts[2].metric("Reviewed", readiness.reviewed)
    for warning in readiness.warnings:
        st.warning(literal(warning))
    if readiness.image_count == 0:
        st.info("This dataset has no images: upload some on the Datasets page first.")
    elif readiness.warnings:
        st.caption("These do not block training; the Datasets page's Check tab names the images.")
    if _nav(1, next_disabled=readiness.image_count == 0):
        _go(2)


def _config_step() -> None:
    configs = _configs_by_id()
    if not configs:
        st.info("There are no LoRA configs: create one in the Configs section.")
        return
    if st.session_state.get(CONFIG) not in configs:
        default = next((c.id for c in configs.values() if c.is_default), next(iter(configs)))
        st.session_state[CONFIG] = default
    config_id = pick("LoRA config", list(configs), lambda i: config_label(configs[i]), state=CONFIG,
                      key="training.wizard.config")
    config = configs[config_id]
    params = params_of(config)
    if config.description:
        st.text(plain(config.description))
    st.dataframe([
        {"setting": "model", "value": plain(f"{params.family} · {params.base_model}")},
        {"setting": "resolution", "value": f"{params.resolution} px"},
        {"setting": "duration", "value": f"{getattr(params, params.duration_unit)} {params.duration_unit}"},
        {"setting": "rank / alpha", "value": f"{params.rank} / {params.alpha:g}"},
        {"setting": "learning rate", "value": f"{params.learning_rate:g} ({params.lr_scheduler})"},
        {"setting": "batch size", "value": str(params.batch_size)},
        {"setting": "optimizer", "value": params.optimizer},
    ], hide_index=True)
    offline = [c.name for c in configs.values() if runs_offline(params_of(c))]
    if not runs_offline(params):
        st.caption(f"{literal(params.base_model)} is downloaded from Hugging Face by the GPU worker on first use.")
        if offline:
            st.info(f"Without network access, use {', '.join(literal(repr(n)) for n in offline)}: its base model is a "
                    "local folder on this machine.")
    if _nav(2):
        _go(3)


def _params_step() -> None:
    config = chosen_config()
    if config is None or config.id is None:
        st.warning("The chosen config no longer exists; choose another one.")
        _nav(3, next_disabled=True)
        return
    prefix = f"training.wizard.p{config.id}"
    st.caption(f"Starting from {literal(repr(config.name))}. "
               "Changes apply to this run only unless saved as a new config.")
    if st.button("Reset to the config's values", key="training.wizard.reset"):
        forget_form(prefix)
        st.session_state.pop(_VALUES, None)
        st.rerun()
    values = param_form(prefix, _wizard_values(config))
    st.session_state[_VALUES] = values
    if "training.wizard.save_as" not in st.session_state:
        st.session_state["training.wizard.save_as"] = st.session_state.get(_SAVE_AS, "")
    st.session_state[_SAVE_AS] = st.text_input("Save these settings as a new config (optional name)",
                                               key="training.wizard.save_as", max_chars=120)
    if _nav(3):
        try:
            parse_params(values)
        except InvalidInput as error:
            st.error(literal(error))
            return
        _go(4)


def _review_step() -> None:
    config, dataset_id = chosen_config(), st.session_state.get(DATASET)
    try:
        dataset = get_dataset(dataset_id) if dataset_id else None
    except NotFound:
        dataset = None
    if config is None or dataset is None:
        st.warning("The dataset or config chosen earlier no longer exists.")
        _nav(4, next_label="Submit", next_disabled=True)
        return
    try:
        params = parse_params(st.session_state.get(_VALUES) or params_of(config).model_dump(mode="json"))
    except InvalidInput as error:
        st.error(literal(error))
        _nav(4, next_label="Submit", next_disabled=True)
        return
    estimate = training.estimate_run(params, image_count=dataset.image_count, gpu_memory_gib=gpu_worker_memory_gib())
    st.write(f"Train on **{dataset.image_count}** image(s) of the selected dataset with the selected config.")
    st.text(plain(f"Dataset: {dataset.name} · config: {config.name}"))
    figures = st.columns(3)
    figures[0].metric("Steps", f"{estimate.steps:,}")
    figures[1].metric("Time", training_views.format_duration(estimate.seconds) if estimate.seconds else "unknown",
                      help=None if estimate.seconds else "Unknown until a first run on this setup.")
    if estimate.seconds is None:
        figures[1].caption("unknown until a first run on this setup")
    figures[2].metric("GPU memory (estimate)", f"{estimate.vram.total_gib:.1f} GiB")
    with st.expander("GPU memory breakdown"):
        st.dataframe([{"part": part, "GiB": round(gib, 2)} for part, gib in estimate.vram.rows()], hide_index=True)
    if warning := estimate.vram_warning:
        st.warning(literal(warning))
    if estimate.gpu_memory_gib is None:
        st.info("No GPU worker is online: the run waits in the queue until one starts.")
    else:
        st.caption(f"Largest GPU among online workers: {estimate.gpu_memory_gib:.0f} GiB.")
    if changes := training_views.changed_params(params_of(config), params):
        st.dataframe([{"setting": field_label(n), "config": plain(a), "this run": plain(b)} for n, a, b in changes],
                     hide_index=True)
    name = st.text_input("Run name", key="training.wizard.name", max_chars=200,
                         placeholder=f"{dataset.name} · {config.name} · <date> (when left empty)")
    st.toggle("Promote the recommended checkpoint when the run ends", key="training.wizard.promote_best",
              help="The checkpoint whose samples look most like the character (face likeness, guarded against "
                   "collapse and copied training photos). Needs the character's face fingerprint and samples.")
    if _nav(4, next_label="Submit"):
        _submit(stored_id(dataset), config, params, name)


def _submit(dataset_id: int, config: LoraConfig, params: LoraParams, name: str) -> None:
    save_as = (st.session_state.get(_SAVE_AS) or "").strip()
    try:
        job = training.submit_training(dataset_id=dataset_id, config_id=config.id, params=params, name=name,
                                       save_as=save_as,
                                       promote_recommended=bool(st.session_state.get("training.wizard.promote_best")))
    except StudioError as error:
        st.error(literal(error))
        return
    for key in (_STEP, _VALUES, _VALUES_OF, _SAVE_AS, "training.wizard.name", "training.wizard.promote_best"):
        st.session_state.pop(key, None)
    st.session_state[RUN] = job.id
    st.session_state[GOTO] = "runs"
    flash(FLASH, "success", f"Run {job.payload.get('name') or job.id[:8]} queued.")
    st.rerun()


def wizard() -> None:
    step = st.session_state.setdefault(_STEP, 1)
    st.progress((step - 1) / (len(STEPS) - 1),
                text=" → ".join(f"**{i}. {s}**" if i == step else f"{i}. {s}" for i, s in enumerate(STEPS, 1)))
    (_dataset_step, _config_step, _params_step, _review_step)[step - 1]()
