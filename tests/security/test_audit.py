"""scripts/audit (run by scripts/test before pytest): the shipped package set and the decision it makes from
pip-audit's answer and PyPI's project data, against a local fake of PyPI's JSON API."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.conftest import ROOT
from tests.fakes.server import FakeServer, Handler

sys.path.insert(0, str(ROOT / "scripts"))
audit = importlib.import_module("audit")
runtime_pins = importlib.import_module("runtime_pins")


class FakePyPI(FakeServer):
    """``GET /pypi/<name>/json`` as PyPI answers it: the latest version and its vulnerabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.projects: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [("project", "GET", "/pypi/{name}/json", self.project)]

    async def project(self, request: Request) -> Response:
        project = self.projects.get(request.path_params["name"])
        if project is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return JSONResponse({"info": {"version": project["version"]}, "vulnerabilities": project.get("vulns", [])})


@pytest.fixture
def pypi(monkeypatch) -> Iterator[FakePyPI]:
    server = FakePyPI()
    with server.running():
        monkeypatch.setattr(audit, "PYPI", f"{server.url}/pypi")
        yield server


def _vuln(vuln_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": vuln_id, "aliases": [f"CVE-{vuln_id}"], "fixed_in": ["9.9.9"], "withdrawn": None, **fields}


def test_the_shipped_set_is_the_runtime_closure_without_the_test_tools():
    pins = runtime_pins.closure(runtime_pins.top_level([ROOT / "requirements.txt"]))
    assert {"streamlit", "dramatiq", "torch", "openai-whisper", "cryptography", "redis", "psycopg-binary"} <= set(pins)
    assert not {"pytest", "moto", "ruff", "playwright", "pip-audit", "triton"} & set(pins)


def test_the_project_data_answers_only_for_the_latest_release(pypi):
    pypi.projects = {"fresh": {"version": "2.0"}, "risky": {"version": "1.0", "vulns": [
        _vuln("PYSEC-1"), _vuln("PYSEC-2", withdrawn="2026-01-01T00:00:00")]}}
    assert audit._latest_release_vulns("fresh", "2.0") == []
    assert audit._latest_release_vulns("fresh", "1.9") is None  # behind latest: cannot tell
    assert [v["id"] for v in audit._latest_release_vulns("risky", "1.0")] == ["PYSEC-1"]  # withdrawn left out
    assert audit._latest_release_vulns("unknown", "1.0") is None


def _skipped_everything(pins_file) -> list[dict[str, Any]]:
    """pip-audit's answer where the mirror has no per-release JSON: every package skipped."""
    names = [line.split("==")[0] for line in pins_file.read_text().splitlines()]
    return [{"name": name, "skip_reason": "Dependency not found on PyPI"} for name in names]


def _latest_everywhere(pypi: FakePyPI) -> dict[str, str]:
    pins = {n: v.split("+")[0] for n, v in runtime_pins.closure(runtime_pins.top_level(
        [ROOT / "requirements.txt"])).items()}
    pypi.projects = {name: {"version": version} for name, version in pins.items()}
    return pins


def test_a_vulnerable_latest_release_fails_the_audit(pypi, monkeypatch, capsys):
    _latest_everywhere(pypi)
    pypi.projects["redis"]["vulns"] = [_vuln("GHSA-test-redis")]
    monkeypatch.setattr(audit, "_pip_audit", _skipped_everything)
    assert audit.audit() == 1
    assert "VULNERABLE redis" in capsys.readouterr().out


def test_a_vulnerability_pip_audit_reports_fails_the_audit(pypi, monkeypatch, capsys):
    _latest_everywhere(pypi)

    def answer(pins_file):
        found = _skipped_everything(pins_file)
        found[0] = {"name": found[0]["name"], "version": "1.0", "vulns": [
            {"id": "PYSEC-9", "fix_versions": ["1.1"], "aliases": []}]}
        return found

    monkeypatch.setattr(audit, "_pip_audit", answer)
    assert audit.audit() == 1
    assert "PYSEC-9" in capsys.readouterr().out


def test_a_clean_set_passes_and_unauditable_packages_fail_only_when_strict(pypi, monkeypatch, capsys):
    pins = _latest_everywhere(pypi)
    monkeypatch.setattr(audit, "_pip_audit", _skipped_everything)
    assert audit.audit() == 0
    pypi.projects["numpy"]["version"] = "99.0"  # the installed numpy is behind the latest release
    assert audit.audit() == 0
    assert f"not auditable here (numpy {pins['numpy']})" in capsys.readouterr().out
    monkeypatch.setenv("STUDIO_AUDIT_STRICT", "1")
    assert audit.audit() == 2


def test_an_audit_that_could_check_nothing_fails(pypi, monkeypatch):
    pypi.projects = {}  # PyPI knows nothing (unreachable, in effect)
    monkeypatch.setattr(audit, "_pip_audit", _skipped_everything)
    assert audit.audit() == 2
