"""Automatic persisted queries, as Apollo Client's PersistedQueryLink and urql's
persistedExchange speak them.

A client first sends only ``extensions.persistedQuery.sha256Hash``. Unknown, the answer is
``PERSISTED_QUERY_NOT_FOUND``; the client then sends the hash with the text, which is
checked against the hash (``TrustedDocuments.admit``), run, and registered once it parsed
and validated. Every later request with that hash costs one round trip, over GET or POST.

Registered texts are kept in a bounded store: an LRU in this process (entries and bytes),
or Redis when ``CREDITGATE_REDIS_URL`` is set, so one registration serves every process
(each entry expiring after a TTL). Redis being down is not an error for the client: a miss,
then the client sends the text again, which is served; the failure is logged.

In trusted-only mode nothing is registered: the manifest is the list.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError
from strawberry.http import GraphQLRequestData

from graphql_schema.engine.trusted_documents import TrustedDocuments, document_hash, persisted_hash

logger = logging.getLogger("creditgate")


class DocumentStore(Protocol):
    async def get(self, digest: str) -> str | None: ...

    async def put(self, digest: str, body: str) -> None: ...

    async def aclose(self) -> None: ...


class InProcessDocuments:
    """An LRU bounded by entries and by the bytes of the texts it holds."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._bodies)

    async def get(self, digest: str) -> str | None:
        body = self._bodies.get(digest)
        if body is not None:
            self._bodies.move_to_end(digest)
        return body

    async def put(self, digest: str, body: str) -> None:
        size = len(body.encode())
        if digest in self._bodies or size > self.max_bytes or self.max_entries < 1:
            return
        self._bodies[digest] = body
        self._bytes += size
        while len(self._bodies) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._bodies.popitem(last=False)
            self._bytes -= len(evicted.encode())

    async def aclose(self) -> None:
        return None


class RedisDocuments:
    """Texts under ``{prefix}:apq:{sha256}``, each expiring ``ttl_seconds`` after it was
    registered; shared by every process that points at the same Redis."""

    def __init__(self, url: str, *, prefix: str, ttl_seconds: int, max_bytes: int) -> None:
        self._url = url
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._max_bytes = max_bytes
        self._redis: Redis | None = None

    def _client(self) -> Redis:
        # Built on first use, inside the running event loop the connections bind to.
        if self._redis is None:
            self._redis = Redis.from_url(self._url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    def _key(self, digest: str) -> str:
        return f"{self._prefix}:apq:{digest}"

    async def get(self, digest: str) -> str | None:
        try:
            body = await self._client().get(self._key(digest))
        except (RedisError, OSError) as exc:
            logger.error("persisted queries not read from Redis: %s", exc)
            return None
        return body.decode() if isinstance(body, bytes) else body

    async def put(self, digest: str, body: str) -> None:
        encoded = body.encode()
        if len(encoded) > self._max_bytes:
            return
        try:
            await self._client().set(self._key(digest), encoded, ex=self._ttl, nx=True)
        except (RedisError, OSError) as exc:
            logger.error("persisted query not registered in Redis: %s", exc)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


@dataclasses.dataclass(frozen=True, slots=True)
class Admitted:
    """The request with its text filled in, and the hash to register if it runs."""

    data: GraphQLRequestData
    register: str | None = None


class PersistedQueries:
    """Fills a hash-only request from the store; says which text to register after it ran.

    ``store`` None: automatic persisted queries are off (trusted-only mode, or turned off),
    and only the trusted manifest answers hashes."""

    def __init__(self, store: DocumentStore | None) -> None:
        self.store = store

    async def fill(self, data: GraphQLRequestData, trusted: TrustedDocuments) -> Admitted:
        persisted = (data.extensions or {}).get("persistedQuery")
        if self.store is None or persisted is None:
            return Admitted(data)
        digest = persisted_hash(persisted)
        if trusted.knows(digest):
            return Admitted(data)
        if data.query is None:
            body = await self.store.get(digest)
            return Admitted(data if body is None else dataclasses.replace(data, query=body))
        if document_hash(data.query) != digest:
            return Admitted(data)  # refused by the manifest's check, with its message
        return Admitted(data, register=digest)

    async def register(self, admitted: Admitted) -> None:
        if self.store is not None and admitted.register and admitted.data.query is not None:
            await self.store.put(admitted.register, admitted.data.query)

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()
