"""Assets: the library of everything the studio made or keeps (images, training samples, LoRA files,
videos, audio), with filters, a detail view with lineage, collections, and a trash."""

import streamlit as st

from ui.assets import VIEW, VIEWS, apply_navigation, collections_section, library_view, show_flash

st.title("Assets")

apply_navigation()  # a ?asset= link opens that asset's detail
# A segmented control rather than tabs: only the chosen view runs, and actions can switch it
# ("Show its assets" on a collection opens the library filtered by it).
view = st.segmented_control("View", list(VIEWS), format_func=VIEWS.__getitem__, required=True, key=VIEW,
                            label_visibility="collapsed")
show_flash()

if view == "collections":
    collections_section()
else:
    library_view(trash=view == "trash")
