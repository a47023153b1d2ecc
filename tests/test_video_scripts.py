"""Scripts from a topic: written by the LLM (a local fake speaking OpenAI's protocol) in the persona's voice and
sized to the video, sent back once when far off the length; the offline template when no LLM is configured or
the LLM refuses; the ``video-script`` job the API starts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from core.characters.persona import Persona
from core.config import reload_settings
from core.errors import InvalidInput
from core.jobs.lifecycle import create_job, get_job
from core.publishing.llm import LlmError
from core.video.scripts import target_words, template_script, write_script
from tests.conftest import wait_until
from tests.fakes.openai import FakeOpenAI

MIA = Persona(name="Mia", niche="outdoor fitness", tone="warm, upbeat", do=["stretch before a run"])
TOPIC = "three things I pack for a trail run"


@pytest.fixture
def llm(studio, monkeypatch) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    with server.running():
        monkeypatch.setenv("STUDIO_LLM_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("STUDIO_LLM_MODEL", "writer-8b")
        reload_settings()
        yield server


def _script(words: int) -> str:
    return json.dumps({"script": " ".join(["Water, snacks and a light jacket."] * (words // 6))})


def test_the_llm_writes_in_the_persona_to_the_length_and_a_far_off_answer_is_sent_back(llm: FakeOpenAI) -> None:
    words = target_words(20, 165)  # 55 words
    llm.reply(_script(words * 3), _script(words))

    written = write_script(topic=TOPIC, persona=MIA, seconds=20, rate_wpm=165)

    assert written.writer == "llm:writer-8b" and written.script.startswith("Water, snacks")
    assert abs(written.words - words) <= 6 and len(written.calls) == 2, "the 3× too long answer was repaired"
    first = llm.requests()[0]["messages"]
    user = next(m["content"] for m in first if m["role"] == "user")
    assert "Name: Mia" in user and "outdoor fitness" in user and TOPIC in user and f"about {words} words" in user


def test_without_an_llm_the_offline_template_writes_a_draft_of_about_the_length(studio) -> None:
    written = write_script(topic=TOPIC, persona=MIA, seconds=30, rate_wpm=160)

    assert written.writer == "template" and TOPIC in written.script
    assert "I always stretch before a run." in written.script, "the persona's own rules"
    assert 0.6 * written.target_words <= written.words <= written.target_words
    assert written.script == template_script(TOPIC, MIA, written.target_words), "deterministic"
    with pytest.raises(InvalidInput, match="topic"):
        write_script(topic="  ", persona=MIA, seconds=30)


def test_when_the_llm_refuses_auto_falls_back_to_the_template_and_llm_mode_fails(studio, monkeypatch) -> None:
    server = FakeOpenAI(api_key="the-right-key")  # the studio sends none: 401
    with server.running():
        monkeypatch.setenv("STUDIO_LLM_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("STUDIO_LLM_MODEL", "writer-8b")
        reload_settings()
        written = write_script(topic=TOPIC, persona=MIA, seconds=15)
        assert written.writer == "template" and "the LLM could not write it" in written.note
        with pytest.raises(LlmError):
            write_script(topic=TOPIC, persona=MIA, seconds=15, writer="llm")


def test_the_video_script_job_writes_in_the_current_characters_persona(llm: FakeOpenAI, workers) -> None:
    llm.reply(lambda request: _script(target_words(10, 165)))
    workers.worker("default")
    job = create_job("video-script", {"topic": TOPIC, "seconds": 10})
    assert job.payload["persona"]["name"], "the current character's persona is filled in"

    done: Any = wait_until(lambda: (j := get_job(job.id)).status in ("succeeded", "failed") and j, 60,
                           what="the script job")
    assert done.status == "succeeded", done.error
    assert done.result["writer"] == "llm:writer-8b" and done.result["script"].startswith("Water")


def test_a_lora_pipeline_with_a_video_topic_stores_the_script_written_from_it(studio) -> None:
    from core.automation import pipelines
    from core.datasets.datasets import create_dataset, import_files
    from tests.factories import image_bytes

    dataset = create_dataset(name="hikes")
    assert dataset.id is not None
    import_files(dataset.id, [("one.png", image_bytes(64, 64))])
    pipeline, _ = pipelines.create_pipeline("lora", {
        "datasetId": dataset.id, "trainingName": "topic", "testPrompts": ["on a beach"], "generateVideo": True,
        "videoConfig": {"durationSec": 8, "topic": "packing for a rainy hike"}, "dryRun": True,
    })
    script = pipeline.payload["video_config"]["script"]
    assert "rainy hike" in script.lower(), script
    assert 6 <= len(script.split()) <= 60  # sized to 8 s of speech, not the test prompts read aloud
    pipelines.cancel_pipeline(pipeline.id)
    given, _ = pipelines.create_pipeline("lora", {
        "datasetId": dataset.id, "trainingName": "given", "testPrompts": ["on a beach"], "generateVideo": True,
        "videoConfig": {"topic": "ignored", "script": "My own words."}, "dryRun": True,
    })
    assert given.payload["video_config"]["script"] == "My own words."  # a script given is kept as written
    pipelines.cancel_pipeline(given.id)
