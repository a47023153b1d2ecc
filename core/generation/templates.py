"""Generation templates: the data files in ``workflows/generation`` and the schema they must meet.

A template names a base model and the settings an image is made with (scheduler, steps, CFG,
size, negative prompt, default LoRA strength). The generation page, the webhook and the CLI
pick one by name; a user adds one by dropping a ``.yaml`` (or ``.json``) file into the folder.
Files are read when asked for, so a new or edited template needs no restart; a broken one is
reported with its file name and the field at fault, and never hides the others.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.config import get_settings
from core.errors import InvalidInput, NotFound, describe_validation_error
from core.training.families import FAMILY_LABELS, ModelFamily, family_spec

# Scheduler key → the name people know it by (A1111 / ComfyUI). The worker maps keys to diffusers classes.
SCHEDULERS: dict[str, str] = {
    "euler_a": "Euler a",
    "euler": "Euler",
    "heun": "Heun",
    "ddim": "DDIM",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras",
    "unipc": "UniPC",
    # The flow-matching families (FLUX.2 [klein], Z-Image, Qwen-Image) sample with their own Euler
    # scheduler, shift included; the DDPM samplers above do not apply to them.
    "flow_euler": "Flow Euler",
}
FLOW_SCHEDULERS = ("flow_euler",)
FAMILIES: dict[str, str] = FAMILY_LABELS
DEFAULT_FAMILY: ModelFamily = "sd15"  # what a request with neither a template nor a LoRA is made with
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


def scheduler_key(value: str) -> str:
    """A scheduler by key ("dpmpp_2m_karras") or by its usual name ("DPM++ 2M Karras")."""
    wanted = value.strip()
    for key, label in SCHEDULERS.items():
        if wanted.lower() in (key, label.lower()):
            return key
    choices = ", ".join(f"{key} ({label})" for key, label in SCHEDULERS.items())
    raise ValueError(f"unknown scheduler {value!r}; choose one of: {choices}")


def _multiple_of_8(value: int) -> int:
    if value % 8:
        raise ValueError(f"{value} is not a multiple of 8 (the VAE works on 8×8 pixel blocks)")
    return value


class GenerationSettings(BaseModel):
    """The settings one image is made with: a template's values, or a job's after overrides."""

    model_config = ConfigDict(extra="forbid")

    scheduler: str = Field(default="euler_a", description="sampler; see SCHEDULERS")
    steps: int = Field(default=25, ge=1, le=150, description="denoising steps")
    cfg: float = Field(default=7.0, ge=0.0, le=30.0, description="classifier-free guidance scale")
    width: int = Field(default=512, ge=64, le=2048, description="pixels, multiple of 8")
    height: int = Field(default=512, ge=64, le=2048, description="pixels, multiple of 8")
    negative_prompt: str = Field(default="", max_length=2000)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return scheduler_key(value)

    @field_validator("width", "height")
    @classmethod
    def _size(cls, value: int) -> int:
        return _multiple_of_8(value)


class GenerationTemplate(GenerationSettings):
    """A template file: the settings plus the model they are for."""

    name: str = Field(description="the file name without its suffix")
    title: str = Field(default="", max_length=120)
    description: str = Field(default="", max_length=1000)
    family: ModelFamily
    base_model: str = Field(min_length=1, max_length=500, description="hub id, folder, or a name in the models folder")
    lora_strength: float = Field(default=0.8, ge=-2.0, le=2.0, description="strength of a LoRA when none is given")
    batch_size: int | None = Field(default=None, ge=1, le=64, description="images per GPU batch")

    @field_validator("base_model", mode="before")
    @classmethod
    def _base_model_given(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("missing base model: name a hub id, a local folder or a model in the models folder")
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fits_the_family(self) -> GenerationTemplate:
        check_settings_for_family(self, self.family)
        return self

    @property
    def label(self) -> str:
        return self.title or self.name

    def settings(self) -> GenerationSettings:
        return GenerationSettings(**{name: getattr(self, name) for name in GenerationSettings.model_fields})


def schedulers_for(family: str) -> list[str]:
    """The scheduler keys a family can sample with (the flow families: their flow-matching Euler only)."""
    flow = family_spec(family).objective == "flow"
    return [key for key in SCHEDULERS if (key in FLOW_SCHEDULERS) == flow]


def check_settings_for_family(settings: GenerationSettings, family: str) -> None:
    """ValueError when settings cannot run on the family: a sampler of the other objective, or a side
    that is not a multiple of the family's latent grid (16 px for the DiTs: VAE × 2×2 patches)."""
    spec = family_spec(family)
    if settings.scheduler not in schedulers_for(family):
        allowed = schedulers_for(family)
        raise ValueError(f"{spec.label} cannot sample with {SCHEDULERS[settings.scheduler]}; use one of: "
                         f"{', '.join(SCHEDULERS[key] for key in allowed)}")
    for side in (settings.width, settings.height):
        if side % spec.latent_multiple:
            raise ValueError(f"{side} px is not a multiple of {spec.latent_multiple} ({spec.label}'s latent grid)")


class TemplateError(InvalidInput):
    """A template file that cannot be used; the message names the file and the fault."""


@dataclass(frozen=True)
class TemplateCatalogue:
    templates: dict[str, GenerationTemplate]
    errors: dict[str, str]  # file name → why it was refused


def templates_dir() -> Path:
    return get_settings().templates_dir


def _read_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def parse_template(path: Path) -> GenerationTemplate:
    """One template file, validated; raises TemplateError naming the file and the field at fault."""
    name = path.stem
    if not _NAME.match(name):
        raise TemplateError(f"{path.name}: the file name must be lower case letters, digits, '.', '_' or '-'")
    try:
        data = _read_file(path)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        raise TemplateError(f"{path.name}: cannot read it: {error}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path.name}: a template is a mapping of fields (name: value), not {type(data).__name__}")
    if data.get("name", name) != name:
        raise TemplateError(f"{path.name}: its name {data['name']!r} differs from the file name {name!r}")
    try:
        return GenerationTemplate.model_validate({**data, "name": name})
    except ValidationError as error:
        raise TemplateError(f"{path.name}: {describe_validation_error(error)}") from None


def load_templates(directory: Path | None = None) -> TemplateCatalogue:
    """Every template in the folder; broken files are listed in ``errors`` instead."""
    directory = directory or templates_dir()
    templates: dict[str, GenerationTemplate] = {}
    errors: dict[str, str] = {}
    paths = sorted(p for p in directory.glob("*") if p.suffix in TEMPLATE_SUFFIXES) if directory.is_dir() else []
    for path in paths:
        try:
            template = parse_template(path)
        except TemplateError as error:
            errors[path.name] = str(error)
            continue
        if template.name in templates:
            errors[path.name] = f"{path.name}: another file already defines the template {template.name!r}"
            continue
        templates[template.name] = template
    return TemplateCatalogue(templates=templates, errors=errors)


def list_templates() -> list[GenerationTemplate]:
    return list(load_templates().templates.values())


def get_template(name: str) -> GenerationTemplate:
    catalogue = load_templates()
    if name in catalogue.templates:
        return catalogue.templates[name]
    for file_name, error in catalogue.errors.items():
        if Path(file_name).stem == name:
            raise TemplateError(error)
    known = ", ".join(sorted(catalogue.templates)) or "none"
    raise NotFound(f"no generation template {name!r} in {templates_dir()}; known templates: {known}")


def default_template(family: str | None = None) -> GenerationTemplate:
    """The template to start from: ``<family>-lora`` when it exists, else the first of that family. With no family
    (no LoRA to follow), SD 1.5's: the studio's default family, not whichever template sorts first (a 4B DiT)."""
    templates = list_templates()
    if not templates:
        raise NotFound(f"no generation templates in {templates_dir()}")
    if family is None:
        return next((t for t in templates if t.name == f"{DEFAULT_FAMILY}-lora"), templates[0])
    preferred = [t for t in templates if t.name == f"{family}-lora"] + [t for t in templates if t.family == family]
    if not preferred:
        raise NotFound(f"no generation template for {FAMILIES.get(family, family)} in {templates_dir()}")
    return preferred[0]
