"""Redis and PostgreSQL servers the chaos tests may stop and start again on the same port.

The session servers of ``tests/services.py`` hide their processes (other tests share them);
chaos needs to take its own servers down, so it runs its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.services import ServiceUnavailable, _as_postgres_user, _postgres_bin, _wait_for, free_port


class RedisServer:
    """A redis-server without persistence. ``restart_empty`` is a crash that loses every key."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="studio-chaos-redis-"))
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _ready(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server is not installed (run scripts/setup)")
        self.starts += 1
        data = self.root / f"data-{self.starts}"  # a fresh, empty folder: nothing survives a restart
        data.mkdir(parents=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        _wait_for(self._ready, 15, "redis-server")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart_empty(self) -> None:
        """SIGKILL the server and start a new one on the same port with an empty data folder."""
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class PostgresServer:
    """A throwaway PostgreSQL cluster whose server can be restarted on the same port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="studio-chaos-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sock"
        self.sockets.mkdir()
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(self.sockets, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self.admin_url = f"postgresql+psycopg://studio@127.0.0.1:{self.port}/postgres"
        self._pg_ctl = _postgres_bin("pg_ctl")
        subprocess.run(
            _as_postgres_user([_postgres_bin("initdb"), "-D", str(self.data), "-U", "studio", "--auth=trust",
                               "-E", "UTF8", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL,
        )

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres_user([self._pg_ctl, "-D", str(self.data), *args]),
                       check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} "
                   "-c fsync=off -c full_page_writes=off")
        self._ctl("-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as clients see it: every connection drops at once."""
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)  # clients see the server gone, not merely a dropped connection
        self.start()

    def close(self) -> None:
        subprocess.run(_as_postgres_user([self._pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
