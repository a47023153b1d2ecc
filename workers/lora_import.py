"""The ``import-lora`` job: a stored community LoRA file → checked against its base model → a LoRA row."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from core.errors import InvalidInput, PermanentJobError
from core.infra.storage import get_object_store
from core.jobs.lifecycle import JobContext, get_job
from core.loras.imports import ImportLoraPayload, record_import
from core.training.params import WEIGHTS_FILE
from core.training.runs import resolve_base_model
from workers.gpu_slots import assigned_device
from workers.ml import lora_import_dit
from workers.ml.lora_import import convert


def import_lora(ctx: JobContext[ImportLoraPayload]) -> dict[str, Any]:
    from workers.ml.generation import pipeline_cache

    payload = ctx.payload
    ctx.stage("load model")
    data = get_object_store().get_bytes(payload.upload_key)
    # Resolved here, as training does: the name is recorded as given (tiny-sd15, a hub id, a folder).
    model = resolve_base_model(payload.base_model)
    with pipeline_cache().acquire(model, payload.family, device=assigned_device()) as loaded, \
            tempfile.TemporaryDirectory(prefix="lora-import-") as folder:
        ctx.stage("convert")
        try:
            if payload.family in lora_import_dit.PIPELINES:  # the DiT families: the transformer takes the LoRA
                report = {"source_format": payload.source_format, **lora_import_dit.convert(
                    loaded.pipe.transformer, data, family=payload.family, directory=Path(folder))}
            else:
                report = convert(loaded.pipe, data, source_format=payload.source_format, family=payload.family,
                                 directory=Path(folder)).as_dict()
        except InvalidInput as error:
            raise PermanentJobError(str(error)) from error
        modules = report["modules"]
        assert isinstance(modules, dict)
        ctx.log(f"{payload.source_format} LoRA with {report['keys']} keys: LoRA layers loaded per part "
                + ", ".join(f"{k} {v}" for k, v in modules.items()))
        lora = record_import(get_job(ctx.job_id), file=Path(folder) / WEIGHTS_FILE, report=report)
    return {"lora_id": lora.id, **report}
