"""The document caches are bounded by bytes as well as entries: large distinct documents
cannot grow the process past CREDITGATE_DOCUMENT_CACHE_BYTES per cache, and small ones
still hit (issue 12, item 9)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from graphql_schema.engine import documents as documents_module
from graphql_schema.engine.documents import Documents, estimated_bytes
from tests.api_client import Api
from tests.conftest import ApiFactory

CACHE_BYTES = 4 * 1024 * 1024
SMALL = "{ plans { plan monthlyCredits } }"


def large_document(number: int) -> str:
    """About 100 KB of text under the token limit: a long comment, then a small query."""
    return "# " + "x" * 100_000 + f"\nquery Large{number} {{ plans {{ plan }} }}"


def documents_of(api: Api) -> Documents:
    app: Any = api.client._transport.app  # type: ignore[attr-defined]
    (route,) = [r for r in app.routes if isinstance(r, Route) and r.path == "/graphql"]
    view: Any = route.endpoint
    found: Documents = view.schema.policy.documents
    return found


@pytest.mark.no_stock_replay
async def test_large_distinct_documents_stay_under_the_byte_bound_and_small_ones_still_hit(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given caches of 4 MiB each, room for about two large documents and many small ones
    api = await make_api(document_cache_bytes=CACHE_BYTES, document_cache_size=256)
    documents = documents_of(api)
    small_validations: list[str] = []
    real_validate = documents_module.validate

    def counting(schema: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        if document.loc.source.body == SMALL:
            small_validations.append("validated")
        return real_validate(schema, document, *args, **kwargs)

    monkeypatch.setattr(documents_module, "validate", counting)

    # when 40 large distinct documents are sent (about 4 MB of text, 64 MB as estimated),
    # with a small document between them
    for number in range(40):
        assert "errors" not in await api.post(large_document(number))
        assert "errors" not in await api.post(SMALL)
        # then the caches never hold more than their bound
        assert documents.bytes <= 2 * CACHE_BYTES

    # and the small document was validated once, then served from the cache
    assert small_validations == ["validated"]
    assert estimated_bytes(large_document(0)) * 40 > 2 * CACHE_BYTES  # the bound did bite


async def test_a_document_larger_than_the_whole_bound_is_served_but_not_kept(
    make_api: ApiFactory,
) -> None:
    api = await make_api(document_cache_bytes=1024 * 1024)
    documents = documents_of(api)

    assert "errors" not in await api.post(large_document(1))

    assert documents.bytes == 0
