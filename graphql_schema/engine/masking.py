"""Unexpected errors: the client reads "Unexpected error." and a request id; the log, the rest."""

from __future__ import annotations

import logging

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from app.domain.errors import DatabaseUnavailable
from graphql_schema.errors import Code, is_unexpected

MASKED_MESSAGE = "Unexpected error."
logger = logging.getLogger("creditgate")


def mask_unexpected(errors: list[GraphQLError], context: object) -> list[GraphQLError]:
    """``errors`` with each unexpected one logged and replaced by "Unexpected error."."""
    if not any(is_unexpected(error) for error in errors):
        return errors
    request_id = getattr(context, "request_id", None)
    return [_masked(error, request_id) if is_unexpected(error) else error for error in errors]


def _masked(error: GraphQLError, request_id: str | None) -> GraphQLError:
    cause = error.original_error or error
    if isinstance(cause, DatabaseUnavailable):
        # Raised where no result union or or_error() maps it (a query's loader, say): the
        # client reads "try again", not an unexpected error.
        logger.warning("database unavailable, request %s, path %s", request_id, error.path)
        return GraphQLError(
            cause.message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": Code.TRY_AGAIN.value, "requestId": request_id},
        )
    logger.error(
        "unexpected error, request %s, path %s",
        request_id,
        error.path,
        exc_info=(type(cause), cause, cause.__traceback__),
    )
    return GraphQLError(
        MASKED_MESSAGE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
    )


class MaskUnexpectedErrors(MaskErrors):
    """The same masking where Strawberry runs the operation (subscriptions, their events)."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message=MASKED_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return _masked(error, getattr(self.execution_context.context, "request_id", None))
