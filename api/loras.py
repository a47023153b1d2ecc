"""The LoRA routes: download a LoRA in kohya/A1111 or diffusers format, import a community LoRA file."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.framework import ApiError, api, character_id_of, read_body
from core.jobs.serialize import job_to_dict
from core.loras import files as lora_files
from core.loras.imports import MAX_IMPORT_BYTES, submit_import


def _lora_id(request: Request) -> int:
    raw = request.path_params["lora_id"]
    if not raw.isdigit():
        raise ApiError(404, "no such LoRA")
    return int(raw)


@api()
async def get_lora_file(request: Request) -> Response:
    """``?format=kohya`` (default: ComfyUI, A1111, Forge, sd-scripts; for FLUX.2 klein, Z-Image and Qwen-Image
    ComfyUI), ``comfyui`` (the DiT families' ComfyUI / ai-toolkit file) or ``diffusers`` (ours)."""
    fmt = request.query_params.get("format", "kohya")
    exported = await run_in_threadpool(lora_files.export_lora_by_id, _lora_id(request), fmt)
    return Response(exported.data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{exported.file_name}"'})


@api()
async def post_lora_import(request: Request) -> Response:
    """The body is the .safetensors file; ``file_name``, ``base_model`` (required), ``family``, ``name``,
    ``trigger_word`` and ``character`` (id or slug; ``character_id`` too) come as query parameters. Answers the
    queued import job."""
    query = request.query_params
    if not query.get("base_model"):
        raise ApiError(422, "query parameter 'base_model' is required")
    character = query.get("character", query.get("character_id"))  # character_id: the older name
    body = await read_body(request, limit=MAX_IMPORT_BYTES)
    character_id = await run_in_threadpool(character_id_of, character)
    job = await run_in_threadpool(
        lambda: submit_import(body, file_name=query.get("file_name", "upload.safetensors"), name=query.get("name", ""),
                              family=query.get("family", "sd15"), base_model=query["base_model"],
                              trigger_word=query.get("trigger_word", ""), character_id=character_id))
    return JSONResponse(job_to_dict(job), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


def routes() -> list[Route]:
    return [
        Route("/api/loras/import", post_lora_import, methods=["POST"]),
        Route("/api/loras/{lora_id}/file", get_lora_file, methods=["GET"]),
    ]
