"""``GET /api/files/{key}``: downloads from the local object store behind signed, expiring links.

Not token-protected: the link's signature is the permission (``core.infra.storage`` signs it), so a
browser or a social platform can fetch the file. The S3 backend presigns its own links; this route
answers 404 there.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from api.framework import ApiError, api
from core.config import get_settings
from core.fields import parse_int
from core.infra.storage import LocalObjectStore, ObjectNotFound, get_object_store, verify_local_signature


def _check_link(request: Request, key: str) -> None:
    expires = parse_int(request.query_params.get("expires"))
    if expires is None:
        raise ApiError(403, "invalid or expired link")
    signature = request.query_params.get("signature", "")
    signing_key = get_settings().signing_key.get_secret_value()
    if not verify_local_signature(key, expires, signature, signing_key=signing_key):
        raise ApiError(403, "invalid or expired link")


@api(authenticated=False)
async def get_file(request: Request) -> Response:
    """Serves local-store downloads behind signed, expiring links (the S3 backend presigns itself)."""
    store = get_object_store()
    key = request.path_params["key"]
    if not isinstance(store, LocalObjectStore):
        raise ApiError(404, "file links are served by the object store")
    _check_link(request, key)
    try:
        info = await run_in_threadpool(store.stat, key)
    except ObjectNotFound:
        raise ApiError(404, "file not found") from None
    return StreamingResponse(
        store.iter_chunks(key), media_type=info.content_type or "application/octet-stream",
        headers={"Content-Length": str(info.size)},
    )


def routes() -> list[Route]:
    return [Route("/api/files/{key:path}", get_file, methods=["GET"])]
