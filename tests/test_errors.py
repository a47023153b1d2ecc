"""The typed errors' rules: a missing thing the input names is bad input naming its field (HTTP 422),
still a NotFound for callers that only ask whether it is there."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput, MissingReference, NotFound, referenced_by


def test_a_not_found_inside_referenced_by_names_the_field_and_is_both_kinds_of_error():
    with pytest.raises(MissingReference) as raised, referenced_by("dataset_id"):
        raise NotFound("dataset 7 does not exist")
    assert str(raised.value) == "dataset_id: dataset 7 does not exist"
    assert isinstance(raised.value, InvalidInput) and isinstance(raised.value, NotFound)


def test_a_wider_net_keeps_the_narrower_field_name():
    with pytest.raises(MissingReference, match=r"^dataset_id: dataset 7"), referenced_by("payload"), \
            referenced_by("dataset_id"):
        raise NotFound("dataset 7 does not exist")
    with pytest.raises(MissingReference, match=r"^payload: job 'ab' does not exist"), referenced_by("payload"):
        raise NotFound("job 'ab' does not exist")


def test_other_errors_pass_through_unchanged():
    with pytest.raises(InvalidInput, match=r"^no images$"), referenced_by("dataset_id"):
        raise InvalidInput("no images")
