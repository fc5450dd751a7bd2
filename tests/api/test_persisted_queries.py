"""Automatic persisted queries as Apollo and urql speak them, and the clients' manifests."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from graphql_schema.engine.trusted_documents import document_hash
from tests.api_client import Api
from tests.conftest import ApiFactory

REDIS_URL = os.environ.get("CREDITGATE_TEST_REDIS_URL")
# What Apollo sends for a `query Plans { plans { plan } }` in the editor: __typename added.
PLANS = "query Plans {\n  plans {\n    plan\n    __typename\n  }\n}"
TARIFFS = "query Tariffs { tariffs { tool credits } }"


def hash_only(body: str) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_hash(body)}}}


def with_text(body: str) -> dict[str, Any]:
    return {"query": body, **hash_only(body)}


async def post(api: Api, payload: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post("/graphql", json=payload)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def get(api: Api, payload: dict[str, Any]) -> dict[str, Any]:
    params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in payload.items()}
    response = await api.client.get("/graphql", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or [{}]
    return errors[0].get("extensions", {}).get("code")


@pytest.mark.parametrize("send", [post, get], ids=["POST", "GET"])
async def test_a_hash_is_not_found_then_registered_with_its_text_then_enough_alone(
    api: Api, send: Any
) -> None:
    unknown = await send(api, hash_only(PLANS))
    registered = await send(api, with_text(PLANS))
    repeated = await send(api, hash_only(PLANS))

    assert code(unknown) == "PERSISTED_QUERY_NOT_FOUND"
    assert unknown["errors"][0]["message"] == "PersistedQueryNotFound"  # urql matches on it
    assert registered["data"]["plans"]
    assert repeated == registered


async def test_a_text_registered_over_post_answers_its_hash_over_get(api: Api) -> None:
    await post(api, with_text(TARIFFS))

    assert (await get(api, hash_only(TARIFFS)))["data"]["tariffs"]


async def test_a_text_that_is_not_the_hashs_is_refused_and_not_registered(api: Api) -> None:
    forged = {"query": TARIFFS, **hash_only(PLANS)}

    refused = await post(api, forged)

    assert code(refused) == "BAD_USER_INPUT"
    assert code(await post(api, hash_only(PLANS))) == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    ["query Broken { plans { ", "query Unknown { plans { colour } }"],
    ids=["syntax", "field"],
)
async def test_a_document_that_fails_to_parse_or_validate_is_not_registered(
    api: Api, body: str
) -> None:
    refused = await post(api, with_text(body))

    assert refused["data"] is None
    assert code(await post(api, hash_only(body))) == "PERSISTED_QUERY_NOT_FOUND"


async def test_the_in_process_store_is_bounded_by_entries(make_api: ApiFactory) -> None:
    small = await make_api(apq_cache_size=2)
    bodies = [f"query Q{i} {{ plans {{ plan }} }}" for i in range(3)]
    for body in bodies:
        await post(small, with_text(body))

    # the oldest was evicted; the two newest still answer their hash
    assert code(await post(small, hash_only(bodies[0]))) == "PERSISTED_QUERY_NOT_FOUND"
    assert (await post(small, hash_only(bodies[1])))["data"]
    assert (await post(small, hash_only(bodies[2])))["data"]


async def test_turned_off_nothing_is_registered(make_api: ApiFactory) -> None:
    off = await make_api(apq_enabled=False)

    assert (await post(off, with_text(PLANS)))["data"]["plans"]
    assert code(await post(off, hash_only(PLANS))) == "PERSISTED_QUERY_NOT_FOUND"


async def test_in_trusted_only_mode_nothing_is_registered(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    manifest = tmp_path / "trusted.json"
    manifest.write_text(json.dumps({document_hash(TARIFFS): TARIFFS}))
    trusted_only = await make_api(trusted_documents_file=manifest, trusted_documents_only=True)

    refused = await post(trusted_only, with_text(PLANS))

    assert code(refused) == "PERSISTED_QUERY_NOT_IN_LIST"
    assert code(await post(trusted_only, hash_only(PLANS))) == "PERSISTED_QUERY_NOT_FOUND"
    assert (await post(trusted_only, hash_only(TARIFFS)))["data"]["tariffs"]


@pytest.mark.skipif(not REDIS_URL, reason="needs Redis: set CREDITGATE_TEST_REDIS_URL")
async def test_with_redis_a_text_registered_in_one_process_serves_every_process(
    make_api: ApiFactory,
) -> None:
    prefix = f"apq-test-{uuid.uuid4().hex[:8]}"
    first = await make_api(redis_url=REDIS_URL, rate_limit_key_prefix=prefix)
    second = await make_api(redis_url=REDIS_URL, rate_limit_key_prefix=prefix)
    apart = await make_api(rate_limit_key_prefix=prefix)  # no Redis: its own store

    await post(first, with_text(PLANS))

    assert (await post(second, hash_only(PLANS)))["data"]["plans"]
    assert code(await post(apart, hash_only(PLANS))) == "PERSISTED_QUERY_NOT_FOUND"


async def test_with_redis_down_the_text_is_served_and_the_hash_alone_not_found(
    make_api: ApiFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.processes import free_port

    unreachable = await make_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    served = await post(unreachable, with_text(PLANS))
    unknown = await post(unreachable, hash_only(PLANS))

    assert served["data"]["plans"]
    assert code(unknown) == "PERSISTED_QUERY_NOT_FOUND"
    assert "persisted quer" in caplog.text


# --- the clients' own manifests ---


def codegen_manifest(tmp_path: Path, bodies: list[str], digest: Any = document_hash) -> Path:
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps({digest(body): body for body in bodies}))
    return path


def apollo_manifest(tmp_path: Path, bodies: dict[str, str]) -> Path:
    path = tmp_path / "persisted-query-manifest.json"
    operations = [
        {"id": document_hash(body), "name": name, "type": "query", "body": body}
        for name, body in bodies.items()
    ]
    path.write_text(
        json.dumps(
            {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
        )
    )
    return path


@pytest.mark.parametrize("kind", ["apollo", "codegen"])
def test_the_cli_accepts_a_client_manifest_and_keeps_its_texts_byte_for_byte(
    tmp_path: Path, kind: str
) -> None:
    source = (
        apollo_manifest(tmp_path, {"Plans": PLANS, "Tariffs": TARIFFS})
        if kind == "apollo"
        else codegen_manifest(tmp_path, [PLANS, TARIFFS])
    )
    output = tmp_path / "trusted.json"

    assert main(["trusted-documents", str(source), "-o", str(output)]) == 0

    written = json.loads(output.read_text())
    assert written["format"] == "apollo-persisted-query-manifest"
    assert {(op["name"], op["id"], op["body"]) for op in written["operations"]} == {
        ("Plans", document_hash(PLANS), PLANS),
        ("Tariffs", document_hash(TARIFFS), TARIFFS),
    }


def test_the_cli_refuses_a_codegen_manifest_hashed_with_sha1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def sha1(body: str) -> str:
        return hashlib.sha1(body.encode()).hexdigest()

    source = codegen_manifest(tmp_path, [PLANS], digest=sha1)

    assert main(["trusted-documents", str(source)]) == 2
    assert "hashAlgorithm: 'sha256'" in capsys.readouterr().err


def test_the_cli_refuses_a_client_manifest_with_an_operation_the_schema_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = "query Stale { plans { colour } }"
    source = codegen_manifest(tmp_path, [stale])

    assert main(["trusted-documents", str(source)]) == 2
    assert "colour" in capsys.readouterr().err


async def test_a_codegen_manifest_is_served_as_the_trusted_documents_file(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    manifest = codegen_manifest(tmp_path, [PLANS])
    trusted_only = await make_api(trusted_documents_file=manifest, trusted_documents_only=True)

    by_hash = await post(trusted_only, hash_only(PLANS))
    by_document_id = await post(trusted_only, {"documentId": f"sha256:{document_hash(PLANS)}"})
    # the .graphql file's own text (without __typename) is another document
    refused = await post(trusted_only, {"query": "query Plans { plans { plan } }"})

    assert by_hash["data"]["plans"] and by_document_id == by_hash
    assert code(refused) == "PERSISTED_QUERY_NOT_IN_LIST"


async def test_a_document_id_in_a_batch_names_a_trusted_document(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    manifest = codegen_manifest(tmp_path, [PLANS])
    trusted_only = await make_api(trusted_documents_file=manifest, trusted_documents_only=True)

    response = await trusted_only.client.post(
        "/graphql", json=[{"documentId": document_hash(PLANS)}, {"documentId": "0" * 64}]
    )

    found, unknown = response.json()
    assert found["data"]["plans"]
    assert code(unknown) == "PERSISTED_QUERY_NOT_FOUND"
