"""The asset library page's parts: the filter bar, the thumbnail grid with selection, the bulk
actions, the detail view with lineage, and collections management. Every widget key starts with
"assets." so nothing collides with other pages.

Actions run in button callbacks (before the page is drawn again), so they can clear the
selection and move between views; their message is shown once after the rerun.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date
from typing import Any

import streamlit as st

from core.characters import likeness
from core.characters.characters import current_character
from core.datasets.images import format_size
from core.errors import NotFound, StudioError
from core.fields import parse_int
from core.jobs import lifecycle as jobs
from core.library import assets, collections
from core.library.assets import LIBRARY_KINDS, LIKENESS_FILTERS, SORTS, AssetFilter
from core.loras import comfyui, kohya
from core.loras import files as lora_files
from core.models import Asset
from core.pagination import Page
from core.training.runs import get_lora
from ui import feedback, page_paths
from ui.auth import guard
from ui.text import literal, plain
from ui.widgets import hand_to_video_page

VIEWS = {"library": "Library", "trash": "Trash", "collections": "Collections"}
VIEW = "assets.view"
DETAIL = "assets.detail"  # the asset whose detail is open (no widget owns this key)
PAGE = "assets.page"
_FLASH = "assets.flash"
_PICK = "assets.pick."
CARD_PX = 192  # a library card: a thumbnail of ~160 px inside its border; the grid wraps to the page width
KIND_NAMES = {"image": "Image", "sample": "Training sample", "lora": "LoRA file", "video": "Video", "audio": "Audio",
              "caption": "Caption"}
KIND_ICONS = {"image": "image", "sample": "science", "lora": "model_training", "video": "movie", "audio": "graphic_eq",
              "caption": "notes"}
PREVIEW_MAX_BYTES = 20 * 1024 * 1024  # the detail shows the file itself up to this size, else the thumbnail


# --- messages and navigation --------------------------------------------------------------------------


def show_flash() -> None:
    feedback.show_flash(_FLASH)


def _reset_page() -> None:
    st.session_state[PAGE] = 1


def _clear_selection() -> None:
    """After an action: no ticked boxes, and the next purge asks for confirmation again."""
    for key in [k for k in st.session_state if str(k).startswith(_PICK)]:
        del st.session_state[key]
    for key in ("assets.purge_confirm", "assets.empty_confirm"):
        st.session_state.pop(key, None)


def apply_navigation() -> None:
    """Call before the view selector: a ?asset= link opens that asset's detail in the library."""
    requested = st.query_params.get("asset")
    asset_id = parse_int(requested)
    if asset_id is not None and st.session_state.get("assets.linked") != requested:
        st.session_state["assets.linked"] = requested
        st.session_state[DETAIL] = asset_id
        st.session_state[VIEW] = "library"
    st.session_state.setdefault(VIEW, "library")


def _run(action: Callable[[], str]) -> None:
    """A button callback: run the action, flash its message (or the error's), then clear the selection."""
    feedback.run_action(_FLASH, action, then=_clear_selection)


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


# --- the filter bar -----------------------------------------------------------------------------------


def _collection_names() -> dict[int, str]:
    names = {c.id: c.name for c in collections.list_collections(page_size=100).items}
    wanted = st.session_state.get("assets.f.collection")
    if wanted is not None and wanted not in names:
        try:
            names[wanted] = collections.get_collection(wanted).name
        except NotFound:
            st.session_state.pop("assets.f.collection", None)
    return names


def _choice(column: Any, label: str, options: dict[int, str], key: str) -> int | None:
    if st.session_state.get(key) not in (None, *options):
        st.session_state.pop(key)  # a choice that no longer exists (a deleted collection)
    return column.selectbox(label, [None, *options], format_func=lambda i: "any" if i is None else plain(options[i]),
                            key=key, on_change=guard(_reset_page))


def filter_bar(*, trash: bool) -> tuple[AssetFilter, str, int] | None:
    """The filters; returns (filter, sort, page size), or None after showing why the input is refused."""
    options = assets.filter_options()
    top = st.columns([2, 2, 4, 2, 2])  # the date range needs the room for two dates
    kind = top[0].selectbox("Kind", [None, *LIBRARY_KINDS], key="assets.f.kind", on_change=guard(_reset_page),
                            format_func=lambda k: "all kinds" if k is None else LIBRARY_KINDS[k])
    text = top[1].text_input("Prompt contains", key="assets.f.text", max_chars=200, on_change=guard(_reset_page))
    dates = top[2].date_input("Created between", value=[], key="assets.f.dates", on_change=guard(_reset_page))
    sort = top[3].selectbox("Sort", list(SORTS), format_func=SORTS.__getitem__, key="assets.f.sort",
                            on_change=guard(_reset_page))
    size = top[4].selectbox("Per page", [24, 48, 96], key="assets.f.per_page", on_change=guard(_reset_page))
    more = st.columns([3, 3, 3, 3, 3])
    dataset_id = _choice(more[0], "Dataset", options.datasets, "assets.f.dataset")
    lora_id = _choice(more[1], "LoRA", options.loras, "assets.f.lora")
    collection_id = _choice(more[2], "Collection", _collection_names(), "assets.f.collection")
    job_text = more[3].text_input("Job id", key="assets.f.job", max_chars=32, placeholder="id or its first characters",
                                  on_change=guard(_reset_page))
    face = more[4].selectbox("Likeness", [None, *LIKENESS_FILTERS], key="assets.f.likeness",
                             format_func=lambda k: "any" if k is None else LIKENESS_FILTERS[k],
                             on_change=guard(_reset_page),
                             help="Face distance to the character's fingerprint, against its likeness threshold.")
    picked: tuple[date, ...] = tuple(dates) if isinstance(dates, list | tuple) else (dates,)
    try:
        job_id = jobs.resolve_job_id(job_text) if job_text.strip() else None
        return assets.make_filter(
            kind=kind, text=text or None, created_from=picked[0] if picked else None,
            created_to=picked[-1] if picked else None, dataset_id=dataset_id, lora_id=lora_id,
            collection_id=collection_id, job_id=job_id, trash=trash, likeness=face,
            likeness_threshold=current_character().likeness_threshold,
        ), sort, size
    except StudioError as error:
        st.error(literal(str(error)))
        return None


# --- the grid -----------------------------------------------------------------------------------------


@st.cache_data(max_entries=2048, show_spinner=False)
def _thumbnail(key: str, size: int, _asset: Asset) -> bytes:
    # Keyed by the thumbnail's storage key (and the file's size: a rerun job rewrites the same key).
    return assets.read_thumbnail(_asset)


def _open(asset_id: int) -> None:
    st.session_state[DETAIL] = asset_id


def _title(asset: Asset) -> str:
    kind = assets.library_kind(asset)
    if kind == "lora":
        return str(asset.meta.get("name") or "LoRA file")
    return asset.prompt or asset.key.rpartition("/")[2]


def _card(asset: Asset) -> None:
    kind = assets.library_kind(asset)
    with st.container(border=True, width=CARD_PX):
        if asset.thumbnail_key:
            try:
                st.image(_thumbnail(asset.thumbnail_key, asset.size_bytes, asset), width="stretch")
            except StudioError:
                st.caption(":material/broken_image: file missing")
        else:
            st.markdown(f"### :material/{KIND_ICONS.get(kind, 'draft')}:")
        title = _title(asset)
        st.text(plain(title if len(title) <= 60 else title[:59] + "…"))  # st.text: user text is never markup
        created = jobs.aware(asset.created_at)
        st.caption(f"{KIND_NAMES.get(kind, kind)} · {format_size(asset.size_bytes)}"
                   + (f" · {created:%Y-%m-%d %H:%M}" if created else ""))
        if (score := likeness.likeness_from_meta(asset.meta)) is not None:
            st.caption(f":material/face: {score.describe()}")
        row = st.container(horizontal=True, vertical_alignment="center")
        row.checkbox(f"Select asset {asset.id}", key=f"{_PICK}{asset.id}", label_visibility="collapsed")
        row.button("Details", key=f"assets.open.{asset.id}", on_click=guard(_open), args=(asset.id,), type="tertiary")


def selected_on(page: Page[Asset]) -> list[Asset]:
    """The page's assets whose box is ticked (read before the grid is drawn, so the actions can go above it)."""
    return [a for a in page.items if st.session_state.get(f"{_PICK}{a.id}")]


def asset_grid(page: Page[Asset]) -> None:
    # Fixed-width cards in a wrapping row: four at 1280 px, seven at 1920 px, thumbnails never squeezed.
    with st.container(horizontal=True):
        for asset in page.items:
            _card(asset)


def clamp_page(pages: int) -> int:
    """The page number to show: a filter can leave fewer pages than the one the user was on."""
    if st.session_state.get(PAGE, 1) > pages:
        st.session_state[PAGE] = pages
    return int(st.session_state.get(PAGE, 1))


def pager(page: Page[Asset], what: str) -> None:
    st.number_input(f"Page (of {page.pages}) · {_plural(page.total, what)}", 1, page.pages, key=PAGE)


def select_all(page: Page[Asset]) -> None:
    def tick(value: bool) -> None:
        for asset in page.items:
            st.session_state[f"{_PICK}{asset.id}"] = value

    row = st.container(horizontal=True)
    row.button("Select all", key="assets.select_all", on_click=guard(tick), args=(True,), type="tertiary")
    row.button("Clear", key="assets.select_none", on_click=guard(tick), args=(False,), type="tertiary")


# --- bulk actions -------------------------------------------------------------------------------------


def _trash(ids: list[int]) -> str:
    return f"Moved {_plural(assets.trash_assets(ids), 'asset')} to the trash."


def _restore(ids: list[int]) -> str:
    return f"Restored {_plural(assets.restore_assets(ids), 'asset')}."


def _purge(ids: list[int]) -> str:
    return f"Purged {_plural(assets.purge_assets(ids), 'asset')} for good."


def _add(ids: list[int]) -> str:
    target = st.session_state.get("assets.add_target")
    if target is None:
        raise NotFound("pick a collection first")
    added = collections.add_to_collection(target, ids)
    return f"Added {_plural(added, 'asset')} to {collections.get_collection(target).name!r}."


def _remove(collection_id: int, ids: list[int]) -> str:
    removed = collections.remove_from_collection(collection_id, ids)
    return f"Took {_plural(removed, 'asset')} out of {collections.get_collection(collection_id).name!r}."


def _empty_trash() -> str:
    report = assets.empty_trash()
    kept = f" Kept {len(report.kept)}: " + "; ".join(report.kept[:5]) if report.kept else ""
    return f"Purged {_plural(report.purged, 'asset')}.{kept}"


def library_actions(selected: list[Asset], filters: AssetFilter) -> None:
    ids = [a.id for a in selected if a.id is not None]
    count = len(ids)
    # One wrapping row: buttons as wide as their labels, the collection box a fixed width beside "Add".
    row = st.container(horizontal=True, vertical_alignment="bottom")
    row.button(f"Move {count} to trash", key="assets.trash", disabled=not ids, icon=":material/delete:",
                  on_click=guard(_run), args=(lambda: _trash(ids),))
    names = {c.id: c.name for c in collections.list_collections(page_size=100).items}
    row.selectbox("Add to collection", list(names), format_func=lambda i: plain(names[i]), key="assets.add_target",
                  index=None, placeholder="create one in Collections" if not names else "choose a collection",
                  width=260)
    row.button("Add", key="assets.add", disabled=not ids or not names, icon=":material/playlist_add:",
                  on_click=guard(_run), args=(lambda: _add(ids),))
    if filters.collection_id is not None:
        collection_id = filters.collection_id
        row.button("Remove from collection", key="assets.remove", disabled=not ids,
                      on_click=guard(_run), args=(lambda: _remove(collection_id, ids),))
    images = [a.id for a in selected if assets.library_kind(a) == "image" and a.id is not None]
    if row.button(f"Make a video ({len(images)})", key="assets.video", disabled=not images,
                     icon=":material/movie:", help="Hands the selected images to the Videos page."):
        hand_to_video_page(images)


def trash_actions(selected: list[Asset], total: int) -> None:
    ids = [a.id for a in selected if a.id is not None]
    row = st.container(horizontal=True, vertical_alignment="center")
    row.button(f"Restore {len(ids)}", key="assets.restore", disabled=not ids, icon=":material/restore_from_trash:",
                  on_click=guard(_run), args=(lambda: _restore(ids),))
    confirm = row.checkbox(f"Yes, purge {len(ids)} for good", key="assets.purge_confirm", disabled=not ids)
    row.button("Purge", key="assets.purge", disabled=not (ids and confirm), type="primary",
                  icon=":material/delete_forever:", on_click=guard(_run), args=(lambda: _purge(ids),),
                  help="Removes the files from storage; a LoRA file also removes its LoRA version.")
    empty = row.checkbox(f"Yes, empty the whole trash ({total})", key="assets.empty_confirm", disabled=not total)
    row.button("Empty trash", key="assets.empty", disabled=not (total and empty), type="primary",
                  on_click=guard(_run), args=(_empty_trash,))


# --- the detail view ----------------------------------------------------------------------------------


def _close() -> None:
    st.session_state.pop(DETAIL, None)
    st.query_params.pop("asset", None)


def _preview(asset: Asset, kind: str) -> None:
    try:
        if kind in ("image", "sample"):
            data = assets.read_asset(asset) if asset.size_bytes <= PREVIEW_MAX_BYTES else assets.read_thumbnail(asset)
            st.image(data, width="stretch")
        elif kind == "video":
            st.video(assets.download_url(asset))
        elif kind == "audio":
            st.audio(assets.download_url(asset))
        else:
            st.markdown(f"## :material/{KIND_ICONS.get(kind, 'draft')}:")
    except StudioError as error:
        st.warning(literal(f"The file cannot be shown: {error}"))


def _metadata_rows(asset: Asset, lineage: assets.Lineage) -> list[dict[str, str]]:
    created, deleted = jobs.aware(asset.created_at), jobs.aware(asset.deleted_at)
    rows = {"id": asset.id, "kind": KIND_NAMES.get(lineage.kind, lineage.kind), "source": asset.source,
            "file": asset.key, "type": asset.content_type, "size": format_size(asset.size_bytes),
            "dimensions": f"{asset.width}×{asset.height}" if asset.width and asset.height else None,
            "created (UTC)": f"{created:%Y-%m-%d %H:%M:%S}" if created else None,
            "in the trash since": f"{deleted:%Y-%m-%d %H:%M}" if deleted else None,
            "seed": lineage.seed, **lineage.settings}
    if lineage.kind in ("image", "sample"):
        score = likeness.likeness_from_meta(asset.meta)
        rows["likeness"] = score.describe() if score else "not scored (no face fingerprint when it was made)"
    return [{"field": plain(name), "value": plain(value)} for name, value in rows.items() if value not in (None, "")]


def asset_detail(asset_id: int) -> None:
    try:
        asset = assets.get_asset(asset_id)
    except NotFound:
        _close()
        return
    lineage = assets.lineage(asset)
    with st.container(border=True):
        head = st.columns([6, 1])
        head[0].subheader(f"{KIND_NAMES.get(lineage.kind, lineage.kind)} #{asset.id}")
        head[1].button("Close", key="assets.close", on_click=guard(_close), icon=":material/close:")
        left, right = st.columns([2, 3])
        with left:
            _preview(asset, lineage.kind)
            try:
                st.link_button("Download", assets.download_url(asset), icon=":material/download:")
            except StudioError as error:
                st.warning(literal(f"No download link: {error}"))
            if lineage.kind == "lora" and (lora_id := (asset.meta or {}).get("lora_id")):
                _kohya_download(int(lora_id))
        with right:
            _lineage(lineage)
            st.dataframe(_metadata_rows(asset, lineage), hide_index=True, key="assets.detail.meta")


def _kohya_download(lora_id: int) -> None:
    """The LoRA in kohya format (ComfyUI, A1111, Forge, sd-scripts; for the DiT families ComfyUI), plus for the
    DiT families the ComfyUI / ai-toolkit file, each built only when clicked."""
    try:
        lora = get_lora(lora_id)
    except NotFound:
        return  # the LoRA row was removed; the file link above still works while the file exists
    dit = lora.family in lora_files.DIT_FAMILIES
    st.download_button("Download for ComfyUI (kohya format)" if dit else "Download for ComfyUI / A1111 (kohya)",
                       functools.partial(lora_files.kohya_bytes, lora),
                       file_name=kohya.file_name(lora_files.file_stem(lora)), mime="application/octet-stream",
                       key="assets.download_kohya", on_click="ignore", icon=":material/download:")
    if dit:  # the diffusion_model.… layout ai-toolkit writes, which ComfyUI loads too
        st.download_button("Download for ComfyUI / ai-toolkit", functools.partial(lora_files.comfyui_bytes, lora),
                           file_name=comfyui.file_name(lora_files.file_stem(lora)), mime="application/octet-stream",
                           key="assets.download_comfyui", on_click="ignore", icon=":material/download:")


def _lineage(lineage: assets.Lineage) -> None:
    st.markdown("**Lineage**")
    if lineage.dataset_id is not None:
        deleted = " (since deleted)" if lineage.dataset_name == "deleted" else ""
        st.text(f"Dataset: {plain(lineage.dataset_name)}{deleted}")
    if lineage.loras:
        st.dataframe([{"LoRA": plain(x.name), "strength": x.strength, "step": x.step,
                       "status": "available" if x.exists else "deleted"} for x in lineage.loras],
                     hide_index=True, key="assets.detail.loras")
    if lineage.job is not None:
        job = lineage.job
        st.text(f"Job: {job.kind} {job.id[:8]} ({job.status})")
        if st.button("Open on the Jobs page", key="assets.open_job", icon=":material/work_history:"):
            st.session_state["jobs.selected"] = job.id
            st.switch_page(page_paths.JOBS)
    elif lineage.job_id:
        st.text(f"Job: {lineage.job_id[:8]} (deleted)")
    if lineage.init_asset_id is not None:
        st.text(f"Started from asset #{lineage.init_asset_id} ({lineage.init_asset_state})")
        if lineage.init_asset_state != "purged":
            st.button("Open the start image", key="assets.open_init", on_click=guard(_open),
                      args=(lineage.init_asset_id,))
    if lineage.prompt:
        st.caption("Prompt")
        st.text(plain(lineage.prompt))
    if lineage.negative_prompt:
        st.caption("Negative prompt")
        st.text(plain(lineage.negative_prompt))
    if lineage.collections:
        st.text("In collections: " + ", ".join(plain(name) for _, name in lineage.collections))
    if not (lineage.dataset_id or lineage.loras or lineage.job_id or lineage.prompt):
        st.caption("No lineage recorded (an upload, or made before the studio kept it).")


# --- collections --------------------------------------------------------------------------------------


def _create(name: str, description: str) -> str:
    created = collections.create_collection(name=name, description=description)
    st.session_state["assets.col.open"] = created.id
    return f"Created collection {created.name!r}."


def _show(collection_id: int) -> None:
    """Open the library filtered by this collection."""
    st.session_state[VIEW] = "library"
    st.session_state["assets.f.collection"] = collection_id
    st.session_state[PAGE] = 1
    st.session_state.pop(DETAIL, None)


def _rename(collection_id: int) -> str:
    renamed = collections.rename_collection(
        collection_id, name=st.session_state.get(f"assets.col.name.{collection_id}", ""),
        description=st.session_state.get(f"assets.col.description.{collection_id}", ""))
    return f"Saved {renamed.name!r}."


def _delete(collection_id: int) -> str:
    name = collections.get_collection(collection_id).name
    removed = collections.delete_collection(collection_id)
    st.session_state.pop("assets.col.open", None)
    if st.session_state.get("assets.f.collection") == collection_id:
        st.session_state.pop("assets.f.collection")
    return f"Deleted collection {name!r} ({_plural(removed, 'membership')}; the assets stay)."


def collections_section() -> None:
    with st.form("assets.new_collection", clear_on_submit=True):
        columns = st.columns([2, 3])
        name = columns[0].text_input("Name", max_chars=120, key="assets.col.new_name")
        description = columns[1].text_input("Description", max_chars=2000, key="assets.col.new_description")
        if st.form_submit_button("Create collection", icon=":material/add:"):
            _run(lambda: _create(name, description))
            st.rerun()
    page = collections.list_collections(page=st.session_state.get("assets.col.page", 1), page_size=25)
    if not page.items:
        st.info("No collections yet: name one above, then add assets to it from the Library "
                "(tick them, choose the collection under 'Add to collection').")
        return
    st.dataframe([{"name": plain(c.name), "assets": c.item_count, "description": plain(c.description),
                   "updated": jobs.aware(c.updated_at)} for c in page.items], hide_index=True,
                 column_config={"updated": st.column_config.DatetimeColumn("updated (UTC)", format="YYYY-MM-DD HH:mm")})
    if page.pages > 1:
        st.number_input(f"Page (of {page.pages}) · {page.total} collections", 1, page.pages, key="assets.col.page")
    by_id = {c.id: c for c in page.items}
    if st.session_state.get("assets.col.open") not in by_id:
        st.session_state.pop("assets.col.open", None)
    chosen = st.selectbox("Open collection", list(by_id), format_func=lambda i: plain(by_id[i].name),
                          key="assets.col.open")
    collection = by_id[chosen]
    actions = st.columns([2, 3, 2], vertical_alignment="bottom")
    actions[0].button(f"Show its {_plural(collection.item_count, 'asset')}", key="assets.col.show",
                      on_click=guard(_show), args=(chosen,), icon=":material/photo_library:")
    # Labels render Markdown: user text (names, prompts) goes through ui.text, never into a label raw.
    confirm = actions[1].checkbox("Yes, delete this collection (the assets stay)", key=f"assets.col.confirm.{chosen}")
    actions[2].button("Delete collection", key="assets.col.delete", disabled=not confirm, type="primary",
                      on_click=guard(_run), args=(lambda: _delete(chosen),))
    with st.expander("Rename or describe"):
        st.text_input("Name", value=collection.name, max_chars=120, key=f"assets.col.name.{chosen}")
        st.text_input("Description", value=collection.description, max_chars=2000,
                      key=f"assets.col.description.{chosen}")
        st.button("Save", key="assets.col.rename", on_click=guard(_run), args=(lambda: _rename(chosen),))


# --- the library and trash views ------------------------------------------------------------------------


def _empty_note(trash: bool, filters: AssetFilter) -> str:
    if trash:
        return "The trash is empty. Assets moved to the trash from the Library wait here until restored or purged."
    if filters == assets.AssetFilter():
        return ("No assets yet. Generate images on the Generate page or train a LoRA on the Training page: "
                "images, training samples and LoRA files land here.")
    return "No assets match these filters. Clear a filter (set it back to 'any') to see more."


def library_view(*, trash: bool) -> None:
    """The filters, the open asset's detail, the actions on the ticked assets, the grid and its pager."""
    chosen = filter_bar(trash=trash)
    if chosen is None:
        return
    filters, sort, page_size = chosen

    if (detail_id := st.session_state.get(DETAIL)) is not None:
        asset_detail(detail_id)

    page = assets.list_assets(filters, sort=sort, page=st.session_state.get(PAGE, 1), page_size=page_size)
    if (number := clamp_page(page.pages)) != page.page:
        page = assets.list_assets(filters, sort=sort, page=number, page_size=page_size)

    if not page.items:
        st.info(_empty_note(trash, filters))
        return

    if trash:
        st.caption("In the trash: restore brings an asset back; purge removes its files from storage for good.")
    # The actions go above the grid; the selection they act on is the ticked boxes of this page.
    selected = selected_on(page)
    with st.container(border=True):
        if trash:
            trash_actions(selected, page.total)
        else:
            library_actions(selected, filters)
        select_all(page)
    asset_grid(page)
    pager(page, "asset")
