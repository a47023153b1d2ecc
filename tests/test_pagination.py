"""Every paginated list in core serves any page number a page input, the API or the CLI hands it:
numbers past the database's integers are clamped (``core.pagination``), never an overflow error."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from core.automation.pipelines import list_pipelines
from core.datasets.datasets import list_datasets, list_images
from core.generation.prompt_library import list_snippets
from core.generation.requests import list_generations
from core.jobs.lifecycle import list_jobs
from core.library.assets import list_assets
from core.library.collections import list_collections
from core.pagination import MAX_CURSOR, MAX_PAGE, clamp, clamp_cursor
from core.publishing.planning import list_plans
from core.training.configs import list_configs
from core.training.runs import list_loras, list_runs
from core.video.requests import list_renders

LISTS: dict[str, Callable[..., Any]] = {
    "jobs": list_jobs, "training runs": list_runs, "generations": list_generations, "renders": list_renders,
    "prompt snippets": list_snippets, "LoRA configs": list_configs, "LoRAs": list_loras,
    "pipelines": list_pipelines, "assets": list_assets, "collections": list_collections,
    "datasets": list_datasets, "content plans": list_plans,
    "dataset images": partial(list_images, 1),  # no such dataset is needed: the query runs all the same
}
HUGE = 10**18


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("name", LISTS)
def test_every_list_serves_a_huge_page_number_as_an_empty_last_allowed_page(studio, name):
    served = LISTS[name](page=HUGE, page_size=HUGE)
    assert served.items == [] and served.page == MAX_PAGE
    first = LISTS[name](page=-HUGE, page_size=-HUGE)
    assert first.page == 1 and first.page_size == 1


def test_clamp_keeps_pages_and_offsets_inside_a_64_bit_integer():
    assert clamp(HUGE, HUGE, max_page_size=200) == (MAX_PAGE, 200)
    assert clamp(-HUGE, 0, max_page_size=200) == (1, 1)
    assert clamp(3, 20, max_page_size=200) == (3, 20)
    assert (MAX_PAGE - 1) * 200 < MAX_CURSOR


def test_clamp_cursor_keeps_a_cursor_inside_a_64_bit_integer():
    assert clamp_cursor(10**30) == MAX_CURSOR == 2**63 - 1
    assert clamp_cursor(-5) == 0
    assert clamp_cursor(12_345) == 12_345
