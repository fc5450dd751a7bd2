"""Unexpected errors: the client reads "Unexpected error." and a request id; the log, the rest."""

from __future__ import annotations

import logging

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from graphql_schema.errors import is_unexpected

MASKED_MESSAGE = "Unexpected error."
logger = logging.getLogger("creditgate")


class MaskUnexpectedErrors(MaskErrors):
    """MaskErrors for unexpected errors only, keeping a request id the client can quote."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message=MASKED_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        request_id = getattr(self.execution_context.context, "request_id", None)
        cause = error.original_error or error
        logger.error(
            "unexpected error, request %s, path %s",
            request_id,
            error.path,
            exc_info=(type(cause), cause, cause.__traceback__),
        )
        return GraphQLError(
            self.error_message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )


class ExpectedErrorsFilter(logging.Filter):
    """Drops Strawberry's log line for errors the client was meant to get.

    Strawberry logs every GraphQL error at ERROR, a bad token or a typo included; under a
    flood of refused requests that is a traceback per request. Unexpected errors still
    pass, and are logged again by ``MaskUnexpectedErrors`` with their request id.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, GraphQLError) and not is_unexpected(record.msg))


def quiet_expected_errors() -> None:
    strawberry_logger = logging.getLogger("strawberry.execution")
    if not any(isinstance(f, ExpectedErrorsFilter) for f in strawberry_logger.filters):
        strawberry_logger.addFilter(ExpectedErrorsFilter())
