"""A real n8n for the workflow tests (n8n/*.json): installed by ``scripts/n8n`` into a cache folder outside
the clone (reused between runs), started on free loopback ports with a fresh user folder and encryption key,
credentials and workflows imported and published with its own CLI, stopped at the end.

What n8n did is read back from its own SQLite database (``<user folder>/.n8n/database.sqlite``, read-only):
``execution_entity`` holds each execution's status, ``execution_data.data`` its run data in n8n's
"flatted" JSON (see :func:`parse_flatted`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.services import free_port

WORKFLOWS_DIR = ROOT / "n8n"
INSTALL_SCRIPT = ROOT / "scripts" / "n8n"
TERMINAL_EXECUTION_STATUSES = ("success", "error", "canceled", "crashed")


class N8nError(RuntimeError):
    """n8n could not be installed, started or driven (the message carries its output)."""


def install_n8n(timeout: float = 900) -> Path:
    """The path of the cached n8n binary, installing it first when missing (scripts/n8n)."""
    try:
        done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise N8nError(f"scripts/n8n did not finish in {timeout:.0f} s") from error
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise N8nError(f"scripts/n8n failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return Path(lines[-1])


def parse_flatted(text: str) -> Any:
    """n8n stores run data with the `flatted` library: a JSON array whose first entry is the root and
    where every string inside an object or array is the index of another entry (cycles allowed)."""
    table = json.loads(text)
    revived: dict[int, Any] = {}

    def revive(index: int) -> Any:
        if index in revived:
            return revived[index]
        value = table[index]
        if isinstance(value, list):
            items: list[Any] = []
            revived[index] = items
            items.extend(revive(int(v)) if isinstance(v, str) else v for v in value)
            return items
        if isinstance(value, dict):
            mapping: dict[str, Any] = {}
            revived[index] = mapping
            for key, v in value.items():
                mapping[key] = revive(int(v)) if isinstance(v, str) else v
            return mapping
        return value

    return revive(0)


@dataclass
class Execution:
    id: int
    workflow_id: str
    status: str
    mode: str
    data: dict[str, Any] | None  # the revived run data (None until n8n stored it)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_EXECUTION_STATUSES

    @property
    def last_node(self) -> str | None:
        return (self.data or {}).get("resultData", {}).get("lastNodeExecuted")

    def node_output(self, node: str, run: int = -1) -> list[dict[str, Any]]:
        """The JSON items a node put out on its first output in one of its runs (the last by default)."""
        runs = (self.data or {}).get("resultData", {}).get("runData", {}).get(node) or []
        if not runs:
            return []
        main = (runs[run].get("data") or {}).get("main") or [[]]
        return [item["json"] for item in (main[0] or [])]

    def error_message(self) -> str | None:
        error = (self.data or {}).get("resultData", {}).get("error")
        return error.get("message") if isinstance(error, dict) else None


class N8n:
    """One n8n instance: ``cli(...)`` before ``start()``, then webhooks on ``url``; ``stop()`` at the end."""

    def __init__(self, binary: Path, folder: Path, env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "n8n.log"
        self.process: subprocess.Popen[bytes] | None = None
        base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
        self.env = {
            **base,
            "N8N_USER_FOLDER": str(folder / "user"),  # fresh: an old one with another key breaks every command
            "N8N_ENCRYPTION_KEY": secrets.token_hex(16),
            "N8N_PORT": str(self.port),
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_RUNNERS_BROKER_PORT": str(free_port()),  # the default 5679 may be taken
            "GENERIC_TIMEZONE": "UTC",
            "TZ": "UTC",
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_TEMPLATES_ENABLED": "false",
            "N8N_HIRING_BANNER_ENABLED": "false",
            "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",  # the workflows read STUDIO_URL & co. with $env
            "N8N_GRACEFUL_SHUTDOWN_TIMEOUT": "5",
            "N8N_LOG_LEVEL": "info",
            **(env or {}),
        }

    def webhook_url(self, path: str) -> str:
        return f"{self.url}/webhook/{path}"

    @property
    def database(self) -> Path:
        return Path(self.env["N8N_USER_FOLDER"]) / ".n8n" / "database.sqlite"

    # --- the CLI -----------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
        """Runs ``n8n <args>``; returns its output, raises N8nError with it when the command fails."""
        try:
            done = subprocess.run([str(self.binary), *args], env={**self.env, **(env or {})}, capture_output=True,
                                  text=True, timeout=timeout, check=False, cwd=self.folder)
        except subprocess.TimeoutExpired as error:
            raise N8nError(f"n8n {' '.join(args)} did not finish in {timeout:.0f} s") from error
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise N8nError(f"n8n {' '.join(args)} failed (exit {done.returncode}):\n{output[-4000:]}")
        return output

    def import_credentials(self, credentials: list[dict[str, Any]]) -> None:
        """Credentials with plain ``data`` objects: the CLI encrypts them with this instance's key."""
        path = self.folder / "credentials.json"
        path.write_text(json.dumps(credentials))
        try:
            self.cli("import:credentials", f"--input={path}")
        finally:
            path.unlink()

    def import_workflows(self, *files: Path) -> None:
        folder = self.folder / "workflows"
        folder.mkdir(exist_ok=True)
        for file in files:
            (folder / file.name).write_bytes(file.read_bytes())
        self.cli("import:workflow", "--separate", f"--input={folder}")

    def publish(self, *workflow_ids: str) -> None:
        """Activates workflows (their triggers and production webhooks) for the next ``start()``."""
        for workflow_id in workflow_ids:
            self.cli("publish:workflow", f"--id={workflow_id}")

    def execute(self, workflow_id: str, timeout: float = 120) -> str:
        """Runs a workflow from its manual/first trigger in a separate CLI process (its own runner port)."""
        return self.cli("execute", f"--id={workflow_id}", timeout=timeout,
                        env={"N8N_RUNNERS_BROKER_PORT": str(free_port()), "N8N_PORT": str(free_port())})

    # --- the server --------------------------------------------------------------------------------

    def start(self, *, expect_active: tuple[str, ...] = (), timeout: float = 90) -> None:
        """Starts ``n8n start`` and waits until it answers and the published workflows are active."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([str(self.binary), "start"], env=self.env, cwd=self.folder, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise N8nError(f"n8n start exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            text = self.log()
            if "Editor is now accessible via" in text and all(f"(ID: {w})" in text for w in expect_active):
                if self._healthy():
                    return
            time.sleep(0.25)
        raise N8nError(f"n8n did not start in {timeout:.0f} s:\n{self.log()[-4000:]}")

    def _healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    # --- what it did -------------------------------------------------------------------------------

    def executions(self, workflow_id: str) -> list[Execution]:
        """The workflow's executions, oldest first, with their run data once stored."""
        if not self.database.exists():
            return []
        connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
        try:
            rows = connection.execute(
                "SELECT e.id, e.workflowId, e.status, e.mode, d.data FROM execution_entity e "
                "LEFT JOIN execution_data d ON d.executionId = e.id WHERE e.workflowId = ? ORDER BY e.id",
                (workflow_id,)).fetchall()
        finally:
            connection.close()
        return [Execution(id=row[0], workflow_id=row[1], status=row[2], mode=row[3],
                          data=parse_flatted(row[4]) if row[4] else None) for row in rows]
