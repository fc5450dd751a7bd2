"""Trusted documents: operations sent by sha256 from a manifest built by the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.cli import main
from app.main import create_app
from app.settings import Settings
from graphql_schema.engine.trusted_documents import document_hash
from tests.api_client import Api
from tests.conftest import ApiFactory

ME = "query Me {\n  me { id creditsTotal }\n}"
PLANS = "query Plans { plans { plan monthlyCredits } }"
FREE = "{ me { id } }"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "operations"
    (folder / "account").mkdir(parents=True)
    (folder / "account" / "me.graphql").write_text(ME + "\n")
    (folder / "plans.graphql").write_text(PLANS)
    output = tmp_path / "manifest.json"
    assert main(["trusted-documents", str(folder), "-o", str(output)]) == 0
    return output


@pytest.fixture
async def trusted_only(make_api: ApiFactory, manifest: Path) -> Api:
    return await make_api(trusted_documents_file=manifest, trusted_documents_only=True)


async def post(api: Api, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await api.client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def persisted(body: str) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_hash(body)}}}


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def changed(settings: Settings, **changes: Any) -> Settings:
    return Settings(_env_file=None, **{**settings.model_dump(), **changes})


def test_the_cli_writes_an_apollo_manifest_with_one_entry_per_operation(manifest: Path) -> None:
    written = json.loads(manifest.read_text())

    assert written["format"] == "apollo-persisted-query-manifest"
    assert written["version"] == 1
    assert sorted(written["operations"], key=lambda o: o["name"]) == [
        {"id": document_hash(ME), "name": "Me", "type": "query", "body": ME},
        {"id": document_hash(PLANS), "name": "Plans", "type": "query", "body": PLANS},
    ]


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("query Nope { nope }", "Cannot query field 'nope'"),
        ("{ plans { plan } }", "one named operation"),
        ("query A { plans { plan } } query B { tariffs { tool } }", "one named operation"),
        ("query Broken {", "Syntax Error"),
    ],
)
def test_the_cli_refuses_documents_that_would_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, complaint: str
) -> None:
    (tmp_path / "op.graphql").write_text(document)

    assert main(["trusted-documents", str(tmp_path)]) == 2
    assert complaint in capsys.readouterr().err


async def test_a_user_runs_a_trusted_document_by_its_hash(trusted_only: Api) -> None:
    account_id = await trusted_only.subscribed_account()

    body = await post(trusted_only, persisted(ME), trusted_only.token(account_id))

    assert body["data"]["me"] == {"id": account_id, "creditsTotal": 1000}


async def test_a_document_id_names_a_trusted_document_too(trusted_only: Api) -> None:
    by_prefixed_id = await post(trusted_only, {"documentId": f"sha256:{document_hash(PLANS)}"})
    by_bare_id = await post(trusted_only, {"documentId": document_hash(PLANS)})

    assert by_prefixed_id["data"]["plans"][0] == {"plan": "STARTER", "monthlyCredits": 1000}
    assert by_bare_id == by_prefixed_id


async def test_an_unknown_hash_is_persisted_query_not_found(trusted_only: Api, api: Api) -> None:
    unknown = persisted("query Other { tariffs { tool } }")

    assert code(await post(trusted_only, unknown)) == "PERSISTED_QUERY_NOT_FOUND"
    assert code(await post(trusted_only, {"documentId": "0" * 64})) == "PERSISTED_QUERY_NOT_FOUND"
    # without a manifest every hash is unknown
    assert code(await post(api, unknown)) == "PERSISTED_QUERY_NOT_FOUND"


async def test_free_documents_are_refused_for_users_and_anonymous_callers(
    trusted_only: Api,
) -> None:
    account_id = await trusted_only.create_account()

    as_user = await post(trusted_only, {"query": FREE}, trusted_only.token(account_id))
    anonymous = await post(trusted_only, {"query": "{ plans { plan } }"})

    assert as_user["data"] is None
    assert code(as_user) == "PERSISTED_QUERY_NOT_IN_LIST"
    assert code(anonymous) == "PERSISTED_QUERY_NOT_IN_LIST"


async def test_a_service_token_may_still_send_free_documents(trusted_only: Api) -> None:
    body = await post(trusted_only, {"query": "{ tariffs { tool } }"}, trusted_only.token())

    assert body["data"]["tariffs"]


async def test_the_full_text_of_a_trusted_document_is_accepted(trusted_only: Api) -> None:
    body = await post(trusted_only, {"query": PLANS})

    assert body["data"]["plans"]


async def test_a_hash_that_does_not_match_the_query_is_bad_input(trusted_only: Api) -> None:
    body = await post(trusted_only, {"query": FREE, **persisted(PLANS)}, trusted_only.token())

    assert code(body) == "BAD_USER_INPUT"


async def test_a_persisted_query_of_another_version_is_bad_input(trusted_only: Api) -> None:
    body = await post(
        trusted_only,
        {"extensions": {"persistedQuery": {"version": 2, "sha256Hash": document_hash(PLANS)}}},
    )

    assert code(body) == "BAD_USER_INPUT"


async def test_without_trusted_only_free_documents_run_as_before(
    make_api: ApiFactory, manifest: Path
) -> None:
    api = await make_api(trusted_documents_file=manifest)

    free = await post(api, {"query": "{ plans { plan } }"})
    by_hash = await post(api, persisted(PLANS))

    assert free["data"]["plans"] and by_hash["data"]["plans"]


def test_trusted_only_needs_a_manifest(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="TRUSTED_DOCUMENTS_FILE"):
        changed(settings, trusted_documents_only=True)


def test_a_manifest_whose_ids_are_not_the_bodies_hashes_is_refused(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "manifest.json"
    operation = {"id": "0" * 64, "name": "Plans", "type": "query", "body": PLANS}
    manifest = {"format": "apollo-persisted-query-manifest", "version": 1}
    path.write_text(json.dumps({**manifest, "operations": [operation]}))

    with pytest.raises(ValueError, match="sha256"):
        create_app(changed(settings, trusted_documents_file=path))
