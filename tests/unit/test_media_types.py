"""The response media type is chosen by Accept as the GraphQL-over-HTTP draft asks."""

from __future__ import annotations

import pytest

from graphql_schema.engine.over_http import GRAPHQL_RESPONSE, JSON, media_type_for


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        ("text/html", JSON),  # nothing acceptable: the default, not a 406
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}; charset=utf-8", GRAPHQL_RESPONSE),
        ("Application/GraphQL-Response+JSON", GRAPHQL_RESPONSE),
        # Apollo Client 4
        (f"{GRAPHQL_RESPONSE},application/json;q=0.9", GRAPHQL_RESPONSE),
        # urql 6: both named at the same quality
        (f"{GRAPHQL_RESPONSE}, application/graphql+json, application/json", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", JSON),
        (f"{GRAPHQL_RESPONSE};q=0.5, */*", JSON),
        (f"{GRAPHQL_RESPONSE};q=0, */*", JSON),
        (f"{GRAPHQL_RESPONSE};q=oops, application/json", JSON),
    ],
)
def test_the_media_type_is_the_one_accept_prefers(accept: str | None, chosen: str) -> None:
    assert media_type_for(accept) == chosen
