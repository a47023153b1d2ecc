"""Characters: create, edit, switch and archive the influencers; a character's reference images and lineage."""

import streamlit as st

from ui.characters.page import characters_page

st.title("Characters")
st.caption("Everything the studio makes belongs to the character picked in the sidebar.")
characters_page()
