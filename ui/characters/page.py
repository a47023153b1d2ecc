"""The Characters page body: the current character (editor, voice, reference images, lineage) and the roster."""

from __future__ import annotations

import streamlit as st

from core.characters import characters
from ui.characters.editor import character_editor
from ui.characters.lineage import lineage_view
from ui.characters.references import reference_images
from ui.characters.roster import new_character_form, roster
from ui.session import session_character_id
from ui.voice_picker import render_character_voice


def characters_page() -> None:
    current = session_character_id(st.session_state)
    character = characters.get_character(current)
    edit, refs, lineage, everyone = st.tabs(["Character", "Reference images", "Lineage", "All characters"])
    with edit:
        character_editor(character)
        render_character_voice(current)
    with refs:
        reference_images(character)
    with lineage:
        lineage_view(current)
    with everyone:
        new_character_form()
        roster(current)
