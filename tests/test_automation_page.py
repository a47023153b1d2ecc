"""The Automation page under AppTest: start a LoRA pipeline from the form, see it listed, cancel it
and retry it from the stage it stopped at."""

from __future__ import annotations

from core.automation import pipelines
from core.datasets.datasets import create_demo_dataset
from core.db import session_scope
from core.models import Job
from tests.apptest import click, open_page, rerun


def test_without_datasets_the_form_says_what_to_do_first(studio):
    at = open_page("pages/automation.py")
    assert any("Upload a dataset first" in info.value for info in at.info)
    assert any("No pipelines yet" in info.value for info in at.info)


def test_a_pipeline_is_started_listed_cancelled_and_retried(studio):
    dataset, _ = create_demo_dataset()
    at = open_page("pages/automation.py")
    at.text_area(key="automation.prompts").input("on a beach\n\nin the snow\n")
    at.button(key="automation.submit").click()
    rerun(at)
    [pipeline] = pipelines.list_pipelines().items
    assert pipeline.status == "running" and pipeline.stage == "training" and pipeline.dry_run
    assert pipeline.payload["test_prompts"] == ["on a beach", "in the snow"]
    assert pipeline.payload["dataset_id"] == dataset.id
    assert any(f"Pipeline {pipeline.id[:8]} is running" in s.value for s in at.success)
    click(at, f"automation.cancel.{pipeline.id}")
    cancelled = pipelines.get_pipeline(pipeline.id)
    assert cancelled.status == "cancelled" and cancelled.error_stage == "training"
    [train_id] = cancelled.results["training"]["jobIds"]
    with session_scope() as session:
        assert session.get(Job, train_id).status == "cancelled"
    click(at, f"automation.retry.{pipeline.id}")
    retried = pipelines.get_pipeline(pipeline.id)
    assert retried.status == "running" and retried.stage == "training"
    with session_scope() as session:
        assert session.get(Job, train_id).status == "queued"  # the same training job runs again
