"""The influencer the studio works for: name, persona, trigger word and voice.

An agency runs several characters; until the sidebar switcher exists, the studio works for
the first one, created on first use from the demo defaults.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from core.characters.persona import Persona
from core.config import get_settings
from core.db import get_or_raise, session_scope
from core.errors import InvalidInput
from core.models import Character
from core.training.runs import promoted_lora
from core.video.voices import validate_voice  # the video domain owns voice ids

DEFAULT_NAME = "Mia Rivers"
DEFAULT_PERSONA = Persona(
    name=DEFAULT_NAME, niche="outdoor fitness and healthy food", tone="warm, upbeat, practical",
    audience="busy people in their 20s and 30s who want to move more",
    do=["share one concrete tip per post", "speak in the first person"],
    dont=["medical claims", "mention competitors"],
)


def current_character() -> Character:
    """The character the studio works for (the first one; made from the defaults when there is none)."""
    with session_scope() as session:
        character = session.execute(select(Character).order_by(col(Character.id)).limit(1)).scalar_one_or_none()
        if character is None:
            character = Character(name=DEFAULT_NAME, persona=DEFAULT_PERSONA.model_dump())
            session.add(character)
            session.flush()
        return character


def get_character(character_id: int) -> Character:
    return get_or_raise(Character, character_id, f"character {character_id}")


def persona_of(character: Character) -> Persona:
    """The stored persona (its name defaults to the character's name)."""
    values = dict(character.persona or {})
    values.setdefault("name", character.name)
    return Persona.model_validate(values)


def save_persona(character_id: int, persona: Persona, *, trigger_word: str | None = None) -> Character:
    with session_scope() as session:
        character = session.get(Character, character_id, with_for_update=True)
        if character is None:
            raise InvalidInput(f"character {character_id} does not exist")
        character.persona = persona.model_dump()
        if trigger_word is not None:
            character.trigger_word = trigger_word.strip()
        session.flush()
        return character


def trigger_word_of(character_id: int | None) -> str:
    """The word that calls up the character in a prompt: its promoted LoRA's, else the character's own."""

    lora = promoted_lora(character_id) or (promoted_lora(None) if character_id is not None else None)
    if lora is not None and lora.trigger_word:
        return lora.trigger_word
    if character_id is None:
        return ""
    return get_character(character_id).trigger_word




def set_voice(*, character_id: int, voice: str) -> Character:
    """Store the character's voice (a voice id, e.g. ``csm:<reference clip id>``); checked first, so a bad
    voice changes nothing. An empty voice goes back to the studio's default."""
    canonical = validate_voice(voice).id if voice.strip() else ""
    with session_scope() as session:
        character = session.get(Character, character_id, with_for_update=True)
        if character is None:
            raise InvalidInput(f"character {character_id} does not exist")
        character.voice = canonical
        session.flush()
        return character


def voice_of(character_id: int | None) -> str:
    """The voice a character speaks with by default: its own, else the studio's default voice."""
    own = get_character(character_id).voice if character_id is not None else ""
    return own or get_settings().tts_default_voice
