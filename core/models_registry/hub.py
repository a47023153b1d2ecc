"""Downloading a diffusers model from the Hugging Face hub (or any server speaking its HTTP API), resumably.

Our own cache layout: ``<models_dir>/installed/<owner>--<name>/`` holds the files as the hub names them, a
``.part`` file per download in progress (resumed with an HTTP ``Range`` request) and ``.studio-commit`` (the
commit they came from). A file already there with the listed size is not fetched again; the worker first uses
a snapshot that huggingface_hub's own cache already holds whole, where it lies (``workers/models.py``). The size
of every file is known before the first byte is fetched, so a model above ``STUDIO_MODEL_DOWNLOAD_MAX_GB`` is
refused before it starts; LFS files are checked against their SHA-256. Only what a diffusers pipeline loads is
fetched: the component folders' configs, tokenizer files and non-variant ``.safetensors`` (no ``.bin``/``.ckpt``
pickles, no ``.fp16.`` duplicates, no top-level single-file checkpoints).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from core.config import get_settings
from core.errors import InvalidInput, TransientError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_VARIANT = re.compile(r"\.(fp16|bf16|fp32|fp8|ema|non_ema)\.(safetensors|json)$|\.index\.(fp16|bf16)\.json$")
_KEEP = (".json", ".txt", ".model", ".safetensors", ".jinja")
COMMIT_FILE = ".studio-commit"
CHUNK = 1 << 20


class HubUnreachable(InvalidInput):
    """No answer from the hub (offline, DNS, refused): said plainly, nothing written."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class Plan:
    repo_id: str
    commit: str
    files: list[RemoteFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def check_repo_id(repo_id: str) -> str:
    repo_id = repo_id.strip()
    if not REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise InvalidInput(f"{repo_id!r} is not a hub id like 'owner/name'")
    return repo_id


def wanted(path: str) -> bool:
    """Files a diffusers pipeline loads: model_index.json and the component folders' configs and weights."""
    if path == "model_index.json":
        return True
    parts = path.split("/")
    return len(parts) == 2 and parts[1].endswith(_KEEP) and not _VARIANT.search(parts[1]) \
        and not parts[0].startswith(".")


def _client() -> httpx.Client:
    token = get_settings().hub_token.get_secret_value()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(headers=headers, timeout=httpx.Timeout(30.0, read=120.0), follow_redirects=True)


def _endpoint() -> str:
    return get_settings().hub_endpoint.rstrip("/")


def plan_download(repo_id: str, revision: str = "main") -> Plan:
    """What would be fetched, with sizes: one API call, nothing written. Refuses a model above the limit."""
    url = f"{_endpoint()}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    try:
        with _client() as client:
            response = client.get(url, params={"blobs": "true"})
    except httpx.TransportError as error:
        raise HubUnreachable(f"cannot reach the hub at {_endpoint()} ({type(error).__name__}): this machine "
                             "looks offline; install from a local folder or a single file instead") from error
    if response.status_code in (401, 403):
        raise InvalidInput(f"{repo_id}: the hub refused access (gated or private: accept its licence and set "
                           "STUDIO_HUB_TOKEN or HF_TOKEN)")
    if response.status_code == 404:
        raise InvalidInput(f"{repo_id}@{revision}: no such model on the hub")
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"the hub answered {response.status_code}")
    response.raise_for_status()
    info = response.json()
    files = [RemoteFile(s["rfilename"], int(s.get("size") or (s.get("lfs") or {}).get("size") or 0),
                        (s.get("lfs") or {}).get("sha256"))
             for s in info.get("siblings", []) if wanted(s.get("rfilename", ""))]
    if not any(f.path == "model_index.json" for f in files):
        raise InvalidInput(f"{repo_id} is not a diffusers pipeline (no model_index.json); install its single "
                           "file instead")
    plan = Plan(repo_id=repo_id, commit=str(info.get("sha") or revision), files=files)
    limit = int(get_settings().model_download_max_gb * 2**30)
    if plan.total_bytes > limit:
        raise InvalidInput(f"{repo_id} is {plan.total_bytes / 2**30:.1f} GiB; the limit is "
                           f"{get_settings().model_download_max_gb:g} GiB (STUDIO_MODEL_DOWNLOAD_MAX_GB)")
    return plan


def download(plan: Plan, folder: Path, *, on_progress: Callable[[int, int, str], None]) -> Path:
    """Fetch the plan's files into ``folder`` (resuming ``.part`` files); ``on_progress(done, total, file)``
    after every chunk (it may raise to stop: a cancelled job). Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    done, total = 0, plan.total_bytes
    with _client() as client:
        for remote in plan.files:
            target = folder / remote.path
            if target.is_file() and target.stat().st_size == remote.size:
                done += remote.size
                on_progress(done, total, remote.path)
                continue

            def step(count: int, name: str = remote.path) -> None:
                nonlocal done
                done += count
                on_progress(done, total, name)

            _fetch(client, plan, remote, target, step)
    (folder / COMMIT_FILE).write_text(plan.commit)
    return folder


def _fetch(client: httpx.Client, plan: Plan, remote: RemoteFile, target: Path, step: Callable[[int], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    if start > remote.size:
        part.unlink()
        start = 0
    url = f"{_endpoint()}/{plan.repo_id}/resolve/{plan.commit}/{quote(remote.path)}"
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise TransientError(f"{remote.path}: the hub answered {response.status_code}")
            if response.status_code not in (200, 206):
                raise InvalidInput(f"{remote.path}: the hub answered {response.status_code}")
            if start and response.status_code == 200:
                start = 0  # the server ignored the Range: start over
            step(start)
            written = start
            with part.open("ab" if start else "wb") as handle:
                for chunk in response.iter_bytes(CHUNK):
                    written += len(chunk)
                    if written > remote.size:
                        raise InvalidInput(f"{remote.path}: the server sent more than the {remote.size:,} bytes "
                                           "the hub listed")
                    handle.write(chunk)
                    step(len(chunk))
    except httpx.TransportError as error:
        raise TransientError(f"{remote.path}: download interrupted ({type(error).__name__}); a retry resumes "
                             "it") from error
    if written != remote.size:
        raise TransientError(f"{remote.path}: {written:,} of {remote.size:,} bytes arrived; a retry resumes it")
    if remote.sha256 and _sha256(part) != remote.sha256:
        part.unlink()
        raise InvalidInput(f"{remote.path}: SHA-256 differs from the hub's; the file was discarded")
    part.replace(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
