"""The model manager's routes: installed base models and LoRAs with disk use, install, remove; a LoRA by URL."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.framework import ApiError, api, character_id_of, for_character, query_int, read_json_body
from core.jobs.serialize import job_to_dict
from core.models import InstalledModel
from core.models_registry import install, registry


def model_to_dict(model: InstalledModel) -> dict[str, Any]:
    return {"name": model.name, "family": model.family, "format": model.format, "precision": model.precision,
            "sizeBytes": model.size_bytes, "sourceKind": model.source_kind, "source": model.source,
            "status": model.status, "jobId": model.job_id, "error": model.error, "baseModel": model.base_model,
            "installedAt": model.installed_at.isoformat() if model.installed_at else None}


def _use() -> dict[str, int]:
    use = registry.disk_use()
    return {"models": use.models, "modelBytes": use.model_bytes, "loras": use.loras, "loraBytes": use.lora_bytes}


@api()
async def get_models(request: Request) -> Response:
    page = await run_in_threadpool(registry.list_models, page=query_int(request, "page", 1),
                                   page_size=query_int(request, "pageSize", 50))
    return JSONResponse({"items": [model_to_dict(m) for m in page.items], "total": page.total, "page": page.page,
                         "pageSize": page.page_size, "diskUse": await run_in_threadpool(_use)})


@api()
async def get_model_loras(request: Request) -> Response:
    page = await run_in_threadpool(registry.list_loras, page=query_int(request, "page", 1),
                                   page_size=query_int(request, "pageSize", 50))
    items = [{"id": e.id, "name": e.name, "family": e.family, "baseModel": e.base_model, "format": e.format,
              "precision": e.precision, "sizeBytes": e.size_bytes, "source": e.source,
              "installedAt": e.installed_at.isoformat()} for e in page.items]
    return JSONResponse({"items": items, "total": page.total, "page": page.page, "pageSize": page.page_size})


def _text(body: dict[str, Any], field: str, *, required: bool = False) -> str:
    value = body.get(field, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(422, f"{field}: {'required, ' if required else ''}a string")
    return value.strip()


@api()
async def post_model(request: Request) -> Response:
    """``{"source": "folder"|"file"|"hub", "path"|"repoId", "name"?, "config"?, "baseModel"?}``: a folder installs
    at once (201); a single file or a hub id answers 202 with the install job to follow (its progress). A DiT
    transformer file pairs with ``baseModel`` (installed, a folder or a hub id; default: its family's hub id)."""
    body = await read_json_body(request)
    source, name = _text(body, "source", required=True), _text(body, "name")
    if source == "folder":
        model = await run_in_threadpool(lambda: install.install_folder(path=_text(body, "path", required=True),
                                                                       name=name))
        return JSONResponse({"model": model_to_dict(model)}, status_code=201)
    if source == "file":
        model, job = await run_in_threadpool(lambda: install.submit_single_file(
            path=_text(body, "path", required=True), name=name, config=_text(body, "config"),
            base_model=_text(body, "baseModel")))
    elif source == "hub":
        model, job = await run_in_threadpool(lambda: install.submit_hub(
            repo_id=_text(body, "repoId", required=True), name=name, revision=_text(body, "revision") or "main"))
    else:
        raise ApiError(422, "source: one of folder, file, hub")
    return JSONResponse({"model": model_to_dict(model), "job": job_to_dict(job)}, status_code=202,
                        headers={"Location": f"/api/jobs/{job.id}"})


@api()
async def delete_model(request: Request) -> Response:
    """Refused with 409 while a queued or running job uses the model."""
    model = await run_in_threadpool(lambda: registry.remove_model(name=request.path_params["name"]))
    return JSONResponse({"removed": model.name})


@api()
async def post_lora_from_url(request: Request) -> Response:
    """``{"url", "baseModel", "family"?, "name"?, "triggerWord"?, "character"?}``: fetched with the upload limits,
    checked like an upload, queued for import (202 with the job) for the character named (id or slug)."""
    body = await read_json_body(request)
    character = body.get("character")
    job = await run_in_threadpool(lambda: for_character(character, lambda: install.import_lora_from_url(
        _text(body, "url", required=True), base_model=_text(body, "baseModel", required=True),
        family=_text(body, "family") or "sd15", name=_text(body, "name"), trigger_word=_text(body, "triggerWord"),
        character_id=character_id_of(character))))
    return JSONResponse(job_to_dict(job), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


def routes() -> list[Route]:
    return [
        Route("/api/models", get_models, methods=["GET"]),
        Route("/api/models", post_model, methods=["POST"]),
        Route("/api/models/loras", get_model_loras, methods=["GET"]),
        Route("/api/models/{name:path}", delete_model, methods=["DELETE"]),
        Route("/api/loras/import-url", post_lora_from_url, methods=["POST"]),
    ]
