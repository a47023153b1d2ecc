"""The influencer the studio works for: create, edit, archive, switch; name, slug, persona, trigger word, voice.

An agency runs several characters. Everything the studio makes belongs to one; the switcher (UI), the
``character`` parameter (API, CLI) and ``core.characters.scope`` say which. When nobody says, the default is the
first active character, made from the demo defaults on first use.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.characters.persona import Persona
from core.characters.scope import scoped_character_id
from core.config import get_settings
from core.db import get_or_raise, session_scope
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Character, utcnow
from core.pagination import Page, clamp
from core.training.runs import promoted_lora
from core.video.voices import validate_voice  # the video domain owns voice ids

DEFAULT_NAME = "Mia Rivers"
DEFAULT_PERSONA = Persona(
    name=DEFAULT_NAME, niche="outdoor fitness and healthy food", tone="warm, upbeat, practical",
    audience="busy people in their 20s and 30s who want to move more",
    do=["share one concrete tip per post", "speak in the first person"],
    dont=["medical claims", "mention competitors"],
)
SLUG_MAX = 80
_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,79}$")
# dlib's same-person distance is 0.6; a threshold outside this range holds every post or none.
THRESHOLD_RANGE = (0.2, 1.0)
SWITCHER_LIMIT = 200  # the switcher lists at most this many active characters (an agency runs a handful)


class CharacterChoiceError(InvalidInput):
    """The ``character`` a caller named (or left out) picks no single character: the API answers 400."""


def slugify(name: str) -> str:
    """A URL-safe slug from a name: ascii letters, digits and dashes, starting with a letter."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:SLUG_MAX].strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"c-{slug}".strip("-")[:SLUG_MAX]
    return slug


def _clean_slug(slug: str) -> str:
    cleaned = slug.strip().lower()
    if not _SLUG.match(cleaned) or cleaned.endswith("-"):
        raise InvalidInput("slug: lower-case letters, digits and dashes, starting with a letter (at most 80)")
    return cleaned


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > 120:
        raise InvalidInput("name: 1 to 120 characters")
    return cleaned


def _clean_short(value: str, field: str) -> str:
    cleaned = value.strip()
    if len(cleaned) > 120:
        raise InvalidInput(f"{field}: at most 120 characters")
    return cleaned


def _clean_threshold(value: float) -> float:
    low, high = THRESHOLD_RANGE
    if not low <= value <= high:
        raise InvalidInput(f"likeness threshold: between {low} and {high} (dlib's same-person distance is 0.6)")
    return round(float(value), 3)


def _taken(session: Any, column: Any, value: str, *, other_than: int | None) -> bool:
    query = select(func.count()).select_from(Character).where(column == value)
    if other_than is not None:
        query = query.where(col(Character.id) != other_than)
    return bool(session.execute(query).scalar_one())


def _free_slug(session: Any, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… when another character holds it."""
    slug, n = base, 1
    while _taken(session, col(Character.slug), slug, other_than=None):
        n += 1
        slug = f"{base[:SLUG_MAX - len(str(n)) - 1]}-{n}"
    return slug


def create_character(*, name: str, slug: str = "", trigger_word: str = "", voice: str = "",
                     persona: Persona | None = None, likeness_threshold: float = 0.6) -> Character:
    """A new character; the slug comes from the name unless given. A taken name or slug is a Conflict."""
    name = _clean_name(name)
    trigger_word, voice = _clean_short(trigger_word, "trigger word"), _clean_short(voice, "voice")
    threshold = _clean_threshold(likeness_threshold)
    chosen = _clean_slug(slug) if slug.strip() else None
    persona_values = (persona or Persona(name=name)).model_dump()
    try:
        with session_scope() as session:
            if _taken(session, col(Character.name), name, other_than=None):
                raise Conflict(f"a character named {name!r} already exists")
            if chosen is not None and _taken(session, col(Character.slug), chosen, other_than=None):
                raise Conflict(f"the slug {chosen!r} is taken")
            character = Character(name=name, slug=chosen or _free_slug(session, slugify(name)),
                                  persona=persona_values, trigger_word=trigger_word, voice=voice,
                                  likeness_threshold=threshold)
            session.add(character)
            session.flush()
            return character
    except IntegrityError:  # the same name or slug, created twice at once
        raise Conflict(f"a character named {name!r} (or its slug) already exists") from None


def update_character(character_id: int, *, name: str | None = None, slug: str | None = None,
                     trigger_word: str | None = None, voice: str | None = None,
                     likeness_threshold: float | None = None) -> Character:
    """Change what is given; an edited name keeps the slug (links stay valid) unless a slug is given too."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _clean_name(name)
    if slug is not None:
        changes["slug"] = _clean_slug(slug)
    if trigger_word is not None:
        changes["trigger_word"] = _clean_short(trigger_word, "trigger word")
    if voice is not None:
        changes["voice"] = _clean_short(voice, "voice")
    if likeness_threshold is not None:
        changes["likeness_threshold"] = _clean_threshold(likeness_threshold)
    try:
        with session_scope() as session:
            character = _locked(session, character_id)
            for field, column in (("name", col(Character.name)), ("slug", col(Character.slug))):
                if field in changes and _taken(session, column, changes[field], other_than=character_id):
                    raise Conflict(f"another character has the {field} {changes[field]!r}")
            if "name" in changes and (character.persona or {}).get("name") == character.name:
                character.persona = {**character.persona, "name": changes["name"]}  # the persona follows a rename
            for field, value in changes.items():
                setattr(character, field, value)
            session.flush()
            return character
    except IntegrityError:
        raise Conflict("another character has that name or slug") from None


def _locked(session: Any, character_id: int) -> Character:
    character = session.get(Character, character_id, with_for_update=True)
    if character is None:
        raise NotFound(f"character {character_id} does not exist")
    return character


def set_archived(character_id: int, *, archived: bool) -> Character:
    """Archive (hidden from the switcher and the default, data kept) or unarchive. The last active character
    cannot be archived: the studio always works for someone."""
    with session_scope() as session:
        character = _locked(session, character_id)
        if archived and character.archived_at is None:
            active = session.execute(select(func.count()).select_from(Character)
                                     .where(col(Character.archived_at).is_(None))).scalar_one()
            if active <= 1:
                raise InvalidInput("the last active character cannot be archived; create another one first")
        character.archived_at = (character.archived_at or utcnow()) if archived else None
        session.flush()
        return character


def list_characters(*, include_archived: bool = False, page: int = 1, page_size: int = 50) -> Page[Character]:
    """Characters by name (active ones only unless ``include_archived``)."""
    page, page_size = clamp(page, page_size, max_page_size=SWITCHER_LIMIT)
    query = select(Character)
    if not include_archived:
        query = query.where(col(Character.archived_at).is_(None))
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        items = list(session.execute(query.order_by(col(Character.name), col(Character.id))
                                     .offset((page - 1) * page_size).limit(page_size)).scalars())
    return Page(items, total, page, page_size)


def default_character() -> Character:
    """The first active character (by id); made from the demo defaults when the studio has none at all."""
    with session_scope() as session:
        character = session.execute(select(Character).where(col(Character.archived_at).is_(None))
                                    .order_by(col(Character.id)).limit(1)).scalar_one_or_none()
        if character is None:
            character = session.execute(select(Character).order_by(col(Character.id)).limit(1)).scalar_one_or_none()
        if character is None:
            character = Character(name=DEFAULT_NAME, slug=slugify(DEFAULT_NAME), persona=DEFAULT_PERSONA.model_dump())
            session.add(character)
            session.flush()
        return character


def current_character() -> Character:
    """The character the studio works for now: the scope's (switcher, API or CLI), else the default."""
    scoped = scoped_character_id()
    if scoped is not None:
        with session_scope() as session:
            character = session.get(Character, scoped)
        if character is not None:
            return character
    return default_character()


def resolve_character(ref: str | int | None) -> Character:
    """The character a caller names by id or slug. Left out: the only active character, or the default one
    while the studio has none; with several, the caller must say which (CharacterChoiceError, like an unknown one)."""
    text = str(ref).strip() if ref is not None else ""
    if not text:
        active = list_characters(page_size=3)
        if active.total > 1:
            slugs = ", ".join(c.slug or str(c.id) for c in active.items)
            raise CharacterChoiceError(f"several characters exist ({slugs}{', …' if active.total > 3 else ''}): "
                                       "name one by id or slug (API: character=…, CLI: --character …)")
        return active.items[0] if active.items else default_character()
    with session_scope() as session:
        if text.isdigit():
            character = session.get(Character, int(text)) if len(text) < 19 else None
        else:
            character = session.execute(select(Character).where(col(Character.slug) == text.lower())
                                        ).scalar_one_or_none()
    if character is None:
        raise CharacterChoiceError(f"no character with id or slug {text[:80]!r}")
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
