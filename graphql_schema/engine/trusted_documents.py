"""Trusted documents: operations known ahead of time, sent by their sha256 instead of text.

The manifest is Apollo's persisted-query manifest (what
``@apollo/generate-persisted-query-manifest`` writes, and ``creditgate trusted-documents``)::

    {"format": "apollo-persisted-query-manifest", "version": 1,
     "operations": [{"id": "<sha256 of body>", "name": "Me", "type": "query", "body": "..."}]}

or GraphQL Codegen's persisted documents (client preset, ``hashAlgorithm: "sha256"``)::

    {"<sha256 of body>": "query Me { ... }"}

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
    """Carry ``documentId`` as a persistedQuery extension, the one form the view reads on
    (in each operation of a batch too)."""
    if isinstance(payload, list):
        return [with_document_id(item) for item in payload]
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
        return cls(manifest_bodies(path), only=only)

    def __len__(self) -> int:
        return len(self._bodies)

    def knows(self, digest: str) -> bool:
        return digest in self._bodies

    def admit(self, data: GraphQLRequestData, context: Context) -> GraphQLRequestData:
        """The request with its document filled in from the manifest, or an ApiError."""
        persisted = (data.extensions or {}).get("persistedQuery")
        if persisted is not None:
            digest = persisted_hash(persisted)
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


def persisted_hash(persisted: object) -> str:
    """The lower-case hex sha256 of ``extensions.persistedQuery``, or BAD_USER_INPUT."""
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(persisted.get("sha256Hash"), str)
    ):
        raise bad_input("persistedQuery needs version 1 and a sha256Hash.")
    return str(persisted["sha256Hash"]).removeprefix("sha256:").lower()


def manifest_bodies(path: Path) -> dict[str, str]:
    """Hash -> text of a manifest in either format, each hash checked against its text."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if isinstance(manifest, dict) and "operations" in manifest:
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != 1:
            raise ValueError(f"{path}: not an {MANIFEST_FORMAT} version 1")
        pairs = [(op.get("id"), op.get("body"), op.get("name")) for op in manifest["operations"]]
    elif isinstance(manifest, dict):
        pairs = [(key, body, key) for key, body in manifest.items()]
    else:
        raise ValueError(f"{path}: neither an {MANIFEST_FORMAT} nor a {{hash: body}} object")
    bodies = {}
    for digest, body, name in pairs:
        if not isinstance(digest, str) or not isinstance(body, str):
            raise ValueError(f"{path}: {name}: id and body must be strings")
        digest = digest.removeprefix("sha256:").lower()
        if digest != document_hash(body):
            hint = " (sha1? set hashAlgorithm: 'sha256')" if len(digest) == 40 else ""
            raise ValueError(f"{path}: id of {name} is not the body's sha256{hint}")
        bodies[digest] = body
    return bodies


def build_manifest(source: Path, schema: GraphQLSchema) -> dict[str, Any]:
    """An Apollo manifest from a folder of ``.graphql`` files (one named operation each), or
    from a manifest the clients' tooling wrote (either format above), kept byte for byte:
    clients hash the text they send, ``__typename`` added by their document transforms.

    Each document is validated against ``schema``, so a stale operation fails here rather
    than in front of a client.
    """
    if source.is_dir():
        texts = [
            (path, path.read_text(encoding="utf-8").strip())
            for path in sorted(source.rglob("*.graphql"))
        ]
    else:
        texts = [(source, body) for body in manifest_bodies(source).values()]
    operations = []
    names: set[str] = set()
    for path, body in texts:
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
