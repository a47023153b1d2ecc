"""The worker CLI drives the same lifecycle as the UI and the API."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from core.jobs import lifecycle as jobs
from tests.conftest import ROOT
from workers.cli import app

runner = CliRunner()


def test_help_explains_every_command():
    result = subprocess.run([sys.executable, "-m", "workers", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("run", "up", "enqueue", "jobs", "show", "cancel", "retry", "reconcile", "generate"):
        assert command in result.stdout


def test_enqueue_list_show_cancel_retry(studio):
    enqueued = runner.invoke(app, ["enqueue", "sleep", "--payload", '{"seconds": 2}'])
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.output.strip()
    assert jobs.get_job(job_id).payload["seconds"] == 2

    listed = runner.invoke(app, ["jobs", "--status", "queued"])
    assert job_id[:8] in listed.output and "1 job(s)" in listed.output

    cancelled = runner.invoke(app, ["cancel", job_id[:6]])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    shown = runner.invoke(app, ["show", job_id[:6]])
    assert "status=cancelled" in shown.output and "cancel requested" in shown.output
    retried = runner.invoke(app, ["retry", job_id])
    assert retried.exit_code == 0 and "queued" in retried.output


def test_bad_input_gives_a_clear_error_and_exit_code_2(studio):
    bad_json = runner.invoke(app, ["enqueue", "noop", "--payload", "{oops"])
    assert bad_json.exit_code == 2 and "not valid JSON" in bad_json.output
    bad_kind = runner.invoke(app, ["enqueue", "nope"])
    assert bad_kind.exit_code == 2 and "unknown job kind" in bad_kind.output
    missing = runner.invoke(app, ["show", "abcdef"])
    assert missing.exit_code == 2 and "no job id starts with" in missing.output
    assert jobs.list_jobs().total == 0


def test_show_follow_streams_until_the_job_ends(workers, studio):
    workers.worker()
    job = jobs.create_job("sleep", {"seconds": 1, "steps": 4})
    result = runner.invoke(app, ["show", job.id, "--follow"])
    assert result.exit_code == 0
    assert "stage: sleeping" in result.output and "slept 1 s in 4 steps" in result.output
    assert "-- job succeeded" in result.output


def test_train_queues_a_run_from_a_config_with_overrides(studio):
    from core.datasets.datasets import create_dataset, import_files
    from tests.factories import image_bytes

    dataset = create_dataset(name="Ava")
    import_files(dataset.id, [("a.png", image_bytes(seed=3))])
    listed = runner.invoke(app, ["configs"])
    assert "* SD 1.5 Standard" in listed.output and "Tiny (offline demo)" in listed.output

    queued = runner.invoke(app, ["train", str(dataset.id), "--config", "Tiny (offline demo)",
                                 "--set", "rank=4", "--set", "base_model=owner/my-model", "--name", "cli run"])
    assert queued.exit_code == 0, queued.output
    job = jobs.get_job(queued.output.strip())
    assert job.kind == "train" and job.payload["name"] == "cli run"
    assert (job.payload["params"]["rank"], job.payload["params"]["base_model"]) == (4, "owner/my-model")

    for bad in (["--set", "rank=0"], ["--set", "rank"], ["--config", "nope"], ["--set", "base_model=my-model"]):
        refused = runner.invoke(app, ["train", str(dataset.id), *bad])
        assert refused.exit_code == 2 and "error:" in refused.output, bad
    assert jobs.list_jobs(kinds=["train"]).total == 1


def test_generate_queues_a_job_from_a_template_with_loras_and_strengths(studio):
    from core.datasets.datasets import create_dataset, import_files
    from core.training import runs as training
    from tests.factories import image_bytes

    dataset = create_dataset(name="Ava", trigger_word="ohwx woman")
    import_files(dataset.id, [("a.png", image_bytes(seed=3))])
    run = training.submit_training(dataset_id=dataset.id)
    folder = studio.data_dir / "lora"
    folder.mkdir(parents=True)
    (folder / training.WEIGHTS_FILE).write_bytes(b"weights")
    lora = training.register_checkpoint(jobs.get_job(run.id), step=10, directory=folder, final=True, loss=0.1)

    queued = runner.invoke(app, ["generate", "--template", "tiny-lora", "--prompt", "on a boat", "--lora",
                                 f"{lora.id}:0.7", "--count", "3", "--seed", "42", "--negative", "ugly"])
    assert queued.exit_code == 0, queued.output
    job = jobs.get_job(queued.output.strip())
    assert job.kind == "generate" and job.payload["count"] == 3 and job.payload["seed"] == 42
    assert job.payload["loras"] == [{"lora_id": lora.id, "strength": 0.7}]
    assert job.payload["prompt"] == "ohwx woman, on a boat" and job.payload["negative_prompt"] == "ugly"
    assert (job.payload["steps"], job.payload["width"]) == (12, 128), "the rest from the template"

    plain = runner.invoke(app, ["generate", "--template", "tiny-lora", "--prompt", "p", "--no-lora"])
    assert plain.exit_code == 0 and jobs.get_job(plain.output.strip()).payload["loras"] == []

    for bad in (["--lora", "x"], ["--lora", "999"], ["--lora", f"{lora.id}:9"], ["--template", "nope"]):
        refused = runner.invoke(app, ["generate", "--prompt", "p", *bad])
        assert refused.exit_code == 2 and "error:" in refused.output, bad
    assert jobs.list_jobs(kinds=["generate"]).total == 2


def test_plan_posts_and_publish_due_commands(studio):
    planned = runner.invoke(app, ["plan", "--theme", "trail runs", "--platform", "tiktok", "--start", "2026-12-01",
                                  "--end", "2026-12-07", "--planner", "template"])
    assert planned.exit_code == 0, planned.output
    job = jobs.get_job(planned.output.strip())
    assert job.kind == "plan" and job.payload["platforms"] == ["tiktok"]
    refused = runner.invoke(app, ["plan", "--theme", "x", "--platform", "myspace", "--start", "2026-12-01",
                                  "--end", "2026-12-07"])
    assert refused.exit_code == 2 and "platforms" in refused.output
    assert runner.invoke(app, ["publish-due"]).output.startswith("handed 0 post(s)")


def test_a_new_encryption_key_rotates_stored_tokens(studio, monkeypatch):
    from cryptography.fernet import Fernet

    from core.config import reload_settings
    from core.db import session_scope
    from core.models import SocialAccount
    from core.publishing.social_accounts import connect_manually, credentials

    old_key = Fernet.generate_key().decode()
    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", old_key)
    reload_settings()
    account = connect_manually(platform="tiktok", external_id="open-1", access_token="tok-secret-123")
    new_key = runner.invoke(app, ["new-encryption-key"]).output.strip()
    Fernet(new_key.encode())  # a valid key
    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", f"{new_key},{old_key}")
    reload_settings()
    rotated = runner.invoke(app, ["rotate-tokens"])
    assert rotated.exit_code == 0 and "1 account" in rotated.output
    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", new_key)  # the old key can now be dropped
    reload_settings()
    assert credentials(account.id).access_token == "tok-secret-123"
    with session_scope() as session:
        assert "tok-secret-123" not in session.get(SocialAccount, account.id).access_token_enc


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_nobody_migrated_gets_a_plain_answer_not_a_traceback(studio, tmp_path, request, backend):
    import os
    import uuid

    from tests.services import create_database

    if backend == "postgres":
        empty_url = create_database(request.getfixturevalue("postgres_admin_url"), f"t_{uuid.uuid4().hex[:12]}")
    else:
        empty_url = f"sqlite:///{tmp_path / 'empty.db'}"
    env = {**os.environ, "DATABASE_URL": empty_url}
    result = subprocess.run([sys.executable, "-m", "workers", "jobs"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "has no studio tables yet: run `python -m workers migrate`" in result.stderr
    assert "Traceback" not in result.stderr
    migrated = subprocess.run([sys.executable, "-m", "workers", "migrate"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert migrated.returncode == 0 and "schema up to date" in migrated.stdout
    listed = subprocess.run([sys.executable, "-m", "workers", "jobs"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
