"""Log lines and metric labels: redaction, formats, bounded label values."""

from __future__ import annotations

import io
import json
import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from graphql import GraphQLError

from app.observability import requests as requests_module
from app.observability.logging import (
    JsonFormatter,
    RequestLines,
    TextFormatter,
    configure_logging,
    iso_milliseconds,
    redact,
)
from app.observability.metrics import (
    MAX_OPERATION_NAMES,
    Metrics,
    forget_dead_workers,
    multiprocess_directory,
)
from app.settings import Settings

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlc2lnbmF0dXJl"


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_tokens_and_secrets_are_redacted_wherever_they_appear() -> None:
    text = f"auth=Bearer {JWT} raw={JWT} secret=s3cr3t-value"
    cleaned = redact(text, ["s3cr3t-value"])
    assert JWT not in cleaned and "s3cr3t-value" not in cleaned
    assert "bearer" not in cleaned.lower().replace("[redacted]", "")


def test_a_json_line_carries_the_request_fields_and_no_token() -> None:
    record = _record(
        f"failed with {JWT}", request_id="r1", operation="Run", account_id="a", duration_ms=1.5
    )
    line = json.loads(JsonFormatter(["top-secret"]).format(record))
    assert line["message"] == "failed with [REDACTED]"
    assert (line["request_id"], line["operation"], line["account_id"]) == ("r1", "Run", "a")
    assert line["duration_ms"] == 1.5 and line["level"] == "info"


def test_a_line_s_time_is_what_isoformat_writes_to_the_millisecond() -> None:
    moments = [random.uniform(1.7e9, 1.9e9) for _ in range(20_000)]
    # Where rounding to the microsecond decides the millisecond, or the second.
    moments += [round(m, 3) + d for m in moments[:2000] for d in (0.0005, -0.0005, 0.9999995)]
    for moment in moments:
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
        assert iso_milliseconds(moment) == expected, moment


def test_a_development_line_is_readable() -> None:
    line = TextFormatter([]).format(_record("POST /graphql 200", request_id="r1"))
    assert "POST /graphql 200" in line and "request_id=r1" in line


def test_operation_names_are_bounded_label_values() -> None:
    metrics = Metrics()
    assert metrics.operation_label(None) == "anonymous"
    assert metrics.operation_label("Run") == "Run"
    assert metrics.operation_label("bad name{}") == "other"
    for i in range(MAX_OPERATION_NAMES):
        metrics.operation_label(f"Op{i}")
    assert metrics.operation_label("OneTooMany") == "other"
    assert metrics.operation_label("Run") == "Run"


def test_observed_operations_are_counted_under_their_label_and_remembered_boundedly() -> None:
    # given names past the bound, a name that is no label, and a name observed twice
    metrics = Metrics()
    for i in range(MAX_OPERATION_NAMES):
        assert metrics.observe_operation(f"Op{i}", "query", "ok", 0.001) == f"Op{i}"
    labels = [metrics.observe_operation(n, "query", "ok", 0.001) for n in ("X", "Y", "bad{}")]
    metrics.observe_operation("Op0", "query", "ok", 0.001)

    # then the extra names count as "other", and only names that are their own label
    # are remembered
    assert labels == ["other", "other", "other"]
    assert metrics.requests.labels("other", "query", "ok")._value.get() == 3
    assert metrics.requests.labels("Op0", "query", "ok")._value.get() == 2
    assert len(metrics._observed) == MAX_OPERATION_NAMES


def test_graphql_errors_are_logged_by_message_without_the_document() -> None:
    from graphql import Source

    from graphql_schema.engine.observability import GraphQLErrorLog

    source = Source('{ me(token: "' + "x" * 200 + '") { id } }')
    crash = GraphQLError(
        "boom", source=source, positions=[5], path=["me"], original_error=RuntimeError("boom")
    )
    record = logging.LogRecord("strawberry.execution", logging.ERROR, "", 1, crash, None, None)
    assert GraphQLErrorLog().filter(record)
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "boom (path me)")


def test_expected_errors_and_invalid_documents_are_left_to_the_request_line() -> None:
    from graphql_schema.engine.observability import GraphQLErrorLog
    from graphql_schema.errors import ApiError

    unknown = GraphQLError("Unknown argument 'token'.", positions=[5])
    expected = ApiError("The token is invalid.", "UNAUTHENTICATED")
    expected.original_error = ValueError("bad")
    for error in (unknown, expected):
        record = logging.LogRecord("strawberry.execution", logging.ERROR, "", 1, error, None, None)
        assert not GraphQLErrorLog().filter(record)


def test_a_worker_starting_forgets_the_live_gauges_of_dead_workers_but_keeps_their_counters(
    tmp_path: Path,
) -> None:
    # given the files of a worker that died (a pid no process has) and of this one
    dead = _a_pid_nobody_has()
    mine = os.getpid()
    for name in (f"gauge_livesum_{dead}.db", f"counter_{dead}.db", f"gauge_livesum_{mine}.db"):
        (tmp_path / name).write_bytes(b"")
    # when
    forgotten = forget_dead_workers(tmp_path)
    # then its in-flight and subscription gauges go; what it counted stays in the sums
    assert forgotten == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{dead}.db",
        f"gauge_livesum_{mine}.db",
    ]


def test_metrics_are_per_process_unless_prometheus_client_was_imported_in_multiprocess_mode() -> (
    None
):
    # The suite imports prometheus-client without PROMETHEUS_MULTIPROC_DIR.
    assert multiprocess_directory() is None
    assert Metrics().multiprocess_dir is None


def _a_pid_nobody_has() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.fixture
def json_lines() -> Iterator[tuple[io.StringIO, RequestLines]]:
    """Logging as production configures it, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, requests_module.request_lines)
    settings = Settings(_env_file=None, jwt_secret="s" * 40, log_format="json")
    configure_logging(settings)
    buffer = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    lines = requests_module.request_lines
    assert isinstance(lines, RequestLines)
    try:
        yield buffer, lines
    finally:
        root.handlers, root.level = saved[0], saved[1]
        requests_module.request_lines = saved[2]


@contextmanager
def as_configured(handler: logging.Handler) -> Iterator[None]:
    """Only the handler configure_logging installed, as in production: pytest adds its own
    capturing handlers to the root, and the stock comparison a filter, for each test."""
    root, ours = logging.getLogger(), logging.getLogger("creditgate")
    saved = root.handlers[:], ours.filters[:]
    root.handlers, ours.filters = [handler], []
    try:
        yield
    finally:
        root.handlers, ours.filters = saved


REQUEST = {
    "request_id": "r1",
    "operation": "Me",
    "result": "ok",
    "account_id": None,
    "method": "POST",
    "path": "/graphql",
    "status": 200,
    "duration_ms": 0.42,
}


def test_the_request_line_written_directly_is_the_line_logging_writes(
    json_lines: tuple[io.StringIO, RequestLines],
) -> None:
    buffer, lines = json_lines
    # when one request's line is written each way
    with as_configured(logging.getLogger().handlers[0]):
        assert lines.write(logging.INFO, f"POST /graphql 200 {JWT}", REQUEST)
        logging.getLogger("creditgate.requests").info(
            "%s %s %s", "POST", "/graphql", f"200 {JWT}", extra=REQUEST
        )
    # then both lines are the same, key for key and in order, but for the time
    direct, logged = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert list(direct) == list(logged) and direct.pop("ts") and logged.pop("ts")
    assert direct == logged
    assert direct["message"] == "POST /graphql 200 [REDACTED]" and "account_id" not in direct


def test_the_request_line_takes_logging_s_own_path_once_the_configuration_changed(
    json_lines: tuple[io.StringIO, RequestLines],
) -> None:
    _buffer, lines = json_lines
    requests_logger = logging.getLogger("creditgate.requests")
    with as_configured(logging.getLogger().handlers[0]):
        # a handler of its own, a filter, another handler on the root: each declines
        for change, undo in (
            (lambda h: requests_logger.addHandler(h), lambda h: requests_logger.removeHandler(h)),
            (
                lambda h: logging.getLogger().addHandler(h),
                lambda h: logging.getLogger().removeHandler(h),
            ),
        ):
            extra = logging.NullHandler()
            change(extra)
            try:
                assert not lines.write(logging.INFO, "POST /graphql 200", REQUEST)
            finally:
                undo(extra)
        drop = logging.Filter("nothing")
        requests_logger.addFilter(drop)
        try:
            assert not lines.write(logging.INFO, "POST /graphql 200", REQUEST)
        finally:
            requests_logger.removeFilter(drop)
        # and a level that is off writes nothing, either way
        assert lines.write(logging.DEBUG, "GET /healthz 200", REQUEST)
        assert lines.write(logging.INFO, "POST /graphql 200", REQUEST)
    assert len(_buffer.getvalue().splitlines()) == 1
