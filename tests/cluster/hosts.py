"""The studio on several hosts, made of network namespaces (``network.py``), as docs/SETUP.md#more-machines sets it up.

- ``services`` (10.77.0.2): Redis and PostgreSQL, reachable over the bridge; the test process itself reaches them
  through their Unix sockets (a file is not an address, so the machine's own namespace gets none of ours);
- ``s3`` (10.77.0.3): the S3-compatible server (moto, ``tests/s3_server.py``'s server), on a link of its own so an
  outage of the object store can be made without one of the database;
- ``app`` (10.77.0.10): ``streamlit run server.py`` (UI + API), when asked for;
- ``w1`` … ``w4`` (10.77.0.11 …): ``python -m workers run --queues …``, each with its own data folder and host name.

Every host gets the same environment (the shared ``.env`` of the setup guide: database, Redis, ``s3`` storage, the
same secrets) plus its own ``STUDIO_DATA_DIR``. Nothing is mocked: the processes are the studio's own commands.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.network import Network
from tests.services import ServiceUnavailable, _as_postgres_user, _postgres_bin

ROOT = Path(__file__).resolve().parents[2]
SERVICES, S3, APP = "services", "s3", "app"
REDIS_PORT, POSTGRES_PORT, S3_PORT, APP_PORT = 6379, 5432, 9000, 8501
S3_KEYS = ("cluster-access", "cluster-secret-key")
# Fixed for the run, the same on every host (a worker with another encryption key could not read social tokens).
SHARED_SECRETS = {
    "STUDIO_API_TOKEN": "cluster-api-token",
    "STUDIO_SIGNING_KEY": "cluster-signing-key",
    "STUDIO_WEBHOOK_SECRET": "cluster-webhook-secret",
    "STUDIO_TOKEN_ENCRYPTION_KEY": "Y2x1c3Rlci10ZXN0LWtleS0zMi1ieXRlcy1sb25nISE=",  # 32 bytes, urlsafe base64
}


def worker_name(n: int) -> str:
    return f"w{n}"


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.1)


@dataclass
class Cluster:
    """The hosts, their processes, and the faults a test can make: cut a link, restart a service, kill a worker."""

    workers: int = 2
    queues: str = "cpu,default"
    app: bool = False
    env: dict[str, str] = field(default_factory=dict)  # extra settings for every host (threads, timings)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="studio-cluster-")))
    net: Network = field(default_factory=Network)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    redis_starts: int = 0

    # --- addresses ------------------------------------------------------------------------------------

    @property
    def services_address(self) -> str:
        return self.net.hosts[SERVICES]

    @property
    def s3_endpoint(self) -> str:
        return f"{self.net.hosts[S3]}:{S3_PORT}"

    @property
    def app_url(self) -> str:
        return f"http://{self.net.hosts[APP]}:{APP_PORT}"

    @property
    def redis_socket(self) -> Path:
        return self.root / "redis.sock"

    @property
    def postgres_sockets(self) -> Path:
        return self.root / "pg-sock"

    def host_environment(self, host: str) -> dict[str, str]:
        """What every machine of the setup guide gets: the same services and secrets, its own data folder."""
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith("STUDIO_") and k not in ("DATABASE_URL", "REDIS_URL")}
        services = self.services_address
        return {
            **inherited,
            "STUDIO_ENV": "development",
            "STUDIO_AUTH_DISABLED": "true",
            "DATABASE_URL": f"postgresql+psycopg://studio@{services}:{POSTGRES_PORT}/studio",
            "REDIS_URL": f"redis://{services}:{REDIS_PORT}/0",
            "STUDIO_REDIS_NAMESPACE": "cluster",
            "STUDIO_STORAGE_BACKEND": "s3",
            "STUDIO_S3_ENDPOINT": self.s3_endpoint,
            "STUDIO_S3_ACCESS_KEY": S3_KEYS[0],
            "STUDIO_S3_SECRET_KEY": S3_KEYS[1],
            "STUDIO_S3_BUCKET": "studio",
            "STUDIO_PUBLIC_URL": f"http://{self.net.hosts[APP]}:{APP_PORT}",
            "STUDIO_DATA_DIR": str(self.root / host / "data"),
            "STUDIO_LOG_LEVEL": "WARNING",
            **SHARED_SECRETS,
            **self.env,
        }

    def local_environment(self) -> dict[str, str]:
        """The test process's own settings: the same database and Redis, through their Unix sockets."""
        env = self.host_environment("test")
        env["DATABASE_URL"] = (f"postgresql+psycopg://studio@/studio?host={self.postgres_sockets}"
                               f"&port={POSTGRES_PORT}")
        env["REDIS_URL"] = f"unix://{self.redis_socket}?db=0"
        return {k: v for k, v in env.items() if k.startswith("STUDIO_") or k in ("DATABASE_URL", "REDIS_URL")}

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            self.net.create()
            self.net.add_host(SERVICES, 2)
            self.net.add_host(S3, 3)
            self.net.add_host(APP, 10)
            for n in range(1, self.workers + 1):
                self.net.add_host(worker_name(n), 10 + n)
            self.start_s3(wait=False)  # moto imports for seconds: it starts while PostgreSQL is made
            self.start_redis()
            self._init_postgres()
            self.start_postgres()
            self._create_database()
            self.wait_s3()
        except BaseException:
            self.close()
            raise
        return self

    def start_hosts(self) -> None:
        """The app (when asked) and the worker hosts; the schema must be there first (``upgrade_schema``)."""
        if self.app:
            self.start_app()
        for n in range(1, self.workers + 1):
            self.start_worker_host(worker_name(n))

    def close(self) -> None:
        for name in list(self.processes):  # a test's end: no graceful hand-back needed, nothing may linger
            self.stop_process(name, kill=True)
        if (self.root / "pg-data").exists():
            self._pg_ctl("-m", "immediate", "stop", check=False)
        self.net.destroy()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- processes --------------------------------------------------------------------------------------

    def _spawn(self, name: str, host: str, argv: list[str], env: dict[str, str] | None = None,
               hostname: str | None = None) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen(self.net.command(host, argv, hostname=hostname), cwd=ROOT,
                                   env=env or dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log.close()
        self.processes[name] = process
        return process

    def stop_process(self, name: str, *, kill: bool = False, timeout: float = 20) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- services ---------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        """A redis-server without persistence; every start begins empty (a restart is a data loss)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server is not installed (run scripts/setup)")
        self.redis_starts += 1
        data = self.root / f"redis-{self.redis_starts}"
        data.mkdir(parents=True)
        self.redis_socket.unlink(missing_ok=True)
        self._spawn("redis", SERVICES, [
            binary, "--bind", self.services_address, "--port", str(REDIS_PORT), "--protected-mode", "no",
            "--unixsocket", str(self.redis_socket), "--unixsocketperm", "700", "--dir", str(data),
            "--save", "", "--appendonly", "no"])
        _wait(self._redis_ready, 15, "redis-server")

    def _redis_ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(unix_socket_path=str(self.redis_socket), socket_connect_timeout=0.2).ping())
        except (redis.RedisError, OSError):
            return False

    def restart_redis_empty(self) -> None:
        """SIGKILL Redis and start it again with nothing: every queued and in-flight message is lost."""
        self.stop_process("redis", kill=True)
        self.start_redis()

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        argv = _as_postgres_user([_postgres_bin("pg_ctl"), "-D", str(self.root / "pg-data"), *args])
        subprocess.run(self.net.command(SERVICES, argv), check=check, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL if not check else None)

    def _init_postgres(self) -> None:
        self.postgres_sockets.mkdir()
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.postgres_sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run(_as_postgres_user([_postgres_bin("initdb"), "-D", str(self.root / "pg-data"), "-U", "studio",
                                          "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL)
        with (self.root / "pg-data" / "pg_hba.conf").open("a") as hba:  # the hosts of the bridge
            hba.write(f"host all all {self.net.subnet}.0/24 trust\n")

    def start_postgres(self) -> None:
        options = (f"-c listen_addresses={self.services_address} -p {POSTGRES_PORT} -k {self.postgres_sockets} "
                   "-c fsync=off -c full_page_writes=off -c max_connections=300")
        self._pg_ctl("-o", options, "-l", str(self.root / "postgres.log"), "-w", "start")

    def restart_postgres(self, down_s: float = 2.0) -> None:
        """An immediate stop (every connection drops, as in a crash), ``down_s`` away, then a start."""
        self._pg_ctl("-m", "immediate", "-w", "stop")
        time.sleep(down_s)
        self.start_postgres()

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(host=str(self.postgres_sockets), port=POSTGRES_PORT, user="studio", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute('CREATE DATABASE "studio"')

    def start_s3(self, *, wait: bool = True) -> None:
        self._spawn("s3", S3, [sys.executable, "-m", "moto.server", "-H", self.net.hosts[S3], "-p", str(S3_PORT)])
        if wait:
            self.wait_s3()

    def wait_s3(self) -> None:
        _wait(lambda: self._http_ok(f"http://{self.s3_endpoint}/moto-api/"), 60, "the S3 server")

    def _http_ok(self, url: str, statuses: tuple[int, ...] = (200,)) -> bool:
        import httpx

        def get() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code in statuses
            except httpx.HTTPError:
                return False

        return self.net.call(APP, get)

    def s3_objects(self) -> dict[str, int]:
        """Every object in the studio's bucket with its size, listed from the app host."""
        def listing() -> dict[str, int]:
            from minio import Minio

            client = Minio(self.s3_endpoint, access_key=S3_KEYS[0], secret_key=S3_KEYS[1], secure=False,
                           region="us-east-1")
            return {o.object_name: int(o.size or 0) for o in client.list_objects("studio", recursive=True)
                    if o.object_name}

        return self.net.call(APP, listing)

    # --- app and workers ------------------------------------------------------------------------------------

    def start_app(self) -> None:
        argv = [sys.executable, "-m", "streamlit", "run", "server.py", "--server.address", self.net.hosts[APP],
                "--server.port", str(APP_PORT), "--server.headless", "true"]
        self._spawn(APP, APP, argv, env=self.host_environment(APP), hostname=APP)
        _wait(lambda: self._http_ok(f"{self.app_url}/api/health", (200, 503)), 90, "the app server")

    def app_request(self, method: str, path: str, **kwargs: Any) -> Any:
        """An HTTP request to the app's API from the app host's namespace (with the shared API token)."""
        import httpx

        headers = {"Authorization": f"Bearer {SHARED_SECRETS['STUDIO_API_TOKEN']}", **kwargs.pop("headers", {})}
        return self.net.call(APP, lambda: httpx.request(method, f"{self.app_url}{path}", headers=headers,
                                                        timeout=30, **kwargs))

    def start_worker_host(self, host: str, *, queues: str | None = None, last_octet: int | None = None,
                          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``python -m workers run`` on ``host``; a host not made at the start is made now at <subnet>.<last_octet>."""
        if host not in self.net.hosts:
            assert last_octet is not None, f"{host} is a new host: give its address"
            self.net.add_host(host, last_octet)
        argv = [sys.executable, "-m", "workers", "run", "--queues", queues or self.queues]
        return self._spawn(host, host, argv, env={**self.host_environment(host), **(env or {})}, hostname=host)

    def worker_hosts(self) -> list[str]:
        return [worker_name(n) for n in range(1, self.workers + 1)]

    def cut(self, host: str) -> None:
        self.net.cut(host)

    def restore(self, host: str) -> None:
        self.net.restore(host)
