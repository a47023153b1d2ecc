"""The roster: every character (archived ones on request), a new one, switching, archiving and unarchiving."""

from __future__ import annotations

import streamlit as st

from core.characters import characters
from core.errors import StudioError
from core.models import Character
from ui.auth import guard
from ui.feedback import run_action
from ui.session import set_session_character
from ui.text import literal, plain

FLASH = "characters.flash"


def new_character_form() -> None:
    with st.form("characters.new", clear_on_submit=True):
        with st.container(horizontal=True, vertical_alignment="bottom"):
            name = st.text_input("Name", max_chars=120, width=320, key="characters.new.name")
            slug = st.text_input("Slug (optional)", max_chars=characters.SLUG_MAX, width=260, key="characters.new.slug",
                                 help="Left empty: made from the name (e.g. 'Mia Rivers' → mia-rivers).")
            trigger = st.text_input("Trigger word", max_chars=120, width=260, key="characters.new.trigger")
            created = st.form_submit_button("Create", icon=":material/person_add:", key="characters.new.create")
    if not created:
        return
    try:
        character = characters.create_character(name=name, slug=slug, trigger_word=trigger)
    except StudioError as error:
        st.error(literal(str(error)))
        return
    set_session_character(st.session_state, character.id or 0)  # a new character is the one worked on next
    st.rerun()


def _switch(character_id: int) -> None:
    set_session_character(st.session_state, character_id)


def _archive(character_id: int, archived: bool) -> None:
    def act() -> str:
        done = characters.set_archived(character_id, archived=archived)
        return f"{done.name} is {'archived' if archived else 'back in the switcher'}."

    run_action(FLASH, act)


def _row(character: Character, current: int) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        label = character.name + (" (current)" if character.id == current else "")
        label += " · archived" if character.archived_at else ""
        st.text(plain(f"{label} — {character.slug or ''}"), width=360)
        cid = character.id or 0
        if character.archived_at is None and cid != current:
            st.button("Switch to", key=f"characters.switch.{cid}", on_click=guard(_switch), args=(cid,))
        if character.archived_at is None:
            st.button("Archive", key=f"characters.archive.{cid}", on_click=guard(_archive), args=(cid, True))
        else:
            st.button("Unarchive", key=f"characters.unarchive.{cid}", on_click=guard(_archive), args=(cid, False))


def roster(current: int) -> None:
    show_archived = st.toggle("Show archived", key="characters.show_archived")
    page = st.number_input("Page", min_value=1, value=1, step=1, key="characters.page", width=120)
    found = characters.list_characters(include_archived=show_archived, page=int(page), page_size=20)
    for character in found.items:
        _row(character, current)
    st.caption(f"{found.total} character(s) · page {found.page} of {found.pages}")
