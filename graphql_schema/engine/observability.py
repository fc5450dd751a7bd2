"""Per-operation metrics and log fields: operation name, result type, account, duration."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import TypeVar

from graphql import GraphQLError, OperationDefinitionNode

from app.observability.metrics import Metrics
from app.observability.requests import current_request
from graphql_schema.errors import PUBLIC_CODES, is_unexpected

T = TypeVar("T")

# Set by the schema's execute around each operation (a plain set and reset: a generator
# context manager cost more than the rest of the bookkeeping).
noting_results: ContextVar[list[str] | None] = ContextVar("result_types", default=None)


def noted_result(value: T) -> T:
    """Remember a mutation's union member (``GeneratorRun``, ``InsufficientCredits``...)."""
    noted = noting_results.get()
    if noted is not None:
        noted.append(type(value).__name__)
    return value


class OperationObserver:
    """Counts each query and mutation and fills in the request's log record."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def observe(
        self,
        definition: OperationDefinitionNode | None,
        operation_name: str | None,
        errors: list[GraphQLError] | None,
        noted: list[str],
        started: float,
        context: object,
    ) -> None:
        """``definition`` is None when the document did not parse; ``errors`` are unmasked."""
        if definition is not None and definition.name is not None:
            operation_name = definition.name.value
        kind = definition.operation.value if definition is not None else "invalid"
        result = _result(errors, noted)
        label = self._metrics.observe_operation(
            operation_name, kind, result, time.perf_counter() - started
        )
        record = current_request.get()
        if record is not None:
            record.operation = label
            record.result = result
            principal = getattr(context, "known_principal", None)
            if principal is not None:
                record.account_id = principal.account_id or "service"


def _result(errors: list[GraphQLError] | None, noted: list[str]) -> str:
    if errors:
        code = (errors[0].extensions or {}).get("code")
        if code in PUBLIC_CODES:
            return str(code)
        # Parse and validation errors come from the document, not from an exception.
        return "INTERNAL_ERROR" if errors[0].original_error else "INVALID_DOCUMENT"
    return noted[0] if len(set(noted)) == 1 else "ok"


class GraphQLErrorLog(logging.Filter):
    """The one filter on Strawberry's error log: expected errors dropped, the rest by message.

    Strawberry logs every GraphQL error at ERROR as ``str(error)``, a bad token or a typo
    included, with the request's source lines: under a flood of refused requests that is a
    line per request, and a token pasted into a document would reach the log in pieces no
    pattern can recognise. Expected errors (a public code) and invalid documents are the
    client's business: the request's own log line names their code (``result``), so theirs
    is dropped. Unexpected errors stay at ERROR, by message and path, never with the
    document; ``masking.py`` logs them again with the request id and the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.msg
        if not isinstance(error, GraphQLError):
            return True
        if not is_unexpected(error):
            return False
        path = ".".join(str(p) for p in error.path or ())
        record.msg, record.args = "%s (path %s)", (error.message, path or "-")
        return True


def log_graphql_errors() -> None:
    logger = logging.getLogger("strawberry.execution")
    if not any(isinstance(f, GraphQLErrorLog) for f in logger.filters):
        logger.addFilter(GraphQLErrorLog())
