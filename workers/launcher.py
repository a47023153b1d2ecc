"""`python -m workers up`: the whole studio on one machine, for the README's first command.

Starts a local Redis when none is reachable (with an append-only file, so a restart loses
no queued work), upgrades the schema, then runs the supervised workers and the Streamlit
server (UI + API) until interrupted, and stops everything it started.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

import redis

from core.config import PROJECT_ROOT, Settings, get_settings, reload_settings
from core.db import upgrade_schema
from core.infra.storage import protect_data_dir
from workers.ml.tiny_models import ensure_tiny_models
from workers.process import StopRequest

_logger = logging.getLogger("studio.launcher")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def redis_reachable(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping()
    except (redis.RedisError, OSError):
        return False
    return True


def start_local_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    parsed = urlparse(url)
    if parsed.hostname not in _LOCAL_HOSTS:
        raise RuntimeError(f"Redis at {parsed.hostname}:{parsed.port} is unreachable (and not local to start)")
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/setup installs it with apt)")
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(parsed.port or 6379), "--bind", "127.0.0.1", "--dir", str(data_dir),
         "--appendonly", "yes", "--save", "", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # stopped last, by us, not by the terminal's Ctrl-C
    )
    deadline = time.monotonic() + 10
    while not redis_reachable(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the local redis-server did not start (is the port taken?)")
        time.sleep(0.1)
    _logger.info("started a local Redis on port %s (data in %s)", parsed.port or 6379, data_dir)
    return process


def use_demo_models() -> dict[str, str]:
    """Point every model setting the user left at its hub default to a tiny local model.

    No weights can be downloaded on an offline machine, so the embedded studio runs the real
    loading code on tiny randomly initialised models; set STUDIO_CAPTION_MODEL & co. for real ones.
    """

    settings = get_settings()
    # Always built: the "Tiny (offline demo)" training preset names tiny-sd15 in the models folder.
    paths = ensure_tiny_models(settings.models_dir)
    chosen: dict[str, str] = {}
    for setting, tiny in (("caption_model", "blip"), ("whisper_model", "whisper"), ("tts_vits_model", "vits")):
        if getattr(settings, setting) == Settings.model_fields[setting].default:
            chosen[f"STUDIO_{setting.upper()}"] = str(paths[tiny])
    os.environ.update(chosen)
    if chosen:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        reload_settings()
    return chosen


def up(host: str, port: int, *, demo_models: bool = True) -> int:
    if demo_models:
        for name, path in use_demo_models().items():
            _logger.info("demo model: %s=%s", name, path)
    if "public_url" not in get_settings().model_fields_set:  # links and OAuth redirects must name this server
        os.environ["STUDIO_PUBLIC_URL"] = f"http://{host}:{port}"
        reload_settings()
    settings = get_settings()
    protect_data_dir()  # umask 077 for this launcher and everything it starts (Redis' files, workers, the server)
    started: list[subprocess.Popen[bytes]] = []
    if not redis_reachable(settings.redis_url):
        started.append(start_local_redis(settings.redis_url, settings.data_dir / "redis"))
    upgrade_schema()
    started.append(subprocess.Popen([sys.executable, "-m", "workers", "run"]))
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "server.py"),
         "--server.address", host, "--server.port", str(port)],
        cwd=PROJECT_ROOT,
    )
    started.append(server)
    _logger.info("InfluencerAI Studio on http://%s:%d (API under /api; Ctrl-C stops everything)", host, port)

    stop = StopRequest().install()
    code = 0
    while not stop.wait(0.5):
        exited = [p for p in started if p.poll() is not None]
        if exited:
            code = exited[0].returncode or 1
            _logger.error("%s exited with %s; stopping the studio", cast("list[str]", exited[0].args)[:3],
                          exited[0].returncode)
            break
    for process in reversed(started):  # server first, Redis last: workers hand messages back first
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                process.kill()
    return code
