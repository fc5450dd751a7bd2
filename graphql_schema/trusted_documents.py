"""Trusted documents: operations known ahead of time, sent by their sha256 instead of text.

The manifest is Apollo's persisted-query manifest::

    {"format": "apollo-persisted-query-manifest", "version": 1,
     "operations": [{"id": "<sha256 of body>", "name": "Me", "type": "query", "body": "..."}]}

A client sends ``{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": id}}}`` or
``{"documentId": id}`` (``sha256:`` prefix optional) instead of ``query``. With
``only`` set, a free document is refused unless its text is in the manifest or the caller
holds a service token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphql import GraphQLSchema, OperationDefinitionNode, parse, validate
from strawberry.http import GraphQLRequestData

from graphql_schema.context import Context
from graphql_schema.errors import ApiError, bad_input

MANIFEST_FORMAT = "apollo-persisted-query-manifest"


def document_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def not_found() -> ApiError:
    return ApiError("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")


def not_in_list() -> ApiError:
    return ApiError(
        "Only trusted documents are accepted: send extensions.persistedQuery or documentId.",
        "PERSISTED_QUERY_NOT_IN_LIST",
    )


def with_document_id(payload: Any) -> Any:
    """Carry ``documentId`` as a persistedQuery extension, the one form the view reads on."""
    if not isinstance(payload, dict) or "documentId" not in payload:
        return payload
    extensions = payload.get("extensions")
    extensions = dict(extensions) if isinstance(extensions, dict) else {}
    extensions["persistedQuery"] = {"version": 1, "sha256Hash": payload["documentId"]}
    return {**payload, "extensions": extensions}


class TrustedDocuments:
    def __init__(self, bodies: Mapping[str, str], *, only: bool = False) -> None:
        self._bodies = dict(bodies)
        self.only = only

    @classmethod
    def load(cls, path: Path, *, only: bool) -> TrustedDocuments:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != 1:
            raise ValueError(f"{path}: not an {MANIFEST_FORMAT} version 1")
        bodies = {}
        for operation in manifest["operations"]:
            body = operation["body"]
            if operation["id"] != document_hash(body):
                raise ValueError(f"{path}: id of {operation.get('name')} is not the body's sha256")
            bodies[operation["id"]] = body
        return cls(bodies, only=only)

    def __len__(self) -> int:
        return len(self._bodies)

    def admit(self, data: GraphQLRequestData, context: Context) -> GraphQLRequestData:
        """The request with its document filled in from the manifest, or an ApiError."""
        persisted = (data.extensions or {}).get("persistedQuery")
        if persisted is not None:
            digest = _sha256_of(persisted)
            if data.query is None:
                body = self._bodies.get(digest)
                if body is None:
                    raise not_found()
                return dataclasses.replace(data, query=body)
            if document_hash(data.query) != digest:
                raise bad_input("persistedQuery.sha256Hash is not the sha256 of query.")
        if not self.only or (data.query and document_hash(data.query) in self._bodies):
            return data
        principal = context.principal
        if principal is not None and principal.is_service:
            return data
        raise not_in_list()


def _sha256_of(persisted: object) -> str:
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(persisted.get("sha256Hash"), str)
    ):
        raise bad_input("persistedQuery needs version 1 and a sha256Hash.")
    return str(persisted["sha256Hash"]).removeprefix("sha256:").lower()


def build_manifest(folder: Path, schema: GraphQLSchema) -> dict[str, Any]:
    """One manifest entry per ``.graphql`` file under ``folder``: one named operation each.

    Each document is validated against ``schema``, so a stale operation fails here rather
    than in front of a client.
    """
    operations = []
    names: set[str] = set()
    for path in sorted(folder.rglob("*.graphql")):
        body = path.read_text(encoding="utf-8").strip()
        document = parse(body)
        defined = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(defined) != 1 or defined[0].name is None:
            raise ValueError(f"{path}: needs exactly one named operation")
        if errors := validate(schema, document):
            raise ValueError(f"{path}: {errors[0].message}")
        name = defined[0].name.value
        if name in names:
            raise ValueError(f"{path}: a second operation named {name}")
        names.add(name)
        operations.append(
            {
                "id": document_hash(body),
                "name": name,
                "type": defined[0].operation.value,
                "body": body,
            }
        )
    return {"format": MANIFEST_FORMAT, "version": 1, "operations": operations}
