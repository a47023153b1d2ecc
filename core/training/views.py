"""Read-side helpers for the training page: form field specs derived from ``LoraParams``, a
dataset's readiness for training, loss smoothing, a log tail and small formatters.

Kept out of the UI so they are plain functions with tests, and so the page never restates a
range or a help text that ``core.training.params`` already defines. No streamlit here.
"""

from __future__ import annotations

import math
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from core.datasets.check import check_dataset
from core.datasets.datasets import list_images
from core.training.params import (
    ADAPTER_LABELS,
    FAMILY_LABELS,
    OPTIMIZER_LABELS,
    QUANTIZATION_LABELS,
    LoraParams,
    available_optimizers,
)

FieldKind = Literal["choice", "bool", "int", "float", "optional_float", "text", "lines"]

# Labels of choices that have a nicer name than their stored value.
CHOICE_LABELS: dict[str, dict[str, str]] = {"family": FAMILY_LABELS, "optimizer": OPTIMIZER_LABELS,
                                             "adapter": ADAPTER_LABELS, "quantize_base": QUANTIZATION_LABELS}


@dataclass(frozen=True)
class FieldSpec:
    """How to draw one ``LoraParams`` field: everything comes from its pydantic definition."""

    name: str
    kind: FieldKind
    help: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None  # int: multiple_of (or 1); float: a step that suits the range
    number_format: str | None = None  # printf format for floats spanning orders of magnitude
    options: tuple[str, ...] = ()
    max_length: int | None = None  # characters of a text, items of a list

    def option_label(self, value: str) -> str:
        return CHOICE_LABELS.get(self.name, {}).get(value, value)


def _bound(metadata: Sequence[Any], attribute: str) -> Any:
    return next((getattr(m, attribute) for m in metadata if getattr(m, attribute, None) is not None), None)


def _float_step(minimum: float, maximum: float) -> tuple[float, str | None]:
    """A step of about a hundredth of the range; learning rates (1e-6…1) get scientific notation."""
    if minimum > 0 and maximum / minimum >= 1e4:
        return minimum, "%.1e"
    span = maximum - minimum
    return 10.0 ** (math.floor(math.log10(span)) - 2), None


def field_specs() -> dict[str, FieldSpec]:
    """One spec per ``LoraParams`` field, in definition order."""
    specs: dict[str, FieldSpec] = {}
    for name, info in LoraParams.model_fields.items():
        annotation, metadata, help_text = info.annotation, info.metadata, info.description or ""
        minimum, maximum = _bound(metadata, "ge"), _bound(metadata, "le")
        args = get_args(annotation)
        optional = get_origin(annotation) in (Union, types.UnionType) and type(None) in args
        if get_origin(annotation) is Literal:
            options = tuple(str(a) for a in args)
            if name == "optimizer":  # only what this installation can actually run
                options = tuple(o for o in options if o in available_optimizers())
            specs[name] = FieldSpec(name, "choice", help_text, options=options)
        elif annotation is bool:
            specs[name] = FieldSpec(name, "bool", help_text)
        elif annotation is int:
            step = _bound(metadata, "multiple_of") or 1
            specs[name] = FieldSpec(name, "int", help_text, minimum=minimum, maximum=maximum, step=step)
        elif annotation is float or (optional and float in args):
            # Floats throughout: Streamlit refuses a number input whose bounds and step mix int and float.
            low = float(minimum) if minimum is not None else 0.0
            high = float(maximum) if maximum is not None else 1e6
            step, number_format = _float_step(low, high)
            specs[name] = FieldSpec(name, "optional_float" if optional else "float", help_text, minimum=low,
                                    maximum=high, step=step, number_format=number_format)
        elif annotation is str:
            specs[name] = FieldSpec(name, "text", help_text, max_length=_bound(metadata, "max_length"))
        elif get_origin(annotation) is list:
            specs[name] = FieldSpec(name, "lines", help_text, max_length=_bound(metadata, "max_length"))
        else:  # a new kind of field must get a widget before it can ship
            raise TypeError(f"LoraParams.{name}: no form widget for {annotation!r}")
    return specs


def changed_params(base: LoraParams, params: LoraParams) -> list[tuple[str, Any, Any]]:
    """(field, config value, run value) for every field the run changes."""
    before, after = base.model_dump(mode="json"), params.model_dump(mode="json")
    return [(name, before[name], after[name]) for name in after if before[name] != after[name]]


# --- dataset readiness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetReadiness:
    image_count: int
    captioned: int
    reviewed: int
    warnings: list[str] = field(default_factory=list)


_CHECK_WORDS = {
    "near_duplicates": "near-duplicate pair(s)",
    "too_small": "image(s) smaller than the training resolution ({resolution} px)",
    "blurry": "blurry image(s)",
    "odd_aspect": "image(s) with an extreme aspect ratio",
    "missing_caption": "image(s) without a caption",
    "no_face": "image(s) without a face",
    "several_faces": "image(s) with several faces",
    "other_person": "image(s) that look like another person",
}


def dataset_readiness(dataset_id: int, *, resolution: int) -> DatasetReadiness:
    """Counts for the wizard's first step and the pre-flight check's warnings, as sentences."""
    total = list_images(dataset_id, page_size=1).total
    missing = list_images(dataset_id, which="missing", page_size=1).total
    unreviewed = list_images(dataset_id, which="unreviewed", page_size=1).total
    report = check_dataset(dataset_id, resolution=resolution)
    warnings = [f"{count} {_CHECK_WORDS.get(kind, kind).format(resolution=resolution)}"
                for kind, count in report.summary.items() if count]
    return DatasetReadiness(total, total - missing, total - unreviewed, warnings + report.notes)


# --- run view ----------------------------------------------------------------------------------------


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing, so the start is not pulled to 0."""
    smoothed, last = [], 0.0
    for index, value in enumerate(values, start=1):
        last = weight * last + (1 - weight) * value
        smoothed.append(last / (1 - weight**index) if weight < 1 else value)
    return smoothed


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
