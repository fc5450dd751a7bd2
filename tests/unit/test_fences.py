"""The fast paths are fenced: no shortcut past a permission, exact pins, a switch that works."""

from __future__ import annotations

import ast
import logging
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest
import strawberry
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission

from graphql_schema.engine.documents import Documents
from graphql_schema.engine.execution import plain_leaves
from graphql_schema.engine.fences import PINNED, fast_paths_enabled
from graphql_schema.engine.operations import GatewaySchema, OperationPolicy

ROOT = Path(__file__).resolve().parents[2]


class NeverAllowed(BasePermission):
    message = "Nobody may read this."

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


class Shouting(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        return str(next_(source, info, **kwargs)).upper()


@strawberry.type
class Vault:
    label: str
    secret: str | None = strawberry.field(permission_classes=[NeverAllowed])
    required_secret: str = strawberry.field(permission_classes=[NeverAllowed])
    motto: str = strawberry.field(extensions=[Shouting()])


@strawberry.type
class Query:
    @strawberry.field
    def vault(self) -> Vault | None:
        return Vault(label="front door", secret="s3cret", required_secret="s3cret", motto="hush")


def _schema(fast_paths: bool) -> GatewaySchema:
    return GatewaySchema(
        query=Query, policy=OperationPolicy(Documents(maxsize=16)), fast_paths=fast_paths
    )


# A plain document runs from a plan; one with a directive has no plan, so the executor's
# plain-leaf shortcut answers it; with the fast paths off, graphql-core's stock path does.
WAYS = [
    pytest.param(True, "{ vault { label secret motto } }", id="plan"),
    pytest.param(True, "{ vault @include(if: true) { label secret motto } }", id="plain-leaves"),
    pytest.param(False, "{ vault { label secret motto } }", id="stock"),
]


@pytest.mark.parametrize(("fast_paths", "document"), WAYS)
async def test_a_field_whose_permission_denies_is_refused_on_every_path(
    fast_paths: bool, document: str
) -> None:
    result = await _schema(fast_paths).execute(document)

    assert result.data == {"vault": {"label": "front door", "secret": None, "motto": "HUSH"}}
    assert result.errors is not None
    # A permission error has no public code: masked, like any refusal we did not map.
    assert [e.path for e in result.errors] == [["vault", "secret"]]
    assert "s3cret" not in repr(result)


@pytest.mark.parametrize("fast_paths", [True, False])
async def test_a_denied_non_null_field_nulls_its_parent_not_reveals_itself(
    fast_paths: bool,
) -> None:
    result = await _schema(fast_paths).execute("{ vault { label requiredSecret } }")

    assert result.data == {"vault": None}
    assert "s3cret" not in repr(result)


def test_only_basic_fields_qualify_for_the_plain_leaf_shortcut() -> None:
    leaves = plain_leaves(_schema(True)._schema)

    assert ("Vault", "label") in leaves
    assert {("Vault", "secret"), ("Vault", "requiredSecret"), ("Vault", "motto")}.isdisjoint(leaves)


def _dependencies() -> dict[str, str]:
    """Each declared runtime dependency's name (normalised) and its version specifier."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0]
        for separator in ("==", ">=", "<", "~="):
            name = name.split(separator)[0]
        found[name.split("[")[0].strip().lower().replace("_", "-")] = requirement
    return found


def test_the_fenced_libraries_are_pinned_exactly_where_the_fence_reads_them() -> None:
    dependencies = _dependencies()
    constraints = (ROOT / "constraints.txt").read_text().lower().splitlines()

    for name, pinned in PINNED.items():
        assert dependencies[name] == f"{name}=={pinned}"
        assert f"{name}=={pinned}" in constraints


def test_every_package_the_app_imports_is_declared() -> None:
    imported: set[str] = set()
    for package in ("app", "graphql_schema"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"app", "graphql_schema"}
    distributions = packages_distributions()
    declared = set(_dependencies())

    undeclared = {
        module: distributions.get(module)
        for module in third_party
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [])} & declared
    }
    assert undeclared == {}


def test_fast_paths_switch_off_with_one_log_line_at_other_versions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = {**PINNED, "graphql-core": "3.4.0"}

    with caplog.at_level(logging.INFO, logger="creditgate"):
        assert fast_paths_enabled(True, installed=other.get) is False

    (line,) = [r.getMessage() for r in caplog.records]
    assert "graphql-core 3.4.0" in line and "graphql-core 3.3.2" in line


def test_fast_paths_run_at_the_pinned_versions_and_not_when_switched_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="creditgate"):
        assert fast_paths_enabled(True, installed=PINNED.get) is True
        assert caplog.records == []
        assert fast_paths_enabled(False, installed=PINNED.get) is False
    assert "CREDITGATE_QUERY_PLANS=false" in caplog.records[0].getMessage()


def test_the_setting_turns_every_fast_path_off(tmp_path: Path) -> None:
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(
        _env_file=None,
        env="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
        query_plans=False,
    )
    graphql = next(r for r in create_app(settings).routes if getattr(r, "path", "") == "/graphql")
    view: Any = graphql.endpoint  # type: ignore[attr-defined]

    assert view.schema.plans is None
    assert view.schema.execution_context_class.__name__ == "StrawberryGraphQLCoreExecutionContext"
    assert view._fast_paths is False
