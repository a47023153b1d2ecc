"""Voice-over scripts written from a topic: in the character's persona, sized to the video's length.

``write_script`` asks the configured OpenAI-compatible endpoint (``core.publishing.llm``) for the words, with
the persona, the topic and a word budget (seconds × speaking rate); an answer far off the budget goes back
once for repair (the client's one repair). Without an endpoint — or, in ``auto`` mode, when the endpoint
fails — the offline template writer gives a deterministic script of about the same length, so the Videos
page works without network. Either way the result is only a draft: the user edits it before rendering.

The ``video-script`` job runs the same function for the API (``POST /api/jobs``, kind ``video-script``);
the Videos page calls it directly, since the user waits for the words anyway.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from core.characters import characters
from core.characters.persona import Persona
from core.config import get_settings
from core.errors import InvalidInput, PermanentJobError, referenced_by
from core.infra.http_retry import RetriesExhausted
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import JobContext
from core.publishing.llm import CallUsage, LlmClient, LlmOutputInvalid, record_calls

SCRIPT_KIND = "video-script"
Writer = Literal["auto", "llm", "template"]
_SLACK = 0.35  # an LLM script may be this much shorter or longer than its word budget before it is sent back


class ScriptPayload(Payload):
    """Write a voice-over script about ``topic`` lasting about ``seconds``. With no persona, the character's."""

    topic: str = Field(min_length=1, max_length=300)
    seconds: float = Field(default=20.0, ge=3.0, le=180.0)
    rate_wpm: int = Field(default=165, ge=80, le=400, description="the voice's speaking rate")
    character_id: int | None = Field(default=None, ge=1)
    persona: Persona | None = None
    writer: Writer = "auto"  # auto: the LLM when one is configured, else (or when it fails) the template


@dataclass(frozen=True)
class WrittenScript:
    script: str
    writer: str  # "llm:<model>" or "template"
    words: int
    target_words: int
    note: str = ""  # why the template wrote it when the LLM was asked (auto mode)
    calls: tuple[CallUsage, ...] = ()


def target_words(seconds: float, rate_wpm: int) -> int:
    """How many words fit ``seconds`` of speech at ``rate_wpm`` (at least a short sentence)."""
    return max(6, round(seconds * rate_wpm / 60))


def llm_configured() -> bool:
    settings = get_settings()
    return bool(settings.llm_base_url.strip() and settings.llm_model.strip())


# --- the offline template writer ---------------------------------------------------------------------------

_HOOKS = ("Here is what nobody tells you about {topic}.", "Let's talk about {topic}.",
          "Three things I learned about {topic}.", "You asked, so here is my take on {topic}.")
_MIDDLES = ("I tried it myself this week, and it changed how I see it.", "Start small and keep it simple.",
            "The trick is to do a little every day.", "Most people skip this step, so do not be most people.",
            "It takes less time than you think.", "Find what works for you and stick with it.",
            "Do not wait for the perfect moment.", "Progress beats perfection, every single time.")
_CALLS = ("Follow for more, and tell me what you think.", "Save this for later and share it with a friend.",
          "Which part will you try first? Tell me below.")


def template_script(topic: str, persona: Persona, words: int) -> str:
    """A deterministic script (same topic and persona, same words) of about ``words`` words: a hook, the
    persona's own rules and general tips, a call to action; whole sentences only."""
    seed = hashlib.sha256(f"{topic}\n{persona.name}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    clean_topic = topic.strip().rstrip(".!?")
    hook = rng.choice(_HOOKS).format(topic=clean_topic)
    intro = f"I'm {persona.name}" + (f", and {persona.niche} is my thing." if persona.niche else ".")
    rules = [f"I always {rule.rstrip('.')}." for rule in persona.do]
    middles = rules + rng.sample(_MIDDLES, len(_MIDDLES))
    close = rng.choice(_CALLS)
    sentences = [hook, intro]
    budget = words - len(close.split())
    for sentence in middles:
        if sum(len(s.split()) for s in sentences) + len(sentence.split()) > budget:
            break
        sentences.append(sentence)
    return " ".join([*sentences, close])


# --- the LLM writer ----------------------------------------------------------------------------------------


def script_schema(words: int) -> type[BaseModel]:
    """The answer's schema: the script, its length within ``_SLACK`` of ``words`` (else one repair)."""
    low, high = int(words * (1 - _SLACK)), int(words * (1 + _SLACK)) + 1

    def about_the_length(model: Any) -> Any:
        count = len(model.script.split())
        if not low <= count <= high:
            raise ValueError(f"the script has {count} words; write {low}–{high} words")
        return model

    return create_model(
        "VideoScriptAnswer",
        script=(str, Field(min_length=1, max_length=5000)),
        __validators__={"about_the_length": model_validator(mode="after")(about_the_length)},  # type: ignore[dict-item]
    )


def llm_messages(topic: str, persona: Persona, seconds: float, words: int) -> list[dict[str, Any]]:
    system = ("You write voice-over scripts for short vertical videos (Reels, Shorts, TikTok), spoken by the "
              "influencer described below, in their voice and tone. Write only the words to be spoken: plain "
              "sentences, no hashtags, no emojis, no stage directions, no headings. Open with a hook in the first "
              "sentence and end with a short call to action. Answer with JSON: {\"script\": \"...\"}.")
    user = (f"{persona.describe()}\n\nTopic: {topic.strip()}\n"
            f"Length: about {words} words ({seconds:g} seconds of speech).")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _llm_script(topic: str, persona: Persona, seconds: float, words: int) -> WrittenScript:
    client = LlmClient.from_settings(get_settings())
    if client is None:
        raise InvalidInput("writer: no LLM is configured (set STUDIO_LLM_BASE_URL and STUDIO_LLM_MODEL)")
    result = client.chat_json(llm_messages(topic, persona, seconds, words), script_schema(words), purpose="script")
    script = " ".join(str(result.value.script).split())  # type: ignore[attr-defined]
    return WrittenScript(script=script, writer=f"llm:{client.model}", words=len(script.split()),
                         target_words=words, calls=tuple(result.calls))


def write_script(*, topic: str, persona: Persona, seconds: float, rate_wpm: int = 165,
                 writer: Writer = "auto") -> WrittenScript:
    """A draft script about ``topic`` in ``persona``'s voice for ``seconds`` of speech.

    ``llm`` fails with the endpoint's error; ``auto`` uses the LLM when one is configured and falls back to
    the template when it fails (the reason in ``note``); ``template`` never calls out."""
    if not topic.strip():
        raise InvalidInput("topic: say what the video is about")
    words = target_words(seconds, rate_wpm)
    if writer == "llm" or (writer == "auto" and llm_configured()):
        try:
            return _llm_script(topic, persona, seconds, words)
        except (PermanentJobError, RetriesExhausted) as error:
            if writer == "llm":
                raise
            calls = tuple(error.calls) if isinstance(error, LlmOutputInvalid) else ()
            note = f"the LLM could not write it ({error}); the offline template wrote this draft"
            script = template_script(topic, persona, words)
            return WrittenScript(script=script, writer="template", words=len(script.split()), target_words=words,
                                 note=note, calls=calls)
    script = template_script(topic, persona, words)
    return WrittenScript(script=script, writer="template", words=len(script.split()), target_words=words)


def persona_for(character_id: int | None) -> tuple[Persona, int | None]:
    """The persona of a character (the current one when none is named)."""
    with referenced_by("character_id"):
        character = (characters.get_character(character_id) if character_id is not None
                     else characters.current_character())
    return characters.persona_of(character), character.id


# --- the job --------------------------------------------------------------------------------------------------


def prepare_script_payload(payload: ScriptPayload) -> tuple[ScriptPayload, int | None]:
    if payload.writer == "llm" and not llm_configured():
        raise InvalidInput("writer: no LLM is configured (set STUDIO_LLM_BASE_URL and STUDIO_LLM_MODEL) — "
                           "use the template writer")
    if payload.persona is not None:
        return payload, payload.character_id
    persona, character_id = persona_for(payload.character_id)
    return payload.model_copy(update={"persona": persona, "character_id": character_id}), character_id


def run_script(ctx: JobContext[ScriptPayload]) -> dict[str, Any]:
    """The ``video-script`` job: the draft and who wrote it (the LLM calls' cost is recorded)."""
    payload = ctx.payload
    persona = payload.persona or persona_for(payload.character_id)[0]
    written = write_script(topic=payload.topic, persona=persona, seconds=payload.seconds,
                           rate_wpm=payload.rate_wpm, writer=payload.writer)
    record_calls(written.calls, job_id=ctx.job_id, purpose="script")
    if written.note:
        ctx.log(written.note)
    return {"script": written.script, "writer": written.writer, "words": written.words,
            "target_words": written.target_words, "note": written.note}


register(JobSpec(
    SCRIPT_KIND, Queue.DEFAULT, ScriptPayload, "Writes a voice-over script from a topic in the persona's voice.",
    max_attempts=3, time_limit_s=300, prepare=prepare_script_payload,
))
