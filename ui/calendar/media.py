"""The post editor's media: the chosen assets with Remove, and a page of the library to choose from."""

from __future__ import annotations

import streamlit as st

from core.errors import StudioError
from core.library import assets
from core.models import Asset, Post
from core.publishing.checks import RULES
from ui.auth import guard
from ui.calendar.post_form import edit_key, post_form

MEDIA_PAGE_SIZE = 8


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(key: str, asset_id: int) -> bytes:
    return assets.read_thumbnail(assets.get_asset(asset_id))


def _media_tile(asset: Asset) -> None:
    if asset.thumbnail_key or asset.kind == "image":
        try:
            st.image(_thumbnail(asset.thumbnail_key or asset.key, asset.id or 0), width="stretch")
            return
        except StudioError:
            pass
    st.markdown(":material/movie:" if asset.kind == "video" else ":material/broken_image:")


def _set_media(post_id: int, asset_ids: list[int]) -> None:
    post_form(post_id).load({"media": asset_ids})


def media_picker(post: Post, locked: bool) -> None:
    pid = post.id or 0
    chosen = list(post_form(pid).value("media", []))
    st.caption("Media")
    for asset_id in chosen:
        left, right = st.columns([1, 3], vertical_alignment="center")
        try:
            asset = assets.get_asset(asset_id)
        except StudioError:
            right.warning(f"Asset #{asset_id} no longer exists.")
            continue
        with left:
            _media_tile(asset)
        right.caption(f"{asset.kind} #{asset.id} · {asset.width or '?'}×{asset.height or '?'}")
        right.button("Remove", key=edit_key(pid, f"remove.{asset_id}"), disabled=locked, on_click=guard(_set_media),
                     args=(pid, [i for i in chosen if i != asset_id]))
    if locked:
        return
    with st.expander("Choose media from the library", expanded=not chosen):
        _media_choices(pid, post_form(pid).value("platform", post.platform))


def _media_choices(pid: int, platform: str) -> None:
    kinds = list(RULES[platform].media)
    kind = st.radio("Kind", kinds, horizontal=True, key="calendar.media.kind") if len(kinds) > 1 else kinds[0]
    library = assets.make_filter(kind=kind or kinds[0])
    page = assets.list_assets(library, page=clamp_page("calendar.media.page", library), page_size=MEDIA_PAGE_SIZE)
    if not page.items:
        st.info(f"No {kind} in the library yet: make some on the Generate or Videos page.")
        return
    for start in range(0, len(page.items), 4):
        for column, asset in zip(st.columns(4), page.items[start:start + 4], strict=False):
            with column:
                _media_tile(asset)
                st.button(f"Use #{asset.id}", key=edit_key(pid, f"use.{asset.id}"), on_click=guard(_set_media),
                          args=(pid, [asset.id]))
    if page.pages > 1:
        st.number_input(f"Page (of {page.pages})", 1, page.pages, key="calendar.media.page")


def clamp_page(key: str, library: assets.AssetFilter) -> int:
    """The stored page number, brought back in range when the library shrank."""
    pages = max(1, -(-assets.list_assets(library, page_size=1).total // MEDIA_PAGE_SIZE))
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = pages
    return int(st.session_state.get(key, 1))
