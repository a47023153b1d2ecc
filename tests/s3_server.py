"""A throwaway S3 server for tests: moto's server mode on a free loopback port.

There is no MinIO binary to install offline; moto speaks enough S3 for the ``minio`` client
(buckets, objects, multipart uploads, listing, presigned GETs). Known gaps: moto accepts
wrong credentials and expired presigned URLs, so tests must not rely on it rejecting them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class S3Endpoint:
    """Where the test server listens, in the shape :class:`core.infra.storage.S3ObjectStore` takes."""

    endpoint: str  # "127.0.0.1:PORT"
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"


@contextmanager
def run_s3_server() -> Iterator[S3Endpoint]:
    """Start moto's threaded S3 server on 127.0.0.1 and a free port; stop it on exit."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()  # the port the OS picked for port=0
        endpoint = S3Endpoint(endpoint=f"{host}:{port}")
        reset_s3_server(endpoint)
        yield endpoint
    finally:
        server.stop()


def reset_s3_server(endpoint: S3Endpoint | str) -> None:
    """Forget every bucket and object moto holds (call between tests)."""
    address = endpoint.endpoint if isinstance(endpoint, S3Endpoint) else endpoint
    response = httpx.post(f"http://{address}/moto-api/reset", timeout=10)
    response.raise_for_status()
