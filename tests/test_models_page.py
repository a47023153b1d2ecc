"""The model manager from its three doors: the Models page under AppTest (install progress shown live, remove),
the HTTP API and the ``python -m workers models`` CLI, against real services and the fake hub."""

from __future__ import annotations

import threading

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from typer.testing import CliRunner

from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.models import Job, JobStatus
from core.models_registry import install, registry
from tests.apptest import click, open_page
from tests.conftest import TEST_API_TOKEN
from workers.cli import app as cli_app
from workers.models import download_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]
AUTH = {"Authorization": f"Bearer {TEST_API_TOKEN}"}


@pytest.fixture
def client(studio):
    from api.routes import api_routes

    with TestClient(Starlette(routes=api_routes())) as test_client:
        yield test_client


def test_the_models_page_lists_models_shows_a_download_s_progress_and_removes(hub_studio, tiny_models):
    install.install_folder(path=str(tiny_models["sd15"]), name="house-sd15")
    _, job = install.submit_hub(repo_id="studio/tiny-sd15", name="downloading")
    with session_scope() as session:
        row = session.get(Job, job.id)
        row.status, row.progress, row.progress_message = JobStatus.RUNNING, 0.4, "3.2 of 8.0 MiB · unet/x"

    at = open_page("pages/models.py")
    assert [m.value for m in at.metric][:1] == ["2"]
    (bar,) = at.get("progress")
    assert (bar.proto.value, bar.proto.text) == (40, "downloading: 3.2 of 8.0 MiB · unet/x")
    table = at.dataframe[0].value
    assert set(table["name"]) == {"house-sd15", "downloading"}
    assert "folder: " in " ".join(table["source"])

    at.selectbox(key="models.remove.name").set_value("downloading").run()
    at = click(at, "models.remove")
    assert any("in use by job(s)" in e.value for e in at.error)  # its own download job is still running
    at.selectbox(key="models.remove.name").set_value("house-sd15").run()
    at = click(at, "models.remove")
    assert any("Removed house-sd15." in s.value for s in at.success)
    assert [m.name for m in registry.list_models().items] == ["downloading"]

    at.text_input(key="models.hub.repo").input("../etc")
    at = click(at, "FormSubmitter:models.hub.form-Download")
    assert any("'../etc' is not a hub id" in e.value for e in at.error)
    assert registry.list_models().total == 1  # a refusal writes nothing


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_the_api_installs_lists_and_removes_models(client, hub_studio, tiny_models):
    folder = client.post("/api/models", json={"source": "folder", "path": str(tiny_models["sd15"]),
                                              "name": "house"}, headers=AUTH)
    assert folder.status_code == 201, folder.text
    assert folder.json()["model"]["family"] == "sd15"
    hub = client.post("/api/models", json={"source": "hub", "repoId": "studio/tiny-sd15"}, headers=AUTH)
    assert hub.status_code == 202 and hub.headers["location"] == f"/api/jobs/{hub.json()['job']['id']}"
    assert client.delete("/api/models/studio/tiny-sd15", headers=AUTH).status_code == 409  # its job is queued
    jobs.execute_job(hub.json()["job"]["id"], download_model)

    listing = client.get("/api/models?pageSize=1&page=2", headers=AUTH).json()
    assert (listing["total"], listing["page"], len(listing["items"])) == (2, 2, 1)
    assert listing["diskUse"]["models"] == 2 and listing["diskUse"]["modelBytes"] > 2_000_000
    assert {m["status"] for m in client.get("/api/models", headers=AUTH).json()["items"]} == {"ready"}
    assert client.get("/api/models/loras", headers=AUTH).json()["total"] == 0

    assert client.post("/api/models", json={"source": "ftp"}, headers=AUTH).status_code == 422
    assert client.post("/api/models", json={"source": "hub"}, headers=AUTH).status_code == 422
    assert client.post("/api/models", json={"source": "folder", "path": "/nope"}, headers=AUTH).status_code == 422
    assert client.get("/api/models").status_code == 401
    assert client.delete("/api/models/studio/tiny-sd15", headers=AUTH).json() == {"removed": "studio/tiny-sd15"}
    assert client.delete("/api/models/studio/tiny-sd15", headers=AUTH).status_code == 404

    bad = client.post("/api/loras/import-url", json={"url": f"{hub_studio.url}/files/none.safetensors",
                                                     "baseModel": "house"}, headers=AUTH)
    assert bad.status_code == 422 and "answered 404" in bad.json()["error"]


def test_the_cli_installs_with_a_progress_bar_lists_and_removes(hub_studio, tiny_models):
    runner = CliRunner()
    result = runner.invoke(cli_app, ["models", "install", str(tiny_models["sd15"]), "--name", "house"])
    assert result.exit_code == 0 and result.output.strip() == "house", result.output

    # The download job runs beside the CLI, which follows it until it ends.
    def run_when_queued() -> None:
        for _ in range(200):
            model = registry.list_models().items[0]
            if model.job_id:
                jobs.execute_job(model.job_id, download_model)
                return
            threading.Event().wait(0.05)

    worker = threading.Thread(target=run_when_queued)
    worker.start()
    result = runner.invoke(cli_app, ["models", "install", "studio/tiny-sd15", "--name", "fetched"])
    worker.join()
    assert result.exit_code == 0, result.output
    assert "100% installed" in result.output and "[" + "#" * 30 + "]" in result.output

    listed = runner.invoke(cli_app, ["models", "list"])
    assert "base models: 2" in listed.output and "fetched  sd15  diffusers  fp32" in listed.output
    assert runner.invoke(cli_app, ["models", "remove", "fetched"]).output.strip() == "removed fetched"
    missing = runner.invoke(cli_app, ["models", "remove", "fetched"])
    assert missing.exit_code == 2 and "no installed model named 'fetched'" in missing.output
    refused = runner.invoke(cli_app, ["models", "install", "/tmp/model.ckpt"])
    assert refused.exit_code == 2 and "only .safetensors" in refused.output
