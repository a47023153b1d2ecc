"""Assets: the library of everything the studio made or keeps (images, training samples, LoRA files,
videos, audio), with filters, a detail view with lineage, collections, and a trash."""

import streamlit as st

from core.library import assets
from ui.assets import (
    DETAIL,
    VIEW,
    VIEWS,
    apply_navigation,
    asset_detail,
    asset_grid,
    clamp_page,
    collections_section,
    filter_bar,
    library_actions,
    pager,
    select_all,
    selected_on,
    show_flash,
    trash_actions,
)

st.title("Assets")

apply_navigation()  # a ?asset= link opens that asset's detail
# A segmented control rather than tabs: only the chosen view runs, and actions can switch it
# ("Show its assets" on a collection opens the library filtered by it).
view = st.segmented_control("View", list(VIEWS), format_func=VIEWS.get, required=True, key=VIEW,
                            label_visibility="collapsed")
show_flash()

if view == "collections":
    collections_section()
    st.stop()

trash = view == "trash"
chosen = filter_bar(trash=trash)
if chosen is None:
    st.stop()
filters, sort, page_size = chosen

if (detail_id := st.session_state.get(DETAIL)) is not None:
    asset_detail(detail_id)

page = assets.list_assets(filters, sort=sort, page=st.session_state.get("assets.page", 1), page_size=page_size)
if (number := clamp_page(page.pages)) != page.page:
    page = assets.list_assets(filters, sort=sort, page=number, page_size=page_size)

if not page.items:
    if trash:
        st.info("The trash is empty. Assets moved to the trash from the Library wait here until restored or purged.")
    elif filters == assets.AssetFilter():
        st.info("No assets yet. Generate images on the Generate page or train a LoRA on the Training page: "
                "images, training samples and LoRA files land here.")
    else:
        st.info("No assets match these filters. Clear a filter (set it back to 'any') to see more.")
    st.stop()

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
