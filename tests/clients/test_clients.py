"""The GraphQL clients front-ends really use, run in node against a real ``creditgate serve``
in development and in production mode (docs/clients.md).

The clients come from the npm registry at the versions pinned in ``package-lock.json``
(``npm ci`` runs here when ``node_modules`` is missing or older than the lock file).
``scenarios.mjs`` drives them and reports what they sent and got; the rules are asserted
here, one test each.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from app.auth import issue_token
from graphql_schema.engine.trusted_documents import document_hash
from tests.conftest import JWT_SECRET
from tests.processes import GatewayProcess, Gateways

pytestmark = pytest.mark.slow

CLIENTS = Path(__file__).parent
ORIGIN = "https://editor.example.com"
NODE_TIMEOUT_SECONDS = 120
MODES = ["development", "production"]
REDIS_URL = os.environ.get("CREDITGATE_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned clients, installed by ``npm ci`` when missing or older than the lock."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.fail("the client suite needs node (v20+) and npm on PATH")
    installed = CLIENTS / "node_modules" / ".package-lock.json"
    lock = CLIENTS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENTS,
            check=True,
            timeout=600,
        )
    return CLIENTS / "node_modules"


@dataclass
class Served:
    gateway: GatewayProcess
    mode: str

    @property
    def url(self) -> str:
        return self.gateway.url

    def new_account(self) -> str:
        """A PRO account, made over HTTP with a service token as the back office does."""
        service = {"authorization": f"Bearer {token(None)}"}
        with httpx.Client(base_url=self.gateway.base_url, headers=service, timeout=30) as http:
            created = http.post(
                "/graphql",
                json={
                    "query": "mutation($e: String!) { createAccount(input: {email: $e}) { id } }",
                    "variables": {"e": f"client-{os.urandom(6).hex()}@example.com"},
                },
            ).json()
            account_id: str = created["data"]["createAccount"]["id"]
            started = http.post(
                "/graphql",
                json={
                    "query": "mutation($id: ID!) { startSubscription(input: {accountId: $id,"
                    " plan: PRO, interval: MONTHLY}) { id } }",
                    "variables": {"id": account_id},
                },
            ).json()
            assert "errors" not in started, started
        return account_id


def token(account_id: str | None, seconds: int = 3600) -> str:
    role: Literal["user", "service"] = "user" if account_id else "service"
    now = datetime.now(UTC)
    return issue_token(
        JWT_SECRET, role=role, account_id=account_id, now=now, ttl=timedelta(seconds=seconds)
    )


def start(gateways: Gateways, mode: str, **env: str) -> GatewayProcess:
    settings = {"CREDITGATE_ENV": mode, "CREDITGATE_CORS_ORIGINS": ORIGIN, **env}
    return asyncio.run(gateways.start(env=settings))


@pytest.fixture(scope="module", params=MODES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, node_modules: Path
) -> Iterator[Served]:
    """One ``creditgate serve`` per mode for the module, on a SQLite file of its own."""
    mode: str = request.param
    workdir = tmp_path_factory.mktemp(f"clients-{mode}")
    database_url = f"sqlite+aiosqlite:///{workdir / 'creditgate.sqlite3'}"
    with Gateways(database_url, JWT_SECRET, workdir) as gateways:
        yield Served(start(gateways, mode), mode)
        assert gateways.errors() == {}


def run_scenario(name: str, served: Served, **config: Any) -> Any:
    """Run one scenario of scenarios.mjs; its JSON report."""
    settings = {
        "url": served.url,
        "wsUrl": f"ws://{served.gateway.address}/graphql",
        "secret": JWT_SECRET,
        "origin": ORIGIN,
        **config,
    }
    env = {**os.environ, "CREDITGATE_CLIENT_CONFIG": json.dumps(settings)}
    completed = subprocess.run(
        ["node", str(CLIENTS / "scenarios.mjs"), name],
        cwd=CLIENTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, (
        f"{name} failed:\n{completed.stderr}\n--- {served.gateway.name} ---\n"
        f"{served.gateway.log_tail()}"
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def methods(requests: list[dict[str, Any]]) -> list[str]:
    return [r["method"] for r in requests]


# --- the platform's operations through each client ---


def test_apollo_client_runs_the_editor_dashboard_and_mobile_operations(served: Served) -> None:
    account_id = served.new_account()

    report = run_scenario("apollo", served, accountId=account_id)

    assert report["editor"]["id"] == account_id
    assert report["dashboard"]["subscription"]["plan"] == "PRO"
    assert report["packs"] > 0
    assert report["run"]["__typename"] == "GeneratorRun"
    assert report["buy"]  # a member of PurchasePackResult, whatever the payment flow
    assert report["after"]["creditsTotal"] == report["run"]["account"]["creditsTotal"]
    # Apollo asks for graphql-response+json first and gets it
    assert {r["contentType"] for r in report["requests"]} == {
        "application/graphql-response+json; charset=utf-8"
    }
    # a request error (400) reaches the app as a GraphQL error with its code
    assert report["refused"] == {"kind": "graphql", "codes": ["BAD_USER_INPUT"]}


def test_urql_sends_queries_over_get_and_they_are_answered_in_every_mode(
    served: Served,
) -> None:
    account_id = served.new_account()

    report = run_scenario("urql", served, accountId=account_id)

    assert report["errors"] == [None, None, None, None]
    assert report["editor"]["id"] == account_id
    assert report["dashboard"]["subscription"]["plan"] == "PRO"
    assert report["run"]["__typename"] == "GeneratorRun"
    assert report["after"]["creditsTotal"] == report["run"]["account"]["creditsTotal"]
    # queries over GET (urql's default), the mutation over POST
    assert methods(report["requests"]) == ["GET", "GET", "POST", "GET", "GET"]
    assert {r["status"] for r in report["requests"][:4]} == {200}
    # a request error is a GraphQL error for urql, not a network error
    assert report["refused"] == {"network": None, "codes": ["BAD_USER_INPUT"]}


@pytest.mark.parametrize("client", ["apollo", "urql"])
def test_the_readme_set_up_reads_mutates_and_follows_the_live_total(
    served: Served, client: str
) -> None:
    account_id = served.new_account()

    report = run_scenario(f"readme-{client}", served, accountId=account_id)

    assert report["editor"]["id"] == account_id
    assert report["run"]["__typename"] == "GeneratorRun"
    live = report["live"]
    assert (live["id"], live["creditsTotal"]) == (
        account_id,
        report["run"]["account"]["creditsTotal"],
    )
    # persisted queries on: the query went first as a hash alone over GET
    assert report["requests"][0]["method"] == "GET" and report["requests"][0]["hashOnly"]


# --- automatic persisted queries ---


def test_apollo_persisted_queries_cost_one_request_on_repeat(served: Served) -> None:
    # under names of their own: texts no other test of this server registered
    nonce = os.urandom(4).hex()
    report = run_scenario("apollo-apq", served, accountId=served.new_account(), nonce=nonce)
    requests = report["requests"]

    # hash only over GET -> PERSISTED_QUERY_NOT_FOUND -> hash and text over POST
    assert methods(requests["registering"]) == ["GET", "POST"]
    assert requests["registering"][0]["hashOnly"] and not requests["registering"][1]["hashOnly"]
    # then one GET with the hash alone, for this client and for a new one
    assert [(r["method"], r["hashOnly"]) for r in requests["repeat"]] == [("GET", True)]
    assert [(r["method"], r["hashOnly"]) for r in requests["anotherClient"]] == [("GET", True)]
    assert report["dashboard"]["subscription"]["plan"] == "PRO"
    # mutations: POSTed, registered once, then one request
    assert methods(requests["mutationFirst"]) == ["POST", "POST"]
    assert [(r["method"], r["hashOnly"]) for r in requests["mutationAgain"]] == [("POST", True)]
    assert report["run"]["__typename"] == "GeneratorRun"


@pytest.mark.skipif(not REDIS_URL, reason="needs Redis: set CREDITGATE_TEST_REDIS_URL")
def test_with_redis_a_persisted_query_registered_in_one_process_is_one_request_in_another(
    tmp_path: Path, node_modules: Path
) -> None:
    assert REDIS_URL is not None
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'creditgate.sqlite3'}"
    shared = {
        "CREDITGATE_REDIS_URL": REDIS_URL,
        "CREDITGATE_RATE_LIMIT_KEY_PREFIX": f"clients-{os.urandom(4).hex()}",
    }
    with Gateways(database_url, JWT_SECRET, tmp_path) as gateways:
        first = Served(start(gateways, "production", **shared), "production")
        second = start(gateways, "production", **shared)
        report = run_scenario(
            "apollo-apq",
            first,
            accountId=first.new_account(),
            nonce=os.urandom(4).hex(),
            otherUrl=second.url,
        )

    # registered through the first process; a new client of the second needs one request
    assert methods(report["requests"]["registering"]) == ["GET", "POST"]
    assert [(r["method"], r["hashOnly"]) for r in report["requests"]["anotherClient"]] == [
        ("GET", True)
    ]


def test_urql_persisted_queries_cost_one_request_on_repeat(served: Served) -> None:
    nonce = os.urandom(4).hex()
    report = run_scenario("urql-apq", served, accountId=served.new_account(), nonce=nonce)
    requests = report["requests"]

    assert report["error"] is None
    assert len(requests["registering"]) == 2
    assert requests["registering"][0]["hashOnly"]
    assert [(r["method"], r["hashOnly"]) for r in requests["repeat"]] == [("GET", True)]
    assert [(r["method"], r["hashOnly"]) for r in requests["anotherClient"]] == [("GET", True)]
    assert report["editor"]["creditsTotal"] > 0


# --- trusted-only mode with the manifest the client's own tooling wrote ---


@pytest.fixture(scope="module")
def client_manifest(tmp_path_factory: pytest.TempPathFactory, node_modules: Path) -> Path:
    """What a front-end's build runs: Apollo's generate-persisted-query-manifest over its
    operations, then ``creditgate trusted-documents`` over that manifest."""
    folder = tmp_path_factory.mktemp("manifest")
    generated = folder / "persisted-query-manifest.json"
    config = folder / "persisted-query-manifest.config.json"
    config.write_text(
        json.dumps({"documents": ["operations/**/*.graphql"], "output": str(generated)})
    )
    cli = node_modules / "@apollo" / "generate-persisted-query-manifest" / "cli.js"
    subprocess.run(
        ["node", str(cli), "--config", str(config)],
        cwd=CLIENTS,
        check=True,
        capture_output=True,
        timeout=NODE_TIMEOUT_SECONDS,
    )
    trusted = folder / "trusted-documents.json"
    subprocess.run(
        [sys.executable, "-m", "app.cli", "trusted-documents", str(generated), "-o", str(trusted)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return trusted


def test_a_manifest_of_the_graphql_files_is_not_what_clients_send(client_manifest: Path) -> None:
    # Apollo adds __typename before hashing: the files' own text hashes to other ids.
    from_clients = {op["id"] for op in json.loads(client_manifest.read_text())["operations"]}
    from_files = {
        document_hash(path.read_text().strip()) for path in (CLIENTS / "operations").iterdir()
    }

    assert len(from_clients) == len(from_files) == 5
    assert from_clients.isdisjoint(from_files)


@pytest.fixture(scope="module", params=MODES)
def trusted_only(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    client_manifest: Path,
) -> Iterator[Served]:
    mode: str = request.param
    workdir = tmp_path_factory.mktemp(f"trusted-{mode}")
    database_url = f"sqlite+aiosqlite:///{workdir / 'creditgate.sqlite3'}"
    with Gateways(database_url, JWT_SECRET, workdir) as gateways:
        gateway = start(
            gateways,
            mode,
            CREDITGATE_TRUSTED_DOCUMENTS_FILE=str(client_manifest),
            CREDITGATE_TRUSTED_DOCUMENTS_ONLY="true",
        )
        yield Served(gateway, mode)


def test_trusted_only_accepts_the_ids_of_the_client_generated_manifest(
    trusted_only: Served, client_manifest: Path
) -> None:
    account_id = trusted_only.new_account()  # a service token may still send any document

    report = run_scenario(
        "trusted", trusted_only, accountId=account_id, manifest=str(client_manifest)
    )

    assert report["editor"]["id"] == account_id
    assert report["dashboard"]["subscription"]["plan"] == "PRO"
    assert report["run"]["__typename"] == "GeneratorRun"
    # one request each, by id alone; a document outside the list is refused
    assert [(r["status"], r["hashOnly"]) for r in report["requests"]] == [(200, True)] * 3
    assert report["free"] == {"kind": "graphql", "codes": ["PERSISTED_QUERY_NOT_IN_LIST"]}


# --- batching ---


def test_apollo_batch_http_link_sends_one_array_and_gets_every_answer(served: Served) -> None:
    account_id = served.new_account()

    report = run_scenario("batch", served, accountId=account_id)

    assert [(r["batch"], r["size"]) for r in report["threeRequests"]] == [(True, 3)]
    assert [(r["batch"], r["size"]) for r in report["tenRequests"]] == [(True, 10)]
    assert report["editor"]["id"] == account_id and report["packs"] > 0
    assert report["runs"] == ["GeneratorRun"] * 10
    assert report["eleven"]["status"] == 400
    assert report["eleven"]["body"]["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"


# --- websocket subscriptions and token expiry ---


def test_a_live_total_outliving_its_token_closes_4403_and_graphql_ws_reconnects(
    served: Served,
) -> None:
    report = run_scenario("subscription", served, accountId=served.new_account())

    assert 4403 in report["closes"]
    assert report["connections"] >= 2
    assert report["tokensIssued"] >= 2  # connectionParams was asked again: a fresh token
    first, *_, last = report["values"]
    assert first["connection"] == 1 and last["connection"] >= 2
    assert first["total"] == last["total"] > 0
    assert not any(value.get("completed") for value in report["values"])


# --- CORS ---


def test_a_cors_preflight_with_tracing_headers_is_allowed_and_the_request_served(
    served: Served,
) -> None:
    report = run_scenario("cors", served, accountId=served.new_account())

    preflight = report["preflight"]
    assert preflight["status"] == 200
    assert preflight["allowOrigin"] == ORIGIN
    allowed = {name.strip() for name in preflight["allowHeaders"].split(",")}
    assert set(report["asked"]) <= allowed
    sent = report["requests"][0]["headers"]
    assert {"traceparent", "apollographql-client-name", "apollographql-client-version"} <= set(sent)
    assert report["editor"]["creditsTotal"] > 0


# --- the GraphQL-over-HTTP audits ---


# The audits that send an introspection query (`__type(name: $name)`): production refuses it.
INTROSPECTING_AUDITS = {"28B9", "2EA1", "6A70", "D6D5"}


def audit(served: Served, capsys: pytest.CaptureFixture[str], label: str) -> list[Any]:
    """The audit results, their counts printed (MUST/SHOULD/MAY passed and failed)."""
    results: list[Any] = run_scenario("audit", served)["results"]
    counts = Counter(
        (r["name"].split()[0], "passed" if r["status"] == "ok" else "failed") for r in results
    )
    unmet = sorted(f"{r['id']} {r['name']}: {r['reason']}" for r in results if r["status"] != "ok")
    with capsys.disabled():
        print(
            f"\ngraphql-http serverAudits, {label}: "
            + ", ".join(f"{level} {state} {n}" for (level, state), n in sorted(counts.items()))
            + "".join(f"\n  not met: {line}" for line in unmet)
        )
    assert counts["MUST", "passed"] > 0
    return results


def not_met(results: list[Any], level: str = "") -> set[str]:
    return {r["id"] for r in results if r["status"] != "ok" and r["name"].startswith(level)}


def test_graphql_http_server_audits_pass_every_must_with_the_defaults_of_each_mode(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    results = audit(served, capsys, served.mode)

    if served.mode == "development":
        assert not_met(results) == set()
    else:
        # production refuses introspection: only the audits that introspect are not met
        assert not_met(results) == INTROSPECTING_AUDITS
        assert not_met(results, "MUST") == {"28B9"}


def test_graphql_http_server_audits_pass_everything_in_production_with_introspection(
    tmp_path: Path, node_modules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'creditgate.sqlite3'}"
    with Gateways(database_url, JWT_SECRET, tmp_path) as gateways:
        gateway = start(gateways, "production", CREDITGATE_INTROSPECTION="true")
        results = audit(Served(gateway, "production"), capsys, "production, introspection on")

    assert not_met(results) == set()
