"""Throwaway real servers for the tests: redis-server and PostgreSQL on free loopback ports.

They are started from the binaries that scripts/setup installs with apt. A missing binary
fails the test run (it never skips): a suite that quietly skips its integration tests
would pass while testing nothing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


class ServiceUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise ServiceUnavailable(f"{what} did not come up within {timeout:.0f} s")


@contextmanager
def run_redis() -> Iterator[str]:
    """A redis-server without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server is not installed (run scripts/setup)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    try:
        _wait_for(ready, 10, "redis-server")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _postgres_bin(name: str) -> str:
    on_path = shutil.which(name)
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([on_path] if on_path else [])
    if not found:
        raise ServiceUnavailable(f"PostgreSQL's {name} is not installed (run scripts/setup)")
    return found[-1]


def _as_postgres_user(command: list[str]) -> list[str]:
    """initdb refuses to run as root; run the server as the 'postgres' system user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def run_postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder; yields a SQLAlchemy URL of its 'postgres' database."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="studio-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(sockets, user.pw_uid, user.pw_gid)
    port = free_port()
    subprocess.run(
        _as_postgres_user([initdb, "-D", str(data), "-U", "studio", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        check=True, stdout=subprocess.DEVNULL,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off"
    subprocess.run(
        _as_postgres_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
        check=True, stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql+psycopg://studio@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    import psycopg

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def run_app_server(log: Path | None = None) -> Iterator[str]:
    """The real app (server.py: Streamlit with the /api routes) in a process with this environment, on a
    free port; yields its base URL. Output goes to ``log`` when given."""
    import httpx

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    output = log.open("wb") if log is not None else None
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "server.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=root, env=dict(os.environ), stdout=output or subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/api/health", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    try:
        _wait_for(up, 60, "the app server")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)
        if output is not None:
            output.close()


def stop_process_groups(processes: list[subprocess.Popen[bytes]], *, timeout: float = 20) -> None:
    """SIGTERM each process's group (started with start_new_session), then SIGKILL what outlives ``timeout``."""
    import signal

    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

