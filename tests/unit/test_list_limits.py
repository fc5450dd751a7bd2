"""The page size rule the connections' ``first:`` arguments share."""

from __future__ import annotations

import pytest

from graphql_schema.engine.limits import ListLimits, checked_list, page_size
from graphql_schema.errors import ApiError

LIMITS = ListLimits(max_ids=3, max_page_size=50)


def test_first_omitted_is_the_largest_page() -> None:
    assert page_size(None, LIMITS) == 50


@pytest.mark.parametrize("first", [1, 50])
def test_first_within_max_page_size_is_taken_as_is(first: int) -> None:
    assert page_size(first, LIMITS) == first


@pytest.mark.parametrize("first", [-1, 0, 51, 2**31 - 1])
def test_first_outside_one_to_max_page_size_is_bad_input(first: int) -> None:
    with pytest.raises(ApiError) as raised:
        page_size(first, LIMITS)
    assert raised.value.extensions == {"code": "BAD_USER_INPUT", "field": "first"}


def test_a_list_longer_than_its_limit_is_bad_input() -> None:
    assert checked_list(["a", "b", "c"], LIMITS.max_ids, "ids") == ["a", "b", "c"]
    with pytest.raises(ApiError):
        checked_list(["a", "b", "c", "d"], LIMITS.max_ids, "ids")
