"""The Models page: installed base models and LoRAs with disk use; install from the hub (download progress
shown live), a single ``.safetensors`` checkpoint or a local diffusers folder; remove; a LoRA from a URL."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import streamlit as st

from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.models import InstalledModel, Job
from core.models_registry import install, registry
from core.models_registry.files import FORMAT_LABELS, TRANSFORMER_FAMILIES
from core.training.families import FAMILY_LABELS
from ui.auth import fragment, guard
from ui.feedback import flash, run_action, show_flash
from ui.text import literal, plain

FLASH = "models.flash"
FAMILIES = {"sd15": "Stable Diffusion 1.5", "sdxl": "Stable Diffusion XL"}


def _size(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def disk_use() -> None:
    use = registry.disk_use()
    left, right = st.columns(2)
    left.metric("Base models", f"{use.models}", _size(use.model_bytes), delta_color="off")
    right.metric("LoRAs", f"{use.loras}", _size(use.lora_bytes), delta_color="off")


def install_section() -> None:
    show_flash(FLASH)
    hub_tab, file_tab, folder_tab = st.tabs(["Hugging Face hub", "Single .safetensors file", "Local folder"])
    with hub_tab, st.form("models.hub.form", clear_on_submit=True):
        repo = st.text_input("Hub id", placeholder="black-forest-labs/FLUX.2-klein-4B", max_chars=200,
                             key="models.hub.repo")
        name = st.text_input("Install as (optional)", max_chars=200, key="models.hub.name")
        if st.form_submit_button("Download", icon=":material/download:"):
            _submit(lambda: install.submit_hub(repo_id=repo, name=name.strip()))
    with file_tab, st.form("models.file.form", clear_on_submit=True):
        st.caption("A whole SD 1.5 / SDXL checkpoint in the original layout (as Civitai ships them), or a FLUX.2 "
                   "[klein], Z-Image or Qwen-Image transformer alone (ComfyUI's diffusion_models files), on this "
                   "machine's disk: its family is read from its keys, and it installs offline with the family's "
                   "config files. A transformer runs with the text encoder and VAE of the base model you pair it "
                   "with.")
        path = st.text_input("Path of the .safetensors file", max_chars=1000, key="models.file.path")
        name = st.text_input("Install as (optional)", max_chars=200, key="models.file.name")
        pairs = [m.name for m in registry.ready_models() if m.family in TRANSFORMER_FAMILIES
                 and m.format != "transformer"]
        paired = st.selectbox("Transformer files: text encoder and VAE from", ["", *pairs], key="models.file.pair",
                              format_func=lambda n: plain(n) if n else "the family's hub id (or the box below)")
        typed = st.text_input("…or another hub id or folder", max_chars=1000, key="models.file.base")
        if st.form_submit_button("Install", icon=":material/upload_file:"):
            _submit(lambda: install.submit_single_file(path=path.strip(), name=name.strip(),
                                                       base_model=typed.strip() or paired))
    with folder_tab, st.form("models.folder.form", clear_on_submit=True):
        path = st.text_input("Diffusers folder (holding model_index.json)", max_chars=1000, key="models.folder.path")
        name = st.text_input("Install as (optional)", max_chars=200, key="models.folder.name")
        if st.form_submit_button("Register", icon=":material/folder_open:"):
            _submit(lambda: (install.install_folder(path=path.strip(), name=name.strip()), None))


def _submit(action: Callable[[], tuple[InstalledModel, Job | None]]) -> None:
    try:
        model, job = action()
    except StudioError as error:
        st.error(literal(str(error)))
        return
    text = f"{model.name} installed." if job is None else f"Installing {model.name} (job {job.id[:8]})."
    flash(FLASH, "success", text)
    st.rerun()


def _installing() -> list[InstalledModel]:
    return [m for m in registry.list_models(page_size=100).items if m.status == registry.INSTALLING]


def installing() -> None:
    """Installs in progress with their job's progress bar, refreshed every second while there is one."""
    fragment(run_every=1 if _installing() else None)(_progress_bars)()


def _progress_bars() -> None:
    rows = _installing()
    for model in rows:
        job = jobs.get_job(model.job_id) if model.job_id else None
        progress = job.progress if job else 0.0
        message = job.progress_message or job.status if job else "waiting for its job"
        st.progress(progress, text=literal(f"{model.name}: {message}"))
    if not rows:
        st.caption("No install in progress.")


def models_table(page: int) -> None:
    listing = registry.list_models(page=page, page_size=25)
    if not listing.items:
        st.info("No base model installed yet. The tiny demo models and hub ids typed in Training still work.")
        return
    st.dataframe([_row(m) for m in listing.items], hide_index=True, width="stretch")
    if listing.pages > 1:
        st.number_input(f"Page (of {listing.pages})", 1, listing.pages, key="models.page")
    names = [m.name for m in listing.items]
    chosen = st.selectbox("Model", names, key="models.remove.name")
    st.button("Remove", icon=":material/delete:", key="models.remove",
              on_click=guard(partial(run_action, FLASH, partial(_remove, chosen))))


def _row(model: InstalledModel) -> dict[str, object]:
    return {"name": model.name, "family": FAMILY_LABELS.get(model.family, model.family),
            "format": FORMAT_LABELS.get(model.format, model.format), "paired with": model.base_model or "",
            "precision": model.precision, "size": _size(model.size_bytes),
            "source": f"{model.source_kind}: {model.source}",
            "status": model.status if not model.error else f"{model.status}: {model.error}",
            "installed": model.installed_at}


def _remove(name: str | None) -> str:
    if not name:
        return "Choose a model first."
    registry.remove_model(name=name)
    return f"Removed {name}."


def loras_table(page: int) -> None:
    listing = registry.list_loras(page=page, page_size=25)
    if not listing.items:
        st.info("No LoRA yet: train one on the Training page or import one.")
        return
    st.dataframe([{"id": e.id, "name": e.name, "family": e.family, "base model": e.base_model, "format": e.format,
                   "precision": e.precision, "size": _size(e.size_bytes), "source": e.source,
                   "installed": e.installed_at} for e in listing.items], hide_index=True, width="stretch")
    if listing.pages > 1:
        st.number_input(f"Page (of {listing.pages})", 1, listing.pages, key="models.lora_page")


def lora_url_section() -> None:
    with st.form("models.lora_url.form", clear_on_submit=True):
        url = st.text_input("LoRA URL (.safetensors)", max_chars=2000, key="models.lora_url.url")
        family = st.selectbox("Model family", list(FAMILIES), format_func=FAMILIES.__getitem__,
                              key="models.lora_url.family")
        base = st.text_input("Base model it is for", max_chars=500, key="models.lora_url.base")
        if st.form_submit_button("Import", icon=":material/link:"):
            try:
                job = install.import_lora_from_url(url.strip(), base_model=base.strip(), family=family)
            except StudioError as error:
                st.error(literal(str(error)))
                return
            flash(FLASH, "success", f"Import queued as job {job.id[:8]}.")
            st.rerun()
