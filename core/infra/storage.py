"""The one object-storage interface: generated media, uploads and job artefacts go through here.

Two backends implement :class:`ObjectStore`:

* :class:`LocalObjectStore` keeps objects as files under one directory (development, single host).
  Download links are HMAC-signed URLs served by the studio's own HTTP route.
* :class:`S3ObjectStore` talks to any S3-compatible server (MinIO, AWS, moto in tests) with the
  ``minio`` client. Download links are S3 presigned URLs.

Callers never see backend exceptions: everything is mapped to :class:`StorageError` and its
subclasses, so a job can tell "missing object" (permanent) from "storage down" (retry later).
Keys are validated identically for both backends, so code that works locally cannot produce a key
that S3 would store but the local backend could not (or that could climb out of the storage root).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import io
import logging
import mimetypes
import os
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

from core.config import Settings, get_settings
from core.errors import InvalidInput, NotFound, StudioError, TransientError

if TYPE_CHECKING:
    from minio import Minio

MAX_KEY_LENGTH = 512
DEFAULT_CHUNK_SIZE = 65_536
# S3 (and minio) refuse presigned URLs valid for longer than 7 days; keep both backends alike.
MAX_PRESIGN_EXPIRY = timedelta(days=7)
# The local backend writes to "<dir>/.studio-tmp-<uuid>" and renames; keys may not use the prefix.
_LOCAL_TMP_PREFIX = ".studio-tmp-"
_COPY_BUFFER = 1_048_576


# --- errors ---------------------------------------------------------------------------------


class StorageError(StudioError):
    """Any failure of the object store. Messages never contain credentials."""


class ObjectNotFound(StorageError, NotFound):
    """The key does not exist (or names a 'directory' rather than an object)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key!r}")
        self.key = key


class InvalidKey(StorageError, InvalidInput):
    """The key (or prefix) is malformed or unsafe; nothing was read or written."""


class StorageUnavailable(StorageError, TransientError):
    """The storage server could not be reached or failed; worth retrying later."""


# --- keys -----------------------------------------------------------------------------------


def _check_characters(value: str, what: str) -> None:
    if value.startswith("/"):
        raise InvalidKey(f"{what} must be relative, not start with '/': {value[:80]!r}")
    if "\\" in value:
        raise InvalidKey(f"{what} must use '/' as separator, not '\\': {value[:80]!r}")
    for char in value:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise InvalidKey(f"{what} contains a control character ({ord(char):#04x}): {value[:80]!r}")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe object key, else raise :class:`InvalidKey`.

    The rules are the intersection of what S3 and a POSIX directory tree can store faithfully:
    no absolute paths, no backslashes, no control characters, and no ``.``/``..``/empty segments
    (which a filesystem would normalise away, making two keys collide or escape the root).
    """
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidKey("key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}")
    _check_characters(key, "key")
    for segment in key.split("/"):
        if segment == "":
            raise InvalidKey(f"key must not contain empty segments ('//' or a trailing '/'): {key[:80]!r}")
        if segment in (".", ".."):
            raise InvalidKey(f"key must not contain '.' or '..' segments: {key[:80]!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Like :func:`validate_key`, but ``""`` and a trailing ``/`` are allowed (listing a 'folder')."""
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix must be a string, got {type(prefix).__name__}")
    if not prefix:
        return prefix
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidKey(f"prefix is {len(prefix)} characters long; the limit is {MAX_KEY_LENGTH}")
    _check_characters(prefix, "prefix")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()  # "jobs/" is a fine prefix
    for segment in segments:
        if segment == "":
            raise InvalidKey(f"prefix must not contain empty segments ('//'): {prefix[:80]!r}")
        if segment in (".", ".."):
            raise InvalidKey(f"prefix must not contain '.' or '..' segments: {prefix[:80]!r}")
    return prefix


def job_key(job_id: str, name: str) -> str:
    """The key of a job's artefact. Deterministic, so a retried job overwrites instead of duplicating."""
    return validate_key(f"jobs/{job_id}/{name}")


def _check_expiry(expires: timedelta) -> int:
    seconds = int(expires.total_seconds())
    if seconds < 1 or expires > MAX_PRESIGN_EXPIRY:
        raise ValueError(f"link expiry must be between 1 second and 7 days, got {expires}")
    return seconds


# --- interface ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about an object. ``content_type`` is None where the backend doesn't say."""

    key: str
    size: int
    content_type: str | None = None
    last_modified: datetime | None = None


class ChunkStream(Iterator[bytes]):
    """An iterator of an object's bytes that releases its file/connection as soon as it is done.

    It closes itself when exhausted, on error, on :meth:`close`, on leaving a ``with`` block, and
    (as a last resort) when garbage-collected, so a consumer that stops early leaks nothing.
    """

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> bytes:
        if self._release is None:
            raise StopIteration
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    @property
    def closed(self) -> bool:
        return self._release is None

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class ObjectStore(ABC):
    """Operations every backend provides. Keys are validated with :func:`validate_key`."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Store ``data`` under ``key``, replacing any existing object."""

    @abstractmethod
    def put_file(
        self, key: str, path: str | os.PathLike[str], content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        """Store a file's contents without reading it all into memory."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole object; raises :class:`ObjectNotFound`. Use :meth:`iter_chunks` for big objects."""

    @abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ChunkStream:
        """Stream the object. Raises :class:`ObjectNotFound` at call time, not on first iteration."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, content type and modification time; raises :class:`ObjectNotFound`."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error (deletes are retried by jobs)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; returns how many were removed."""

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = 1000
    ) -> list[ObjectInfo]:
        """Up to ``limit`` objects under ``prefix`` sorted by key, after ``start_after`` (for paging)."""
        validate_prefix(prefix)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return self._list(prefix, start_after, limit)

    @abstractmethod
    def _list(self, prefix: str, start_after: str | None, limit: int) -> builtins.list[ObjectInfo]:
        """The backend's listing; arguments already validated."""

    @abstractmethod
    def presigned_get_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """A URL that downloads the object without credentials until it expires (≤ 7 days)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`StorageError` unless the store is usable (health checks, worker start-up)."""


# --- local backend --------------------------------------------------------------------------


def _sign(key: str, expires: int, signing_key: str) -> str:
    message = f"{key}\n{expires}".encode()
    return hmac.new(signing_key.encode(), message, hashlib.sha256).hexdigest()


def verify_local_signature(
    key: str, expires: int | str, signature: str, *, signing_key: str, now: float | None = None
) -> bool:
    """True if ``signature`` is the local backend's signature of ``key`` and the link has not expired.

    The download route calls this with the query parameters of a :meth:`LocalObjectStore.presigned_get_url`.
    """
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return False
    if expires_at < (time.time() if now is None else now):
        return False
    if not isinstance(signature, str) or not signing_key:
        return False
    expected = _sign(key, expires_at, signing_key)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``. Writes are atomic (temp file + rename), so readers never
    see half-written objects and a crashed write leaves the previous version in place.

    Content types are not stored; :meth:`stat` guesses them from the key's extension.
    """

    def __init__(self, root: str | os.PathLike[str], *, signing_key: str, public_url: str) -> None:
        self.root = Path(root).resolve()
        self._signing_key = signing_key
        self._public_url = public_url.rstrip("/")

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self.root)!r})"

    # paths

    def _path(self, key: str) -> Path:
        validate_key(key)
        if any(segment.startswith(_LOCAL_TMP_PREFIX) for segment in key.split("/")):
            raise InvalidKey(f"key segments must not start with {_LOCAL_TMP_PREFIX!r}: {key[:80]!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKey(f"key resolves outside the storage root: {key[:80]!r}")
        return path

    def _info(self, key: str, path: Path) -> ObjectInfo:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"cannot stat {key!r}: {exc.strerror}") from exc
        if not path.is_file():
            raise ObjectNotFound(key)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            content_type=mimetypes.guess_type(key)[0] or "application/octet-stream",
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        )

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> ObjectInfo:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StorageError(f"cannot store {key!r}: a parent of it is an object, not a folder") from None
        except OSError as exc:
            raise StorageError(f"cannot create the folder for {key!r}: {exc.strerror}") from exc
        tmp = path.parent / f"{_LOCAL_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except IsADirectoryError:
            raise StorageError(f"cannot store {key!r}: other objects exist under {key + '/'!r}") from None
        except OSError as exc:
            raise StorageError(f"cannot write {key!r}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return self._info(key, path)

    def _prune_empty_dirs(self, directory: Path) -> None:
        """Remove folders left empty by deletes, so the tree doesn't grow forever."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # ObjectStore

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        return self._write(key, lambda out: out.write(data))

    def put_file(
        self, key: str, path: str | os.PathLike[str], content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        source = Path(path)
        if not source.is_file():
            raise StorageError(f"cannot upload {key!r}: source file {str(source)!r} does not exist")

        def copy(out: BinaryIO) -> None:
            with open(source, "rb") as src:
                while chunk := src.read(_COPY_BUFFER):
                    out.write(chunk)

        return self._write(key, copy)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc.strerror}") from exc

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ChunkStream:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # closed by the ChunkStream
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc.strerror}") from exc

        def chunks() -> Iterator[bytes]:
            while chunk := handle.read(chunk_size):
                yield chunk

        return ChunkStream(chunks(), handle.close)

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._path(key))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a 'folder' is not an object; nothing to delete
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r}: {exc.strerror}") from exc
        self._prune_empty_dirs(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        while batch := self.list(prefix, limit=1000):
            for info in batch:
                self.delete(info.key)
                count += 1
        return count

    def _walk_keys(self, prefix: str) -> Iterator[str]:
        # Only walk the deepest folder the prefix pins down ("jobs/12" -> "jobs/").
        folder = prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(_LOCAL_TMP_PREFIX)]
            relative = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(_LOCAL_TMP_PREFIX):
                    continue
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    yield key

    def _list(self, prefix: str, start_after: str | None, limit: int) -> list[ObjectInfo]:
        # Python orders str by code point, which is the UTF-8 byte order S3 uses.
        keys = sorted(k for k in self._walk_keys(prefix) if start_after is None or k > start_after)
        result: list[ObjectInfo] = []
        for key in keys:
            try:
                result.append(self._info(key, self.root / key))
            except ObjectNotFound:
                continue  # deleted while listing
            if len(result) >= limit:
                break
        return result

    def presigned_get_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        validate_key(key)
        expires_at = int(time.time()) + _check_expiry(expires)
        signature = _sign(key, expires_at, self._signing_key)
        query = f"expires={expires_at}&signature={signature}"
        return f"{self._public_url}/api/files/{quote(key, safe='/')}?{query}"

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root, prefix=_LOCAL_TMP_PREFIX):
                pass
        except OSError as exc:
            raise StorageError(
                f"local storage folder {str(self.root)!r} is not writable: {exc.strerror}"
            ) from exc


# --- S3 backend -----------------------------------------------------------------------------


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket through the ``minio`` client.

    The HTTP pool uses short timeouts and two retries, so an unreachable server makes callers fail
    in seconds (and jobs retry later) instead of hanging on minio's default retry schedule.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        import urllib3
        from minio import Minio

        self.endpoint = endpoint
        self.bucket = bucket
        self._secret_key = secret_key
        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            maxsize=10,
        )
        # region is given so minio never makes a GetBucketLocation round trip (and presigning is offline).
        self.client: Minio = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    def _redact(self, text: str) -> str:
        return text.replace(self._secret_key, "***") if self._secret_key else text

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Translate minio/urllib3 exceptions into StorageError subclasses with safe messages."""
        import urllib3
        from minio.error import MinioException, S3Error

        try:
            yield
        except S3Error as exc:
            if key is not None and exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            if exc.code == "NoSuchBucket":
                raise StorageError(f"bucket {self.bucket!r} does not exist at {self.endpoint}") from None
            detail = self._redact(f"{exc.code}: {exc.message}")
            raise StorageError(f"S3 {action} failed at {self.endpoint}: {detail}") from None
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            # `from None`: the urllib3 traceback carries request details we don't want in logs.
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            raise StorageUnavailable(
                f"object storage at {self.endpoint} is unreachable or failing ({action}): {detail}"
            ) from None

    def ensure_bucket(self) -> None:
        """Create the bucket if missing. ``bucket_exists`` first: some servers reject re-creation."""
        with self._errors("ensure bucket"):
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        validate_key(key)
        with self._errors("put", key):
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return ObjectInfo(key=key, size=len(data), content_type=content_type, last_modified=datetime.now(UTC))

    def put_file(
        self, key: str, path: str | os.PathLike[str], content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        validate_key(key)
        source = Path(path)
        if not source.is_file():
            raise StorageError(f"cannot upload {key!r}: source file {str(source)!r} does not exist")
        size = source.stat().st_size
        with self._errors("put", key):
            self.client.fput_object(self.bucket, key, str(source), content_type=content_type)
        return ObjectInfo(key=key, size=size, content_type=content_type, last_modified=datetime.now(UTC))

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        with self._errors("get", key):
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ChunkStream:
        validate_key(key)
        with self._errors("get", key):
            response = self.client.get_object(self.bucket, key)

        def chunks() -> Iterator[bytes]:
            with self._errors("get", key):
                yield from response.stream(chunk_size)

        def release() -> None:
            response.close()
            response.release_conn()

        return ChunkStream(chunks(), release)

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        with self._errors("stat", key):
            obj = self.client.stat_object(self.bucket, key)
        return ObjectInfo(
            key=key, size=obj.size or 0, content_type=obj.content_type, last_modified=obj.last_modified
        )

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._errors("delete", key):
            self.client.remove_object(self.bucket, key)

    def delete_prefix(self, prefix: str) -> int:
        from minio.deleteobjects import DeleteObject

        validate_prefix(prefix)
        count = 0
        while batch := self.list(prefix, limit=1000):
            with self._errors("delete"):
                errors = list(self.client.remove_objects(self.bucket, [DeleteObject(o.key) for o in batch]))
            if errors:
                first = errors[0]
                raise StorageError(
                    f"could not delete {len(errors)} of {len(batch)} objects under {prefix!r}; "
                    f"first: {first.name!r}: {first.code} {first.message}"
                )
            count += len(batch)
        return count

    def _list(self, prefix: str, start_after: str | None, limit: int) -> list[ObjectInfo]:
        result: list[ObjectInfo] = []
        with self._errors("list"):
            objects = self.client.list_objects(
                self.bucket, prefix=prefix or None, recursive=True, start_after=start_after
            )
            for obj in objects:
                if obj.is_dir or obj.object_name is None:
                    continue
                result.append(
                    ObjectInfo(
                        key=obj.object_name,
                        size=obj.size or 0,
                        content_type=obj.content_type,
                        last_modified=obj.last_modified,
                    )
                )
                if len(result) >= limit:
                    break  # the generator stops fetching pages when dropped
        return result

    def presigned_get_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        validate_key(key)
        _check_expiry(expires)
        with self._errors("presign", key):
            return self.client.presigned_get_object(self.bucket, key, expires=expires)

    def ping(self) -> None:
        with self._errors("ping"):
            found = self.client.bucket_exists(self.bucket)
        if not found:
            raise StorageError(f"bucket {self.bucket!r} does not exist at {self.endpoint}")


# --- construction ---------------------------------------------------------------------------


def make_object_store(settings: Settings | None = None) -> ObjectStore:
    """Build the backend the settings name (``STUDIO_STORAGE_BACKEND``)."""
    if settings is None:
        settings = get_settings()
    if settings.storage_backend == "s3":
        return S3ObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key.get_secret_value(),
            settings.s3_secret_key.get_secret_value(),
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )
    return LocalObjectStore(
        settings.effective_storage_dir,
        signing_key=settings.signing_key.get_secret_value(),
        public_url=settings.public_url,
    )


@lru_cache(maxsize=1)
def get_object_store() -> ObjectStore:
    """The process-wide store (its HTTP pool is shared by all threads of a worker)."""
    return make_object_store()


def protect_data_dir() -> None:
    """At startup of every process that writes state: files it creates from now on are its user's alone
    (umask 077), and the data folder with the SQLite database and the local objects is closed to others."""
    os.umask(0o077)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    database = settings.data_dir / "studio.db"
    if database.exists():
        database.chmod(0o600)


def prepare_storage() -> bool:
    """At startup: create the S3 bucket when it is missing (a new MinIO has none). A store that cannot
    be reached is logged, not fatal: the health checks show it and jobs retry until it answers."""
    store = get_object_store()
    if not isinstance(store, S3ObjectStore):
        return True
    try:
        store.ensure_bucket()
    except StorageError as error:
        logging.getLogger("studio.storage").warning("object storage not ready: %s", error)
        return False
    return True


def reset_object_store() -> None:
    """Forget the cached store (tests change the settings between cases)."""
    get_object_store.cache_clear()
