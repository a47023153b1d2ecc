"""Typed errors raised by core services. Callers map them to HTTP codes, CLI exits or UI messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError


class StudioError(Exception):
    """Base class for errors whose message is safe to show to a user."""


class NotFound(StudioError):
    pass


class InvalidInput(StudioError, ValueError):
    """The caller's input was rejected; nothing was written."""


class MissingReference(NotFound, InvalidInput):
    """A thing the caller's input names (a dataset id in a payload…) does not exist.

    It is bad input, so the API answers 422 naming the field, as for any other invalid field; a missing
    thing named by the request's path is a plain NotFound (404). Still a NotFound for callers that only
    ask whether the thing is there."""


@contextmanager
def referenced_by(field: str) -> Iterator[None]:
    """Inside, a NotFound is about the thing the input's ``field`` names: it becomes a MissingReference whose
    message starts with the field (``dataset_id: dataset 7 does not exist``). One already naming its field
    passes through unchanged, so a wider net (``payload``) never renames a narrower one."""
    try:
        yield
    except MissingReference:
        raise
    except NotFound as error:
        raise MissingReference(f"{field}: {error}") from None


class Conflict(StudioError):
    """The request is valid but the current state forbids it (e.g. retrying a running job)."""


class TransientError(StudioError):
    """A failure worth retrying later (a service was down, a rate limit hit)."""


class PermanentJobError(StudioError):
    """A job failure that retrying cannot fix (bad input discovered at run time)."""


class JobCancelled(StudioError):
    """Raised inside a running job when a user asked to cancel it."""


class JobLeaseLost(StudioError):
    """Raised inside a running job when another attempt has taken it over."""


class JobInterrupted(StudioError):
    """Raised inside a running job when its worker is shutting down; the job goes back to the queue."""


def describe_validation_error(error: ValidationError) -> str:
    """A pydantic error as one readable line naming each field: ``seconds: Input should be …``."""
    parts = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def describe_failure(error: BaseException) -> str:
    """A job's error line: the exception, plus what to do where the fix is not obvious from it."""
    text = f"{type(error).__name__}: {error}"
    # torch.OutOfMemoryError (torch.cuda.OutOfMemoryError), named without importing torch here.
    if type(error).__name__ == "OutOfMemoryError":
        return (f"out of GPU memory — lower the batch size or resolution, enable gradient checkpointing, or run "
                f"fewer GPU jobs at once (STUDIO_GPU_SLOTS_PER_GPU). {text}")
    return text
