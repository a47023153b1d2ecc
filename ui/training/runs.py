"""The training page's parts: the new-run wizard, the parameter form, the live run view and the
configs section. Every widget key starts with "training." so nothing collides with other pages.

Widgets forget their value when they are not drawn (another wizard step, another section), so
the wizard keeps its own copy of what matters under keys no widget owns, and refills the widgets
from it when they come back.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.datasets.datasets import get_dataset
from core.datasets.images import format_size
from core.errors import InvalidInput, NotFound, StudioError
from core.jobs.lifecycle import aware, cancel_job, retry_job
from core.jobs.queue import gpu_worker_memory_gib
from core.library import assets
from core.models import Asset, Job, JobStatus, LoraConfig, LoraModel
from core.training import runs as training
from core.training import views as training_views
from core.training.configs import (
    clone_config,
    create_config,
    delete_config,
    get_config,
    get_default_config,
    list_configs,
    params_of,
    set_default_config,
    update_config,
)
from core.training.params import LoraParams, parse_params
from core.training.views import FieldSpec
from ui.datasets import dataset_picker
from ui.widgets import live_log, status_badge

SECTIONS = {"new": "New run", "runs": "Runs", "configs": "Configs"}
SECTION = "training.section"
_GOTO = "training.goto"  # a section to open on the next run, before the selector exists
RUN = "training.run"  # the run shown in the run view (mirrored to the ?run= query parameter)
DATASET = "training.dataset_id"  # also set by the Datasets page's "Train a LoRA" button
CONFIG = "training.config_id"
_ANNOUNCED = "training.wizard.announced"  # the preselected dataset already confirmed
_STEP = "training.wizard.step"
_VALUES = "training.wizard.values"  # the parameter form's values, kept while other steps show
_VALUES_OF = "training.wizard.values_of"  # the config those values were loaded from
_SAVE_AS = "training.wizard.save_as_name"
_FLASH = "training.flash"  # (kind, message) shown once after an action that reruns the page
_LIVE_FLASH = "training.run.flash"  # the same, for the live run view (shown as a toast)
_LINKED = "training.linked_run"  # the run id this session last put in the URL

STEPS = ("Dataset", "Config", "Parameters", "Review")
RUN_TABS = ("Loss", "Samples", "Checkpoints", "Log", "Settings")
SAMPLE_COLUMNS = 6  # sample steps per row of the grid (and the default: the newest ones)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

# Presentation only: the fields, ranges and help texts themselves come from LoraParams.
GROUPS: dict[str, tuple[str, ...]] = {
    "Model": ("family", "base_model", "resolution"),
    "Duration": ("duration_unit", "steps", "epochs", "batch_size"),
    "Optimisation": ("learning_rate", "optimizer", "lr_scheduler", "warmup_steps", "weight_decay", "max_grad_norm"),
    "LoRA": ("rank", "alpha", "train_text_encoder", "text_encoder_lr"),
    "Loss & noise": ("min_snr_gamma", "noise_offset", "caption_dropout"),
    "Speed & memory": ("mixed_precision", "gradient_checkpointing", "seed"),
    "Samples & checkpoints": ("sample_every", "sample_steps", "sample_guidance", "sample_seed", "checkpoint_every",
                              "keep_checkpoints", "sample_prompts"),
}
OPEN_GROUPS = ("Model", "Duration", "LoRA")
LABELS = {"lr_scheduler": "LR scheduler", "min_snr_gamma": "Min-SNR gamma", "text_encoder_lr": "Text-encoder LR",
          "max_grad_norm": "Max gradient norm", "base_model": "Base model (hub id or folder)"}


def _flash(kind: str, message: str, *, live: bool = False) -> None:
    st.session_state[_LIVE_FLASH if live else _FLASH] = (kind, message)


def _show_flash(*, toast: bool = False) -> None:
    """``toast`` in the live run view: a message there would vanish with its next refresh."""
    if flashed := st.session_state.pop(_LIVE_FLASH if toast else _FLASH, None):
        kind, message = flashed
        if toast:
            st.toast(message, icon=":material/check_circle:" if kind == "success" else ":material/error:")
        else:
            (st.success if kind == "success" else st.error)(message)


def apply_navigation() -> None:
    """Call before the section selector: a ?run= link or a just-submitted run opens that run."""
    requested = st.query_params.get("run")
    # Only a link this session did not write itself counts (the URL lags one run behind a pick).
    if requested and requested != st.session_state.get(_LINKED):
        st.session_state[RUN] = st.session_state[_LINKED] = requested
        st.session_state[SECTION] = "runs"
    if target := st.session_state.pop(_GOTO, None):
        st.session_state[SECTION] = target
    st.session_state.setdefault(SECTION, "new")


def link_run(run_id: str | None) -> None:
    """Put the open run in the URL (so it can be shared or reloaded), or take it out."""
    st.session_state[_LINKED] = run_id
    if run_id:
        st.query_params["run"] = run_id
    else:
        st.query_params.pop("run", None)


def _clamp_page(key: str, pages: int) -> bool:
    """A filter can leave fewer pages than the page number the user was on: go to the last one."""
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = pages
        return True
    return False


def _pick(label: str, options: list[Any], labels: Callable[[Any], str], *, state: str, key: str) -> Any:
    """A selectbox that follows ``state`` (which other code may change) and writes the user's choice back."""
    if st.session_state.get(state) in options:
        st.session_state[key] = st.session_state[state]

    def remember() -> None:
        st.session_state[state] = st.session_state[key]

    chosen = st.selectbox(label, options, format_func=labels, key=key, on_change=remember)
    st.session_state[state] = chosen
    return chosen


# --- the parameter form --------------------------------------------------------------------------------


def _label(name: str) -> str:
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
    label, disabled = _label(spec.name), _inactive(spec.name, values)
    if spec.kind == "choice":
        return st.selectbox(label, spec.options, format_func=spec.option_label, key=key, help=spec.help,
                            disabled=disabled)
    if spec.kind == "bool":
        return st.toggle(label, key=key, help=spec.help, disabled=disabled)
    if spec.kind == "int":
        return st.number_input(label, min_value=int(spec.minimum or 0), max_value=int(spec.maximum or 2**31),
                               step=int(spec.step or 1), key=key, help=spec.help, disabled=disabled)
    if spec.kind in ("float", "optional_float"):
        optional = spec.kind == "optional_float"
        return st.number_input(label, min_value=spec.minimum, max_value=spec.maximum, step=spec.step,
                               format=spec.number_format, key=key, disabled=disabled,
                               help=spec.help + (" Leave empty to turn it off." if optional else ""),
                               **({"value": None} if optional else {}))
    if spec.kind == "lines":
        text = st.text_area(label, key=key, help=f"{spec.help} One per line, at most {spec.max_length}.",
                            disabled=disabled, height=90)
        return [line.strip() for line in text.splitlines() if line.strip()]
    return st.text_input(label, key=key, help=spec.help, max_chars=spec.max_length, disabled=disabled)


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
        st.caption(f"The config asks for the {wanted!r} optimizer, which is not installed here.")
    return values


def _forget_form(prefix: str) -> None:
    for key in [k for k in st.session_state if str(k).startswith(f"{prefix}.")]:
        del st.session_state[key]


# --- the wizard ---------------------------------------------------------------------------------------


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


def _runs_offline(params: LoraParams) -> bool:
    """Whether the base model is a folder on this machine (the tiny demo model is), so no download."""
    return Path(training.resolve_base_model(params.base_model)).is_dir()


def _config_label(config: LoraConfig) -> str:
    return config.name + (" ★ default" if config.is_default else "") + (
        " · runs offline" if _runs_offline(params_of(config)) else "")


def _chosen_config() -> LoraConfig | None:
    try:
        return get_config(st.session_state[CONFIG]) if st.session_state.get(CONFIG) else get_default_config()
    except NotFound:
        return None


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
        st.page_link("pages/datasets.py", label="Open Datasets", icon=":material/photo_library:")
        return
    if dataset.id == preselected and st.session_state.get(_ANNOUNCED) != dataset.id:
        # Confirms the Datasets page's "Train a LoRA on this dataset" hand-over, once.
        st.success(f"Dataset selected for training: {dataset.name} ({dataset.image_count} images).")
    st.session_state[DATASET] = st.session_state[_ANNOUNCED] = dataset.id
    config = _chosen_config()
    resolution = int(st.session_state.get(_VALUES, {}).get("resolution")
                     or (params_of(config).resolution if config else 512))
    readiness = training_views.dataset_readiness(dataset.id, resolution=resolution)
    counts = st.columns(3)
    counts[0].metric("Images", readiness.image_count)
    counts[1].metric("Captioned", readiness.captioned)
    counts[2].metric("Reviewed", readiness.reviewed)
    for warning in readiness.warnings:
        st.warning(warning)
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
    config_id = _pick("LoRA config", list(configs), lambda i: _config_label(configs[i]), state=CONFIG,
                      key="training.wizard.config")
    config = configs[config_id]
    params = params_of(config)
    if config.description:
        st.text(config.description)
    st.dataframe([
        {"setting": "model", "value": f"{params.family} · {params.base_model}"},
        {"setting": "resolution", "value": f"{params.resolution} px"},
        {"setting": "duration", "value": f"{getattr(params, params.duration_unit)} {params.duration_unit}"},
        {"setting": "rank / alpha", "value": f"{params.rank} / {params.alpha:g}"},
        {"setting": "learning rate", "value": f"{params.learning_rate:g} ({params.lr_scheduler})"},
        {"setting": "batch size", "value": str(params.batch_size)},
        {"setting": "optimizer", "value": params.optimizer},
    ], hide_index=True)
    offline = [c.name for c in configs.values() if _runs_offline(params_of(c))]
    if not _runs_offline(params):
        st.caption(f"{params.base_model} is downloaded from Hugging Face by the GPU worker on first use.")
        if offline:
            st.info(f"Without network access, use {', '.join(repr(n) for n in offline)}: its base model is a "
                    "local folder on this machine.")
    if _nav(2):
        _go(3)


def _params_step() -> None:
    config = _chosen_config()
    if config is None or config.id is None:
        st.warning("The chosen config no longer exists; choose another one.")
        _nav(3, next_disabled=True)
        return
    prefix = f"training.wizard.p{config.id}"
    st.caption(f"Starting from {config.name!r}. Changes apply to this run only unless saved as a new config.")
    if st.button("Reset to the config's values", key="training.wizard.reset"):
        _forget_form(prefix)
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
            st.error(str(error))
            return
        _go(4)


def _review_step() -> None:
    config, dataset_id = _chosen_config(), st.session_state.get(DATASET)
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
        st.error(str(error))
        _nav(4, next_label="Submit", next_disabled=True)
        return
    estimate = training.estimate_run(params, image_count=dataset.image_count, gpu_memory_gib=gpu_worker_memory_gib())
    st.write(f"Train on **{dataset.image_count}** image(s) of the selected dataset with the selected config.")
    st.text(f"Dataset: {dataset.name} · config: {config.name}")
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
        st.warning(warning)
    if estimate.gpu_memory_gib is None:
        st.info("No GPU worker is online: the run waits in the queue until one starts.")
    else:
        st.caption(f"Largest GPU among online workers: {estimate.gpu_memory_gib:.0f} GiB.")
    if changes := training_views.changed_params(params_of(config), params):
        st.dataframe([{"setting": _label(n), "config": str(a), "this run": str(b)} for n, a, b in changes],
                     hide_index=True)
    name = st.text_input("Run name", key="training.wizard.name", max_chars=200,
                         placeholder=f"{dataset.name} · {config.name} · <date> (when left empty)")
    if _nav(4, next_label="Submit"):
        _submit(dataset.id, config, params, name)


def _submit(dataset_id: int, config: LoraConfig, params: LoraParams, name: str) -> None:
    save_as = (st.session_state.get(_SAVE_AS) or "").strip()
    try:
        job = training.submit_training(dataset_id=dataset_id, config_id=config.id, params=params, name=name,
                                       save_as=save_as)
    except StudioError as error:
        st.error(str(error))
        return
    for key in (_STEP, _VALUES, _VALUES_OF, _SAVE_AS, "training.wizard.name"):
        st.session_state.pop(key, None)
    st.session_state[RUN] = job.id
    st.session_state[_GOTO] = "runs"
    _flash("success", f"Run {job.payload.get('name') or job.id[:8]} queued.")
    st.rerun()


def wizard() -> None:
    step = st.session_state.setdefault(_STEP, 1)
    st.progress((step - 1) / (len(STEPS) - 1),
                text=" → ".join(f"**{i}. {s}**" if i == step else f"{i}. {s}" for i, s in enumerate(STEPS, 1)))
    (_dataset_step, _config_step, _params_step, _review_step)[step - 1]()


# --- runs list and run view --------------------------------------------------------------------------


def runs_section() -> None:
    _show_flash()
    with st.expander("All runs", expanded=RUN not in st.session_state):
        columns = st.columns([4, 1])
        statuses = columns[0].multiselect("Status", [s.value for s in JobStatus], key="training.runs.status")
        page_size = columns[1].selectbox("Per page", [10, 25, 50], key="training.runs.page_size")
        page = training.list_runs(statuses=statuses, page=st.session_state.get("training.runs.page", 1),
                                  page_size=page_size)
        if _clamp_page("training.runs.page", page.pages):
            page = training.list_runs(statuses=statuses, page=page.pages, page_size=page_size)
        st.dataframe([{
            "name": job.payload.get("name") or job.id[:8], "status": job.status, "progress": job.progress,
            "final loss": (job.result or {}).get("final_loss"), "created": aware(job.created_at),
        } for job in page.items], hide_index=True, column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "final loss": st.column_config.NumberColumn("final loss", format="%.4f"),
            "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
        })
        st.number_input(f"Page (of {page.pages}) · {page.total} run(s)", 1, page.pages, key="training.runs.page")
    runs = {job.id: job for job in page.items}
    wanted = st.session_state.get(RUN)
    if wanted and wanted not in runs:
        try:
            runs = {wanted: training.get_run(wanted), **runs}
        except NotFound:
            st.warning(f"Run {wanted} does not exist (any more).")
            st.session_state.pop(RUN, None)
    if not runs:
        st.info("No training runs yet: start one in New run.")
        return
    run_id = _pick("Open run", list(runs), lambda i: f"{runs[i].payload.get('name') or i[:8]} ({runs[i].status})",
                   state=RUN, key="training.runs.open")
    link_run(run_id)
    run_view(run_id)


def run_view(job_id: str) -> None:
    """The run's live view; it refreshes every 2 s only while the run is queued or running."""
    job = training.get_run(job_id)
    active = job.status in ACTIVE
    st.fragment(run_every=2 if active else None)(_live_run)(job_id, active)


def _act(action: Callable[[str], object], job_id: str) -> None:
    try:
        action(job_id)
    except StudioError as error:
        _flash("error", str(error), live=True)


def _live_run(job_id: str, was_active: bool) -> None:
    job = training.get_run(job_id)
    if was_active != (job.status in ACTIVE):
        st.rerun()  # the whole page, so the refresh timer is set up again (or not) for the new status
    head = st.columns([6, 1, 1])
    head[0].subheader(job.payload.get("name") or f"Run {job.id[:8]}")
    with head[1]:
        status_badge(job.status)
    if job.status in ACTIVE:
        head[2].button("Cancel", key="training.run.cancel", on_click=_act, args=(cancel_job, job.id))
    elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        head[2].button("Retry", key="training.run.retry", on_click=_act, args=(retry_job, job.id))
    _show_flash(toast=True)
    st.progress(job.progress, text=job.progress_message or job.stage or job.status)
    if job.error:
        st.error(f"Failed at stage '{job.error_stage}': {job.error}")
    if job.result:
        _result_metrics(job.result)
    # Stateful tabs: only the open one is drawn (no sample images read every 2 s while the chart is
    # shown) and the choice survives the page rerun that ends the live refresh.
    tabs = dict(zip(RUN_TABS, st.tabs(RUN_TABS, key="training.run.tab", on_change="rerun"), strict=True))
    with tabs["Loss"]:
        if tabs["Loss"].open:
            _loss_chart(job_id)
    with tabs["Samples"]:
        if tabs["Samples"].open:
            _sample_grid(job)
    with tabs["Checkpoints"]:
        if tabs["Checkpoints"].open:
            _checkpoints(job)
    with tabs["Log"]:
        if tabs["Log"].open:
            live_log(job_id, key="training.run", tail=40)
            st.page_link("pages/jobs.py", label="Full log on the Jobs page", icon=":material/work_history:")
    with tabs["Settings"]:
        if tabs["Settings"].open:
            st.caption(f"Dataset {_name_of(get_dataset, job.payload.get('dataset_id'))} · "
                       f"config {_name_of(get_config, job.payload.get('config_id'))} · job {job.id}")
            st.json(job.payload.get("params") or {}, expanded=False)


def _name_of(getter: Callable[[Any], Any], item_id: Any) -> str:
    """A lineage name for display; the dataset or config may have been deleted since the run."""
    try:
        return repr(getter(item_id).name) if item_id else "—"
    except NotFound:
        return f"#{item_id} (deleted)"


def _result_metrics(result: dict[str, Any]) -> None:
    figures = st.columns(5)
    if (loss := result.get("final_loss")) is not None:
        figures[0].metric("Final loss", f"{loss:.4f}")
    if result.get("eval_loss_start") is not None and result.get("eval_loss_end") is not None:
        figures[1].metric("Eval loss", f"{result['eval_loss_end']:.4f}",
                          delta=f"{result['eval_loss_end'] - result['eval_loss_start']:+.4f}", delta_color="inverse")
    if result.get("steps"):
        figures[2].metric("Steps", f"{result['steps']:,}")
    if result.get("steps_per_second"):
        figures[3].metric("Steps/s", f"{result['steps_per_second']:.2f}")
    if result.get("seconds"):
        figures[4].metric("Duration", training_views.format_duration(result["seconds"]),
                          help=f"device: {result.get('device', '?')}")


def loss_figure(series: training.MetricSeries, smoothing: float) -> go.Figure:
    """Raw loss (faint), its EMA, and the learning rate on a second axis."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Scatter(x=series.steps, y=series.loss, name="loss", mode="lines", opacity=0.35,
                                line={"width": 1}), secondary_y=False)
    figure.add_trace(go.Scatter(x=series.steps, y=training_views.ema(series.loss, smoothing),
                                name=f"loss (EMA {smoothing:.2f})", mode="lines", line={"width": 2}),
                     secondary_y=False)
    figure.add_trace(go.Scatter(x=series.steps, y=series.lr, name="learning rate", mode="lines",
                                line={"dash": "dot", "width": 1}), secondary_y=True)
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="loss", secondary_y=False)
    # From zero: a constant learning rate would otherwise get an axis of meaningless (even negative) ticks.
    top = max(series.lr, default=0.0) * 1.1 or 1.0
    figure.update_yaxes(title_text="learning rate", secondary_y=True, tickformat=".1e", showgrid=False,
                        range=[0, top])
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h", "y": 1.12})
    return figure


def _loss_chart(job_id: str) -> None:
    series = training.metric_series(job_id, max_points=1_000)
    if not series.steps:
        st.info("No steps recorded yet.")
        return
    smoothing = st.slider("Smoothing", 0.0, 0.99, 0.9, 0.01, key="training.run.smoothing")
    st.plotly_chart(loss_figure(series, smoothing), key="training.run.chart")
    if series.bucket > 1:
        st.caption(f"Each point averages {series.bucket} steps.")


@st.cache_data(max_entries=512, show_spinner=False)
def _sample_png(key: str, size: int, _asset: Asset) -> bytes:
    # Keyed by storage key and size: a sample is rewritten only when a resumed run redoes its step.
    return assets.read_asset(_asset)


def _sample_grid(job: Job) -> None:
    show_all = st.toggle("All steps", key="training.run.samples_all",
                         help=f"Otherwise the last {SAMPLE_COLUMNS} sample steps.")
    grid = training.sample_grid(job.id, last_steps=None if show_all else SAMPLE_COLUMNS)
    if not grid.steps:
        every = training.run_params(job).sample_every
        st.info(f"No samples yet (every {every} steps)." if every else "This run renders no samples.")
        return
    # Rows of a fixed number of step columns, so images keep one size however many steps there are.
    for start in range(0, len(grid.steps), SAMPLE_COLUMNS):
        steps = grid.steps[start:start + SAMPLE_COLUMNS]
        for prompt_index, prompt in enumerate(grid.prompts):
            row = st.columns([2] + [1] * SAMPLE_COLUMNS)
            row[0].text(prompt)  # prompts are user text: plain text, never markup
            for column, step in zip(row[1:], steps, strict=False):
                asset = grid.cell(prompt_index, step)
                if asset is None:
                    column.caption(f"step {step}: —")
                else:
                    column.image(_sample_png(asset.key, asset.size_bytes, asset), caption=f"step {step}",
                                 width="stretch")


def _promote(lora_id: int) -> None:
    try:
        lora = training.promote_lora(lora_id)
        _flash("success", f"Step {lora.step} is now the LoRA generation uses by default.", live=True)
    except StudioError as error:
        _flash("error", str(error), live=True)


def _file_name(job: Job, lora: LoraModel) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", job.payload.get("name") or "").strip("-.")[:80] or job.id[:8]
    return f"{stem}-step-{lora.step}.safetensors"


def _checkpoints(job: Job) -> None:
    page = training.list_loras(job_id=job.id, page=st.session_state.get("training.run.ckpt_page", 1), page_size=10)
    if not page.items:
        st.info(f"No checkpoints yet (every {training.run_params(job).checkpoint_every} steps).")
        return
    current = training.promoted_lora(job.character_id)
    if current is not None:
        st.caption(f"Generation uses {current.name!r} by default.")
    widths = [1, 1, 1, 2, 2, 2]
    for column, title in zip(st.columns(widths), ("step", "loss", "size", "", "", ""), strict=True):
        column.caption(title)
    for lora in page.items:
        row = st.columns(widths, vertical_alignment="center")
        row[0].text(str(lora.step))
        row[1].text("—" if lora.loss is None else f"{lora.loss:.4f}")
        row[2].text(format_size(lora.size_bytes))
        with row[3]:
            if lora.final:
                st.badge("final", color="blue")
            if lora.promoted:
                st.badge("promoted", color="green", icon=":material/star:")
        # A callable: the weights are read from storage only when the button is clicked.
        row[4].download_button("Download", functools.partial(training.read_lora_weights, lora),
                               file_name=_file_name(job, lora), mime="application/octet-stream",
                               key=f"training.run.download.{lora.id}", on_click="ignore",
                               icon=":material/download:")
        row[5].button("Promoted" if lora.promoted else "Promote", key=f"training.run.promote.{lora.id}",
                      disabled=lora.promoted, on_click=_promote, args=(lora.id,),
                      help="Make this checkpoint the LoRA generation uses by default.")
    if page.pages > 1:
        st.number_input(f"Page (of {page.pages})", 1, page.pages, key="training.run.ckpt_page")


# --- configs ------------------------------------------------------------------------------------------


def _config_action(action: Callable[[], str]) -> None:
    """Run a config action; its message (or the error's) shows after the rerun."""
    try:
        _flash("success", action())
    except StudioError as error:
        _flash("error", str(error))


def _clone(config_id: int) -> str:
    copy = clone_config(config_id)
    st.session_state["training.configs.selected"] = copy.id
    return f"Cloned as {copy.name!r}."


def _make_default(config_id: int) -> str:
    return f"{set_default_config(config_id).name!r} is now the default config."


def _delete(config_id: int, name: str) -> str:
    delete_config(config_id)
    st.session_state.pop("training.configs.selected", None)
    return f"Deleted {name!r}."


def configs_section() -> None:
    _show_flash()
    with st.expander("New config"):
        _new_config()
    table = st.container()  # drawn above the pager, filled once the pager's page size is known
    pager = st.columns([4, 1])
    size = pager[1].selectbox("Per page", [10, 25, 50], key="training.configs.page_size")
    page = list_configs(page=st.session_state.get("training.configs.page", 1), page_size=size)
    if _clamp_page("training.configs.page", page.pages):
        page = list_configs(page=page.pages, page_size=size)
    rows = []
    for config in page.items:
        params = params_of(config)
        rows.append({"default": "★" if config.is_default else "", "name": config.name, "preset": config.preset,
                     "model": params.family, "resolution": params.resolution, "rank": params.rank,
                     "duration": f"{getattr(params, params.duration_unit)} {params.duration_unit}",
                     "description": config.description})
    table.dataframe(rows, hide_index=True)
    pager[0].number_input(f"Page (of {page.pages}) · {page.total} config(s)", 1, page.pages,
                          key="training.configs.page")
    configs = {c.id: c for c in page.items if c.id is not None}
    if "training.configs.selected" not in st.session_state:  # open the default first
        st.session_state["training.configs.selected"] = next((i for i, c in configs.items() if c.is_default), None)
    wanted = st.session_state.get("training.configs.selected")
    if wanted is not None and wanted not in configs:
        try:
            configs = {wanted: get_config(wanted), **configs}
        except NotFound:
            st.session_state.pop("training.configs.selected", None)
    if not configs:
        st.info("No configs on this page.")
        return
    config_id = _pick("Open config", list(configs), lambda i: _config_label(configs[i]),
                      state="training.configs.selected", key="training.configs.open")
    config = configs[config_id]
    actions = st.columns(4)
    actions[0].button("Clone", key="training.configs.clone", on_click=_config_action,
                      args=(functools.partial(_clone, config_id),), icon=":material/content_copy:")
    actions[1].button("Make default", key="training.configs.default", disabled=config.is_default,
                      on_click=_config_action, args=(functools.partial(_make_default, config_id),))
    confirm = actions[2].checkbox(f"Yes, delete {config.name}", key=f"training.configs.confirm.{config_id}")
    actions[3].button("Delete", key="training.configs.delete", disabled=not confirm, type="primary",
                      on_click=_config_action, args=(functools.partial(_delete, config_id, config.name),))
    with st.expander(f"Edit {config.name}"):
        _edit_config(config)


def _edit_config(config: LoraConfig) -> None:
    prefix = f"training.configs.edit.{config.id}"
    name = st.text_input("Name", value=config.name, key=f"{prefix}._name", max_chars=120)
    description = st.text_area("Description", value=config.description, key=f"{prefix}._description",
                               max_chars=2000)
    values = param_form(prefix, params_of(config).model_dump(mode="json"))
    if st.button("Save config", key="training.configs.save", type="primary"):
        try:
            update_config(config.id or 0, name=name, params=values, description=description)
        except StudioError as error:
            st.error(str(error))
            return
        _flash("success", f"Saved {name!r}.")
        st.rerun()


def _new_config() -> None:
    base = _chosen_config()
    prefix = f"training.configs.new.{base.id if base else 0}"
    if base is not None:
        st.caption(f"Starts from {base.name!r} (the config chosen in the wizard, else the default).")
    name = st.text_input("Name", key="training.configs.new_name", max_chars=120)
    description = st.text_area("Description", key="training.configs.new_description", max_chars=2000)
    make_default = st.toggle("Make it the default", key="training.configs.new_default")
    values = param_form(prefix, (params_of(base) if base else LoraParams()).model_dump(mode="json"))
    if st.button("Create config", key="training.configs.create", type="primary"):
        try:
            created = create_config(name=name, params=values, description=description, make_default=make_default)
        except StudioError as error:
            st.error(str(error))
            return
        _forget_form(prefix)
        st.session_state["training.configs.selected"] = created.id
        _flash("success", f"Created {created.name!r}.")
        st.rerun()
