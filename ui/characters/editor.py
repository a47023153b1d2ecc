"""The current character's editor: name, slug, trigger word, likeness threshold and persona. Its voice has its own
block (ui.voice_picker.render_character_voice, beside this form on the page): cloning a voice from a clip is not a
form field, and one place sets the voice, so saving this form never puts back an older one."""

from __future__ import annotations

import streamlit as st

from core.characters import characters
from core.characters.persona import Persona
from core.errors import StudioError
from core.models import Character
from ui.feedback import flash, show_flash
from ui.text import literal

FLASH = "characters.flash"
THRESHOLD_HELP = (
    "Likeness is the distance between two faces' descriptors (dlib's face recognition model): lower means more "
    "alike. dlib counts two faces as the same person at 0.6 or less (99.38 % right on the LFW benchmark). "
    "An image (or a pipeline's post) whose face is farther than this threshold from the character's fingerprint "
    "does not look like the character: the library marks it, and an automated post is held for review. "
    "Lower it to be stricter; raise it to accept more."
)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def character_editor(character: Character) -> None:
    show_flash(FLASH)
    persona = characters.persona_of(character)
    low, high = characters.THRESHOLD_RANGE
    key = f"characters.edit.{character.id}"
    with st.form(key):
        with st.container(horizontal=True):
            name = st.text_input("Name", character.name, max_chars=120, width=320, key=f"{key}.name")
            slug = st.text_input("Slug", character.slug or "", max_chars=characters.SLUG_MAX, width=260,
                                 key=f"{key}.slug",
                                 help="How the API, the CLI and n8n name this character (character=<slug>).")
            trigger = st.text_input("Trigger word", character.trigger_word, max_chars=120, width=260,
                                    key=f"{key}.trigger")
        threshold = st.slider("Likeness threshold (face distance)", low, high, float(character.likeness_threshold),
                              step=0.01, help=THRESHOLD_HELP, key=f"{key}.threshold")
        st.caption(THRESHOLD_HELP)
        niche = st.text_input("Niche", persona.niche, max_chars=200)
        tone = st.text_input("Tone", persona.tone, max_chars=200)
        audience = st.text_input("Audience", persona.audience, max_chars=200)
        do = st.text_area("Always (one rule a line)", "\n".join(persona.do))
        dont = st.text_area("Never (one rule a line)", "\n".join(persona.dont))
        if not st.form_submit_button("Save", icon=":material/save:", key=f"{key}.save"):
            return
    try:
        updated = characters.update_character(character.id or 0, name=name, slug=slug, trigger_word=trigger,
                                              likeness_threshold=threshold)
        characters.save_persona(updated.id or 0, Persona(name=updated.name, niche=niche, tone=tone,
                                                         audience=audience, do=_lines(do), dont=_lines(dont)))
    except (StudioError, ValueError) as error:  # ValueError: the persona's own validation
        st.error(literal(str(error)))
        return
    flash(FLASH, "success", f"Saved {updated.name}.")
    st.rerun()
