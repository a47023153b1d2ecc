"""Caption editing and bulk operations: the preview counts exactly what the edit changes."""

from __future__ import annotations

import pytest

from core.datasets import captions, datasets
from core.errors import InvalidInput
from tests.factories import image_bytes

CAPTIONS = ["ohwx woman in a red dress", "a woman  in a Red hat", "", "ohwx woman, red car\nat night"]


@pytest.fixture
def captioned(studio):
    dataset = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=60 + i)) for i in range(len(CAPTIONS))])
    images = datasets.all_images(dataset.id)
    for image, text in zip(images, CAPTIONS, strict=True):
        captions.save_caption(image.id, text)
    return dataset, [i.id for i in images]


def _captions(dataset_id: int) -> list[str]:
    return [i.caption for i in datasets.all_images(dataset_id)]


@pytest.mark.parametrize("fields,expected", [
    ({"operation": "replace", "find": "red", "replace": "blue"},
     ["ohwx woman in a blue dress", "a woman in a Red hat", "", "ohwx woman, blue car at night"]),
    ({"operation": "replace", "find": "red", "replace": "blue", "case_sensitive": False},
     ["ohwx woman in a blue dress", "a woman in a blue hat", "", "ohwx woman, blue car at night"]),
    ({"operation": "regex", "find": r"\b(red|Red) (\w+)", "replace": r"\2 in \1"},
     ["ohwx woman in a dress in red", "a woman in a hat in Red", "", "ohwx woman, car in red at night"]),
    ({"operation": "prefix", "text": "photo,"},
     ["photo, ohwx woman in a red dress", "photo, a woman in a Red hat", "photo",
      "photo, ohwx woman, red car at night"]),
    ({"operation": "suffix", "text": ", 8k"},
     ["ohwx woman in a red dress, 8k", "a woman in a Red hat, 8k", "8k", "ohwx woman, red car at night, 8k"]),
    ({"operation": "trigger", "text": "ohwx woman"},
     ["ohwx woman in a red dress", "ohwx woman, a woman in a Red hat", "ohwx woman", "ohwx woman, red car at night"]),
    ({"operation": "lower"}, ["ohwx woman in a red dress", "a woman in a red hat", "", "ohwx woman, red car at night"]),
])
def test_bulk_edit_preview_matches_what_apply_changes(captioned, fields, expected):
    dataset, _ = captioned
    edit = captions.make_bulk_edit(**fields)
    before = _captions(dataset.id)
    preview = captions.preview_bulk_edit(dataset.id, edit)
    changed = captions.apply_bulk_edit(dataset.id, edit)
    after = _captions(dataset.id)
    assert after == expected
    assert preview.changed == changed == sum(b != a for b, a in zip(before, after, strict=True))
    assert preview.total == 4


def test_bulk_edit_on_a_selection_leaves_the_rest_alone(captioned):
    dataset, ids = captioned
    edit = captions.make_bulk_edit(operation="replace", find="woman", replace="person")
    assert captions.apply_bulk_edit(dataset.id, edit, ids[:1]) == 1
    assert _captions(dataset.id)[0] == "ohwx person in a red dress"
    assert "woman" in _captions(dataset.id)[1]


@pytest.mark.parametrize("fields,message", [
    ({"operation": "regex", "find": "(unclosed"}, "not a valid regular expression"),
    ({"operation": "replace", "find": ""}, "enter the text to find"),
    ({"operation": "prefix", "text": "  "}, "enter the text to add"),
    ({"operation": "delete-everything"}, "operation"),
])
def test_invalid_bulk_edits_are_refused_with_a_clear_message(captioned, fields, message):
    with pytest.raises(InvalidInput, match=message):
        captions.make_bulk_edit(**fields)


def test_a_regex_that_backtracks_forever_is_stopped_and_changes_nothing(captioned, monkeypatch):
    dataset, ids = captioned
    captions.save_caption(ids[0], "a" * 40 + "!")  # (a|aa)+$ needs ~fib(40) steps to fail on it
    before = _captions(dataset.id)
    monkeypatch.setattr(captions, "REGEX_BUDGET_S", 0.3)
    edit = captions.make_bulk_edit(operation="regex", find="(a|aa)+$", replace="x")
    with pytest.raises(InvalidInput, match=r"took over 0\.3 s"):  # `re` would still be searching
        captions.preview_bulk_edit(dataset.id, edit)
    with pytest.raises(InvalidInput, match=r"took over 0\.3 s"):
        captions.apply_bulk_edit(dataset.id, edit)
    assert _captions(dataset.id) == before


def test_a_replacement_naming_a_missing_group_is_refused_and_changes_nothing(captioned):
    dataset, _ = captioned
    before = _captions(dataset.id)
    edit = captions.make_bulk_edit(operation="regex", find=r"(red)", replace=r"\2")
    with pytest.raises(InvalidInput, match="replace: invalid group reference"):
        captions.apply_bulk_edit(dataset.id, edit)
    assert _captions(dataset.id) == before


def test_saving_a_caption_cleans_it_and_marks_it_manual_and_reviewed(captioned):
    dataset, ids = captioned
    saved = captions.save_caption(ids[2], "  <script>alert(1)</script>\n new  line ", reviewed=True)
    assert saved.caption == "<script>alert(1)</script> new line"
    assert saved.caption_source == "manual" and saved.reviewed
    assert [i.id for i in datasets.list_images(dataset.id, which="unreviewed").items] == [ids[0], ids[1], ids[3]]
    assert datasets.list_images(dataset.id, which="missing").total == 0


def test_compose_caption_adds_the_trigger_once_with_prefix_and_suffix():
    assert captions.compose_caption("a woman on a beach", trigger_word="ohwx woman", prefix="photo of",
                                    suffix="golden hour") == "ohwx woman, photo of a woman on a beach golden hour"
    assert captions.compose_caption("ohwx woman smiling", trigger_word="ohwx woman") == "ohwx woman smiling"
    assert captions.compose_caption("smiling", trigger_word="ohwx", prepend_trigger=False) == "smiling"
