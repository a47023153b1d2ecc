"""core.infra.storage against both backends: a local folder and an S3 server (moto, in-process)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from core.infra.storage import (
    ChunkStream,
    InvalidKey,
    LocalObjectStore,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    StorageError,
    StorageUnavailable,
    job_key,
    make_object_store,
    validate_key,
    verify_local_signature,
)
from tests.s3_server import S3Endpoint, reset_s3_server, run_s3_server

SIGNING_KEY = "test-signing-key-0123456789"
PUBLIC_URL = "http://studio.test"
BUCKET = "studio-test"
SECRET_KEY = "super-secret-key-do-not-leak"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[S3Endpoint]:
    with run_s3_server() as endpoint:
        yield endpoint


def _s3_store(endpoint: S3Endpoint) -> S3ObjectStore:
    return S3ObjectStore(
        endpoint.endpoint,
        endpoint.access_key,
        endpoint.secret_key,
        BUCKET,
        secure=False,
        region=endpoint.region,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects", signing_key=SIGNING_KEY, public_url=PUBLIC_URL)
        return
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    reset_s3_server(endpoint)
    s3 = _s3_store(endpoint)
    s3.ensure_bucket()
    yield s3
    reset_s3_server(endpoint)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- put / get ------------------------------------------------------------------------------


def test_put_and_get_bytes_roundtrip(store: ObjectStore) -> None:
    data = bytes(range(256)) * 10
    info = store.put_bytes("media/a.bin", data)
    assert isinstance(info, ObjectInfo)
    assert info.key == "media/a.bin"
    assert info.size == len(data)
    assert store.get_bytes("media/a.bin") == data


def test_put_overwrites_existing_object(store: ObjectStore) -> None:
    store.put_bytes("x/file.txt", b"first version", content_type="text/plain")
    store.put_bytes("x/file.txt", b"second", content_type="text/plain")
    assert store.get_bytes("x/file.txt") == b"second"
    assert [o.key for o in store.list("x/")] == ["x/file.txt"]


def test_empty_object(store: ObjectStore) -> None:
    store.put_bytes("empty.bin", b"")
    assert store.get_bytes("empty.bin") == b""
    assert store.stat("empty.bin").size == 0
    assert list(store.iter_chunks("empty.bin")) == []


def test_put_file_of_6_mib_and_stream_it_back(store: ObjectStore, tmp_path: Path) -> None:
    # 6 MiB is above minio's 5 MiB part size, so the S3 backend takes the multipart upload path.
    data = os.urandom(6 * 1024 * 1024 + 123)
    source = tmp_path / "big.mp4"
    source.write_bytes(data)
    info = store.put_file("jobs/j1/big.mp4", source, content_type="video/mp4")
    assert info.size == len(data)

    digest = hashlib.sha256()
    chunks = 0
    with store.iter_chunks("jobs/j1/big.mp4", chunk_size=65536) as stream:
        for chunk in stream:
            assert 0 < len(chunk) <= 65536
            digest.update(chunk)
            chunks += 1
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert chunks >= len(data) // 65536
    stat = store.stat("jobs/j1/big.mp4")
    assert stat.size == len(data)
    assert stat.content_type == "video/mp4"
    assert store.get_bytes("jobs/j1/big.mp4") == data


def test_put_file_missing_source_raises_storage_error(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        store.put_file("a.bin", tmp_path / "nope.bin")
    assert not store.exists("a.bin")


def test_iter_chunks_released_when_consumer_stops_early(store: ObjectStore) -> None:
    data = os.urandom(512 * 1024)
    store.put_bytes("stream.bin", data)
    stream = store.iter_chunks("stream.bin", chunk_size=1024)
    assert isinstance(stream, ChunkStream)
    first = next(stream)
    assert first == data[:1024]
    stream.close()
    assert stream.closed
    assert list(stream) == []
    # The store is still usable afterwards (the connection went back to the pool or was dropped).
    for _ in range(20):
        partial = store.iter_chunks("stream.bin", chunk_size=4096)
        assert next(partial) == data[:4096]
        partial.close()
    assert store.get_bytes("stream.bin") == data


def test_iter_chunks_closes_itself_when_exhausted(store: ObjectStore) -> None:
    store.put_bytes("small.txt", b"hello world")
    stream = store.iter_chunks("small.txt", chunk_size=4)
    assert b"".join(stream) == b"hello world"
    assert stream.closed


# --- stat / exists / not found ----------------------------------------------------------------


def test_stat_reports_size_content_type_and_time(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    store.put_bytes("images/cover.png", b"\x89PNG....", content_type="image/png")
    info = store.stat("images/cover.png")
    assert info.key == "images/cover.png"
    assert info.size == 8
    assert info.content_type == "image/png"
    assert info.last_modified is not None
    assert info.last_modified.tzinfo is not None
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(minutes=5)


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("a/b.txt")
    store.put_bytes("a/b.txt", b"x")
    assert store.exists("a/b.txt")
    assert not store.exists("a")  # a 'folder' is not an object
    assert not store.exists("a/b.tx")


def test_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as excinfo:
        store.get_bytes("missing/thing.bin")
    assert excinfo.value.key == "missing/thing.bin"
    with pytest.raises(ObjectNotFound):
        store.stat("missing/thing.bin")
    with pytest.raises(ObjectNotFound):
        store.iter_chunks("missing/thing.bin")


def test_object_not_found_is_a_storage_error(store: ObjectStore) -> None:
    with pytest.raises(StorageError):
        store.get_bytes("nope")


# --- delete ---------------------------------------------------------------------------------


def test_delete_and_delete_missing(store: ObjectStore) -> None:
    store.put_bytes("d/one.txt", b"1")
    store.put_bytes("d/two.txt", b"2")
    store.delete("d/one.txt")
    assert not store.exists("d/one.txt")
    assert store.exists("d/two.txt")
    store.delete("d/one.txt")  # again: no error
    store.delete("never/existed.txt")
    assert [o.key for o in store.list()] == ["d/two.txt"]


def test_delete_prefix_counts_and_spares_other_prefixes(store: ObjectStore) -> None:
    for i in range(5):
        store.put_bytes(f"jobs/12/out-{i}.png", b"x" * i)
    store.put_bytes("jobs/12/sub/deep.txt", b"deep")
    store.put_bytes("jobs/123/keep.txt", b"keep")
    store.put_bytes("jobs/13/keep.txt", b"keep")
    store.put_bytes("other/keep.txt", b"keep")

    assert store.delete_prefix("jobs/12/") == 6
    assert store.list("jobs/12/") == []
    assert [o.key for o in store.list()] == ["jobs/123/keep.txt", "jobs/13/keep.txt", "other/keep.txt"]
    assert store.delete_prefix("jobs/12/") == 0
    # A prefix need not end at a '/': it is a plain string prefix, as in S3.
    assert store.delete_prefix("jobs/1") == 2
    assert [o.key for o in store.list()] == ["other/keep.txt"]


def test_delete_prefix_more_than_one_batch(store: ObjectStore) -> None:
    for i in range(1005):
        store.put_bytes(f"many/{i:05d}", b"")
    store.put_bytes("zzz", b"")
    assert store.delete_prefix("many/") == 1005
    assert [o.key for o in store.list()] == ["zzz"]


# --- list -----------------------------------------------------------------------------------


def test_list_by_prefix_sorted_and_paginated(store: ObjectStore) -> None:
    keys = ["p/c.txt", "p/a.txt", "p/b/x.txt", "p/b/y.txt", "p/d.txt", "q/a.txt", "pz.txt"]
    for key in keys:
        store.put_bytes(key, key.encode())

    listed = store.list("p/")
    assert [o.key for o in listed] == ["p/a.txt", "p/b/x.txt", "p/b/y.txt", "p/c.txt", "p/d.txt"]
    assert [o.size for o in listed] == [len(o.key) for o in listed]
    assert [o.key for o in store.list("p")] == [
        "p/a.txt", "p/b/x.txt", "p/b/y.txt", "p/c.txt", "p/d.txt", "pz.txt",
    ]
    assert [o.key for o in store.list("p/b")] == ["p/b/x.txt", "p/b/y.txt"]
    assert store.list("nothing/") == []
    assert [o.key for o in store.list()] == sorted(keys)

    pages: list[list[str]] = []
    start_after: str | None = None
    while page := store.list("p/", start_after=start_after, limit=2):
        pages.append([o.key for o in page])
        start_after = page[-1].key
    assert pages == [["p/a.txt", "p/b/x.txt"], ["p/b/y.txt", "p/c.txt"], ["p/d.txt"]]
    assert [o.key for o in store.list(start_after="p/d.txt")] == ["pz.txt", "q/a.txt"]


def test_list_rejects_bad_prefix_and_limit(store: ObjectStore) -> None:
    with pytest.raises(InvalidKey):
        store.list("../")
    with pytest.raises(InvalidKey):
        store.list("/abs")
    with pytest.raises(ValueError, match="limit"):
        store.list("", limit=0)


# --- key validation -------------------------------------------------------------------------


BAD_KEYS = ["../x", "/abs", "a//b", "a/./b", "", "k" * 600, "a/../../etc/passwd", "a\\b", "a\x00b",
            "a/\nb", "trailing/", ".", ".."]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_invalid_keys_are_rejected_and_nothing_is_written(
    store: ObjectStore, tmp_path: Path, key: str
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"payload")
    with pytest.raises(InvalidKey):
        store.put_file(key, source)
    with pytest.raises(InvalidKey):
        store.get_bytes(key)
    with pytest.raises(InvalidKey):
        store.stat(key)
    with pytest.raises(InvalidKey):
        store.delete(key)
    with pytest.raises(InvalidKey):
        store.presigned_get_url(key)
    assert store.list() == []
    if isinstance(store, LocalObjectStore):
        # Nothing landed anywhere near the root either (e.g. '../x' next to it).
        outside = sorted(p.name for p in tmp_path.iterdir())
        assert outside == sorted(["src.bin", *(["objects"] if store.root.exists() else [])])
        if store.root.exists():
            assert list(store.root.rglob("*")) == []


def test_invalid_key_is_a_value_error_with_clear_message() -> None:
    with pytest.raises(ValueError, match=r"'\.' or '\.\.'"):
        validate_key("a/../b")
    with pytest.raises(InvalidKey, match="512"):
        validate_key("k" * 513)
    with pytest.raises(InvalidKey, match="empty"):
        validate_key("")
    assert validate_key("k" * 512) == "k" * 512
    assert validate_key("jobs/1/ünïcode name.png") == "jobs/1/ünïcode name.png"


def test_unicode_and_space_keys_roundtrip(store: ObjectStore) -> None:
    key = "jobs/ä b/naïve file+1.txt"
    store.put_bytes(key, b"ok")
    assert store.get_bytes(key) == b"ok"
    assert [o.key for o in store.list("jobs/")] == [key]


def test_job_key_is_deterministic(store: ObjectStore) -> None:
    key = job_key("abc123", "output.png")
    assert key == "jobs/abc123/output.png"
    assert job_key("abc123", "output.png") == key
    store.put_bytes(key, b"first")
    store.put_bytes(job_key("abc123", "output.png"), b"rerun")  # a retry overwrites
    assert [(o.key, o.size) for o in store.list("jobs/abc123/")] == [(key, 5)]
    with pytest.raises(InvalidKey):
        job_key("..", "x")
    with pytest.raises(InvalidKey):
        job_key("abc", "")


# --- presigned URLs -------------------------------------------------------------------------


def test_s3_presigned_get_url_downloads_the_bytes(s3_endpoint: S3Endpoint) -> None:
    reset_s3_server(s3_endpoint)
    s3 = _s3_store(s3_endpoint)
    s3.ensure_bucket()
    data = os.urandom(100_000)
    s3.put_bytes("jobs/7/clip name.mp4", data, content_type="video/mp4")
    url = s3.presigned_get_url("jobs/7/clip name.mp4", expires=timedelta(minutes=5))
    assert url.startswith(f"http://{s3_endpoint.endpoint}/{BUCKET}/")
    assert "X-Amz-Signature=" in url
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp4"
    # moto does not check presigned signatures (a forged URL works there too); real S3/MinIO does.
    # What we can check here: the link is for the requested key and expiry.
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == f"/{BUCKET}/jobs/7/clip%20name.mp4"
    assert query["X-Amz-Expires"] == ["300"]


def test_local_presigned_url_verifies(tmp_path: Path) -> None:
    local = LocalObjectStore(tmp_path, signing_key=SIGNING_KEY, public_url=PUBLIC_URL + "/")
    key = "jobs/7/clip name.mp4"
    local.put_bytes(key, b"video")
    url = local.presigned_get_url(key, expires=timedelta(minutes=10))
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL
    assert parts.path == "/api/files/jobs/7/clip%20name.mp4"
    query = parse_qs(parts.query)
    expires, signature = query["expires"][0], query["signature"][0]
    assert int(time.time()) + 590 <= int(expires) <= int(time.time()) + 610
    assert len(signature) == 64
    got_key = unquote(parts.path.removeprefix("/api/files/"))
    assert got_key == key

    assert verify_local_signature(got_key, expires, signature, signing_key=SIGNING_KEY)
    assert verify_local_signature(got_key, int(expires), signature, signing_key=SIGNING_KEY)
    # tampered key
    assert not verify_local_signature("jobs/7/other.mp4", expires, signature, signing_key=SIGNING_KEY)
    # wrong signature / wrong signing key / garbage
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert not verify_local_signature(got_key, expires, flipped, signing_key=SIGNING_KEY)
    assert not verify_local_signature(got_key, expires, signature, signing_key="another-key-0123456789")
    assert not verify_local_signature(got_key, expires, "", signing_key=SIGNING_KEY)
    assert not verify_local_signature(got_key, "soon", signature, signing_key=SIGNING_KEY)
    # extending the expiry breaks the signature
    assert not verify_local_signature(got_key, str(int(expires) + 3600), signature, signing_key=SIGNING_KEY)
    # expired link
    later = int(expires) + 1
    assert not verify_local_signature(got_key, expires, signature, signing_key=SIGNING_KEY, now=later)
    assert verify_local_signature(got_key, expires, signature, signing_key=SIGNING_KEY, now=int(expires))


def test_presigned_expiry_limits(store: ObjectStore) -> None:
    store.put_bytes("a.txt", b"a")
    with pytest.raises(ValueError, match="7 days"):
        store.presigned_get_url("a.txt", expires=timedelta(days=8))
    with pytest.raises(ValueError, match="1 second"):
        store.presigned_get_url("a.txt", expires=timedelta(0))
    assert store.presigned_get_url("a.txt", expires=timedelta(days=7)).startswith("http")


# --- health ---------------------------------------------------------------------------------


def test_ping_succeeds(store: ObjectStore) -> None:
    store.ping()
    assert store.list() == []  # ping leaves no objects behind


def test_ping_missing_bucket_raises(s3_endpoint: S3Endpoint) -> None:
    reset_s3_server(s3_endpoint)
    s3 = _s3_store(s3_endpoint)
    with pytest.raises(StorageError, match="does not exist"):
        s3.ping()
    with pytest.raises(StorageError, match="does not exist"):
        s3.put_bytes("a.txt", b"x")
    s3.ensure_bucket()
    s3.ensure_bucket()  # idempotent
    s3.ping()


def test_startup_creates_a_missing_bucket_and_survives_an_unreachable_store(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from core.config import reload_settings
    from core.infra.storage import prepare_storage, reset_object_store

    reset_s3_server(s3_endpoint)  # a new MinIO: no bucket yet
    for name, value in {"STUDIO_STORAGE_BACKEND": "s3", "STUDIO_S3_ENDPOINT": s3_endpoint.endpoint,
                        "STUDIO_S3_ACCESS_KEY": s3_endpoint.access_key, "STUDIO_S3_SECRET_KEY": SECRET_KEY,
                        "STUDIO_S3_BUCKET": BUCKET, "STUDIO_S3_SECURE": "false",
                        "STUDIO_S3_REGION": s3_endpoint.region}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STUDIO_S3_SECRET_KEY", s3_endpoint.secret_key)
    reload_settings()
    reset_object_store()
    try:
        assert prepare_storage() is True
        _s3_store(s3_endpoint).ping()  # the bucket exists now
        monkeypatch.setenv("STUDIO_S3_ENDPOINT", f"127.0.0.1:{_closed_port()}")
        monkeypatch.setenv("STUDIO_S3_SECRET_KEY", SECRET_KEY)
        reload_settings()
        reset_object_store()
        assert prepare_storage() is False, "logged, not raised: the server still starts"
        assert "object storage not ready" in caplog.text and SECRET_KEY not in caplog.text
    finally:
        reset_s3_server(s3_endpoint)
        monkeypatch.undo()  # before reloading, so later tests see the settings they had
        reload_settings()
        reset_object_store()


def test_unreachable_s3_fails_fast_without_leaking_the_secret() -> None:
    s3 = S3ObjectStore(f"127.0.0.1:{_closed_port()}", "access", SECRET_KEY, BUCKET)
    started = time.monotonic()
    with pytest.raises(StorageError) as excinfo:
        s3.ping()
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"ping took {elapsed:.1f} s"
    assert isinstance(excinfo.value, StorageUnavailable)
    message = str(excinfo.value)
    assert "unreachable" in message
    assert SECRET_KEY not in message
    assert SECRET_KEY not in repr(excinfo.value)
    assert excinfo.value.__cause__ is None
    with pytest.raises(StorageUnavailable) as excinfo:
        s3.get_bytes("a.txt")
    assert SECRET_KEY not in str(excinfo.value)


def test_local_store_never_escapes_root_through_symlink(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    local = LocalObjectStore(root, signing_key=SIGNING_KEY, public_url=PUBLIC_URL)
    with pytest.raises(InvalidKey, match="outside"):
        local.put_bytes("link/escape.txt", b"x")
    assert list(outside.iterdir()) == []


def test_local_store_hides_temp_files_and_prunes_empty_folders(tmp_path: Path) -> None:
    local = LocalObjectStore(tmp_path, signing_key=SIGNING_KEY, public_url=PUBLIC_URL)
    local.put_bytes("a/b/c.txt", b"x")
    (tmp_path / "a" / "b" / ".studio-tmp-crashed").write_bytes(b"half")
    assert [o.key for o in local.list()] == ["a/b/c.txt"]
    with pytest.raises(InvalidKey):
        local.put_bytes("a/.studio-tmp-x", b"x")
    local.delete("a/b/c.txt")
    (tmp_path / "a" / "b" / ".studio-tmp-crashed").unlink()
    local.delete_prefix("")
    assert local.list() == []


# --- construction ---------------------------------------------------------------------------


def test_make_object_store_follows_settings(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    from pydantic import SecretStr

    from core.config import Settings

    settings = Settings(storage_backend="local", data_dir=tmp_path, signing_key=SecretStr("k"))
    local = make_object_store(settings)
    assert isinstance(local, LocalObjectStore)
    assert local.root == (tmp_path / "objects").resolve()

    settings = Settings(
        storage_backend="s3",
        s3_endpoint=s3_endpoint.endpoint,
        s3_bucket="made-by-settings",
        s3_access_key=SecretStr(s3_endpoint.access_key),
        s3_secret_key=SecretStr(s3_endpoint.secret_key),
        s3_region=s3_endpoint.region,
    )
    s3 = make_object_store(settings)
    assert isinstance(s3, S3ObjectStore)
    assert s3.bucket == "made-by-settings"
    s3.ensure_bucket()
    s3.put_bytes("hello.txt", b"hi")
    assert s3.get_bytes("hello.txt") == b"hi"
    assert SECRET_KEY not in repr(s3)


def test_get_object_store_is_cached_and_resettable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.config import reload_settings
    from core.infra.storage import get_object_store, reset_object_store

    monkeypatch.setenv("STUDIO_STORAGE_BACKEND", "local")
    monkeypatch.setenv("STUDIO_STORAGE_DIR", str(tmp_path / "one"))
    reload_settings()
    reset_object_store()
    try:
        first = get_object_store()
        assert get_object_store() is first
        assert isinstance(first, LocalObjectStore)
        assert first.root == (tmp_path / "one").resolve()
        monkeypatch.setenv("STUDIO_STORAGE_DIR", str(tmp_path / "two"))
        reload_settings()
        assert get_object_store() is first  # cached until reset
        reset_object_store()
        second = get_object_store()
        assert second is not first
        assert isinstance(second, LocalObjectStore)
        assert second.root == (tmp_path / "two").resolve()
    finally:
        monkeypatch.undo()
        reload_settings()
        reset_object_store()


def test_s3_stream_closes_and_releases_the_http_response(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_s3_server(s3_endpoint)
    s3 = _s3_store(s3_endpoint)
    s3.ensure_bucket()
    s3.put_bytes("big.bin", os.urandom(1024 * 1024))
    responses = []
    real_get_object = s3.client.get_object

    def recording_get_object(*args, **kwargs):
        response = real_get_object(*args, **kwargs)
        responses.append(response)
        return response

    monkeypatch.setattr(s3.client, "get_object", recording_get_object)
    stream = s3.iter_chunks("big.bin", chunk_size=1024)
    next(stream)
    assert not responses[0].closed
    stream.close()
    assert responses[0].closed
    s3.get_bytes("big.bin")
    assert responses[1].closed
    with pytest.raises(ObjectNotFound):
        s3.get_bytes("nope.bin")
    assert len(responses) == 2  # the failed GET returned no response to leak
