"""Captions of dataset images: single edits, review marks and bulk operations with a preview.

A bulk edit is a pure function from caption to caption (``BulkEdit.apply``), so the preview
and the real run can never disagree: the preview counts what ``apply_bulk_edit`` would write.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select, update
from sqlmodel import col

from core.datasets.caption_text import clean_caption
from core.datasets.datasets import get_dataset, refresh_dataset_state
from core.db import affected_rows, id_in_range, session_scope
from core.errors import InvalidInput, NotFound, describe_validation_error
from core.models import DatasetImage

BulkOperation = Literal["replace", "regex", "prefix", "suffix", "trigger", "lower", "strip"]
BULK_OPERATIONS: dict[str, str] = {
    "replace": "Find and replace (plain text)",
    "regex": "Find and replace (regular expression)",
    "prefix": "Add a prefix",
    "suffix": "Add a suffix",
    "trigger": "Ensure the trigger word is present",
    "lower": "Lower-case",
    "strip": "Strip and collapse whitespace",
}


def compose_caption(raw: str, *, trigger_word: str = "", prepend_trigger: bool = True, prefix: str = "",
                    suffix: str = "") -> str:
    """The caption written for an image: ``[trigger,] [prefix] raw [suffix]``."""
    body = " ".join(p for p in (prefix.strip(), raw.strip(), suffix.strip()) if p)
    trigger = trigger_word.strip()
    if prepend_trigger and trigger and trigger.lower() not in body.lower():
        body = f"{trigger}, {body}" if body else trigger
    return clean_caption(body)


class BulkEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: BulkOperation
    find: str = Field(default="", max_length=500)
    replace: str = Field(default="", max_length=500)
    text: str = Field(default="", max_length=500)  # prefix, suffix or trigger word
    case_sensitive: bool = True

    @model_validator(mode="after")
    def _check(self) -> BulkEdit:
        if self.operation in ("replace", "regex") and not self.find:
            raise ValueError("find: enter the text to find")
        if self.operation in ("prefix", "suffix", "trigger") and not self.text.strip():
            raise ValueError("text: enter the text to add")
        if self.operation == "regex":
            try:
                regex.compile(self.find)
            except regex.error as error:
                raise ValueError(f"find: not a valid regular expression ({error})") from None
        return self

    def apply(self, caption: str, *, deadline: float | None = None) -> str:
        """The caption after the edit. A regular expression must finish by ``deadline`` (a
        ``time.monotonic()`` value; see REGEX_BUDGET_S), else InvalidInput."""
        match self.operation:
            case "replace":
                if self.case_sensitive:
                    result = caption.replace(self.find, self.replace)
                else:
                    result = re.sub(re.escape(self.find), lambda _: self.replace, caption, flags=re.IGNORECASE)
            case "regex":
                result = self._regex_sub(caption, deadline)
            case "prefix":
                result = f"{self.text.strip()} {caption}" if caption else self.text.strip().rstrip(",;: ")
            case "suffix":
                text = self.text.strip()
                if not caption:
                    result = text.lstrip(",;: ")
                else:  # ", 8k" attaches to the caption; "8k" gets a space
                    result = f"{caption}{'' if text[0] in ',;:.' else ' '}{text}"
            case "trigger":
                result = compose_caption(caption, trigger_word=self.text, prepend_trigger=True)
            case "lower":
                result = caption.lower()
            case "strip":
                result = caption
        return clean_caption(result)

    def _regex_sub(self, caption: str, deadline: float | None) -> str:
        # The `regex` module, not `re`: it can stop a search. A pattern such as (a|aa)+$ backtracks
        # exponentially, and `re` would hold the page (and, on apply, a database transaction) forever.
        remaining = REGEX_BUDGET_S if deadline is None else deadline - time.monotonic()
        try:
            return regex.sub(self.find, self.replace, caption, flags=0 if self.case_sensitive else regex.IGNORECASE,
                             timeout=max(remaining, 0.001))
        except TimeoutError:
            raise InvalidInput(f"find: the regular expression took over {REGEX_BUDGET_S:g} s on these captions; "
                               "simplify it (nothing was changed)") from None
        except regex.error as error:
            raise InvalidInput(f"replace: {error}") from None


REGEX_BUDGET_S = 2.0  # for one preview or apply over a whole dataset's captions


def make_bulk_edit(**fields: object) -> BulkEdit:
    try:
        return BulkEdit.model_validate(fields)
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


@dataclass(frozen=True)
class BulkPreview:
    changed: int
    total: int
    examples: list[tuple[str, str]]  # (before, after), at most a few


def _targets(dataset_id: int, image_ids: Sequence[int] | None) -> list[tuple[int, str]]:
    conditions = [col(DatasetImage.dataset_id) == dataset_id]
    if image_ids is not None:
        conditions.append(col(DatasetImage.id).in_(list(image_ids)))
    with session_scope() as session:
        return [(r.id, r.caption) for r in session.execute(select(col(DatasetImage.id), col(DatasetImage.caption))
                                                           .where(*conditions).order_by(col(DatasetImage.id)))]


def preview_bulk_edit(dataset_id: int, edit: BulkEdit, image_ids: Sequence[int] | None = None) -> BulkPreview:
    """How many captions the edit would change (on the selection, or the whole dataset when None)."""
    get_dataset(dataset_id)
    targets = _targets(dataset_id, image_ids)
    deadline = time.monotonic() + REGEX_BUDGET_S
    changes = [(before, edit.apply(before, deadline=deadline)) for _, before in targets]
    changed = [(b, a) for b, a in changes if a != b]
    return BulkPreview(changed=len(changed), total=len(targets), examples=changed[:5])


def apply_bulk_edit(dataset_id: int, edit: BulkEdit, image_ids: Sequence[int] | None = None) -> int:
    """Applies the edit and returns how many captions changed (the same number the preview showed)."""
    get_dataset(dataset_id)
    changed = 0
    deadline = time.monotonic() + REGEX_BUDGET_S
    with session_scope() as session:  # an edit that fails part-way (InvalidInput) rolls back whole
        for image_id, before in _targets(dataset_id, image_ids):
            after = edit.apply(before, deadline=deadline)
            if after != before:
                session.execute(
                    update(DatasetImage).where(col(DatasetImage.id) == image_id)
                    .values(caption=after, caption_source="bulk")
                )
                changed += 1
    refresh_dataset_state(dataset_id)
    return changed


def save_caption(image_id: int, caption: str, *, reviewed: bool | None = None) -> DatasetImage:
    with session_scope() as session:
        image = session.get(DatasetImage, image_id) if id_in_range(image_id) else None
        if image is None:
            raise NotFound(f"image {image_id} does not exist")
        cleaned = clean_caption(caption)
        if cleaned != image.caption:
            image.caption = cleaned
            image.caption_source = "manual"
        if reviewed is not None:
            image.reviewed = reviewed
    refresh_dataset_state(image.dataset_id)
    return image


def set_reviewed(dataset_id: int, image_ids: Sequence[int], reviewed: bool = True) -> int:
    with session_scope() as session:
        count = affected_rows(session.execute(
            update(DatasetImage)
            .where(col(DatasetImage.dataset_id) == dataset_id, col(DatasetImage.id).in_(list(image_ids)))
            .values(reviewed=reviewed)
        ))
    refresh_dataset_state(dataset_id)
    return count


def write_auto_captions(dataset_id: int, captions: dict[int, str]) -> None:
    """Captions from the captioning job: source 'auto', not reviewed (a person has not looked yet)."""
    with session_scope() as session:
        for image_id, caption in captions.items():
            session.execute(
                update(DatasetImage).where(col(DatasetImage.id) == image_id)
                .values(caption=clean_caption(caption), caption_source="auto", reviewed=False)
            )
    refresh_dataset_state(dataset_id)
