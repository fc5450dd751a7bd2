"""Logs: one JSON object a line in production, readable lines in development.

Every line passes through :func:`redact` last, whatever logged it (ours, uvicorn, Strawberry,
SQLAlchemy): bearer tokens, anything shaped like a JWT and the configured secrets never
reach the output.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from app.observability import requests as requests_module
from app.observability.requests import current_request
from app.settings import Settings

REDACTED = "[REDACTED]"
TOKEN_PATTERNS = [
    # A JWT, or any piece of one that starts with its header ("eyJ" is '{"' in base64url).
    re.compile(r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*)*"),
    re.compile(r"(?i)\bbearer\s+[^\s\"',}]+"),
]
# Fields a log call may pass in ``extra`` and that are worth a key in the JSON line.
FIELDS = (
    "request_id",
    "method",
    "path",
    "status",
    "operation",
    "result",
    "account_id",
    "duration_ms",
    "subscription",
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    # Most lines hold nothing to redact: two substring tests skip both regex scans.
    if "eyJ" not in text and "bearer" not in text.lower():
        return text
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def fields(self, values: Mapping[str, Any]) -> dict[str, object]:
        """The line's fields among a record's attributes (``extra`` lands in its __dict__)."""
        fields = {k: values[k] for k in FIELDS if values.get(k) is not None}
        current = current_request.get()
        if current is not None and "request_id" not in fields:
            fields["request_id"] = current.request_id
        return fields

    def message(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return self.redacted(message)

    def redacted(self, text: str) -> str:
        return redact(text, self._secrets)


def iso_milliseconds(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, the same
    text (checked on a million timestamps) at half the cost: one line a request is logged,
    and the date and time up to the second change once a second."""
    fraction, whole = math.modf(created)
    seconds, micros = int(whole), round(fraction * 1e6)  # rounded as fromtimestamp rounds
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return f"{_utc_second(seconds)}.{micros // 1000:03d}+00:00"


@lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


class JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            record.created, record.levelname, record.name, self.message(record), vars(record)
        )

    def line(
        self, created: float, level_name: str, name: str, message: str, values: Mapping[str, Any]
    ) -> str:
        """The JSON line of a record made of these parts (``values``: its attributes)."""
        line = {
            "ts": iso_milliseconds(created),
            "level": level_name.lower(),
            "logger": name,
            "message": message,
            **self.fields(values),
        }
        try:
            # orjson: a line a request, about 4x faster than json.dumps (bench/README.md).
            text = orjson.dumps(line, default=str).decode()
        except TypeError:  # lone surrogates, which json.dumps escapes
            text = json.dumps(line, default=str)
        return redact(text, self._secrets)


class TextFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(f"{k}={v}" for k, v in self.fields(vars(record)).items())
        line = f"{moment} {record.levelname:<7} {record.name}: {self.message(record)}"
        return redact(f"{line}  {extras}" if extras else line, self._secrets)


class RequestLines:
    """The request log's line, written to the one handler ``configure_logging`` installed.

    Through ``Logger.log`` a line a request costs about 10 us of CPU here, most of it the
    logging module's own walk (a ``LogRecord``, the logger and handler filters, the handler
    lookup up the hierarchy) before the formatter and the write. While the configuration is
    the one ``configure_logging`` left (JSON lines, this handler alone on the root, no
    handler or filter added on the way, the level enabled), the same line is formatted by
    the same formatter and written under the handler's lock; anything else, and any error
    while writing, takes ``Logger.log`` (``write`` answers False).
    """

    def __init__(self, handler: logging.StreamHandler[Any], formatter: JsonFormatter) -> None:
        self._handler = handler
        self._formatter = formatter
        self._filters = len(handler.filters)  # as installed: any added one declines
        self._root = logging.getLogger()
        self._chain = [logging.getLogger("creditgate.requests"), logging.getLogger("creditgate")]

    def write(self, level: int, message: str, values: Mapping[str, Any]) -> bool:
        handler = self._handler
        requests = self._chain[0]
        if not requests.isEnabledFor(level):
            return True  # nothing to write, as Logger.log would write nothing
        root_handlers = self._root.handlers
        if (
            len(root_handlers) != 1
            or root_handlers[0] is not handler
            or handler.formatter is not self._formatter
            or len(handler.filters) != self._filters
            or handler.level > level
            or self._root.filters
            or any(lg.handlers or lg.filters or not lg.propagate for lg in self._chain)
        ):
            return False
        formatter = self._formatter
        text = formatter.line(
            time.time(),
            logging.getLevelName(level),
            requests.name,
            formatter.redacted(message),
            values,
        )
        handler.acquire()
        try:
            handler.stream.write(text + handler.terminator)
            handler.stream.flush()
        except Exception:
            return False
        finally:
            handler.release()
        return True


class _DropProbeChatter(logging.Filter):
    """Alembic says this on every readiness probe (it reads the revision); it says nothing."""

    CHATTER = ("Context impl ", "Will assume ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "alembic.runtime.migration"
            and isinstance(record.msg, str)
            and record.msg.startswith(self.CHATTER)
        )


def secrets_of(settings: Settings) -> list[str]:
    password = make_url(settings.database_url).password
    return [settings.jwt_secret, *([str(password)] if password else [])]


def configure_logging(settings: Settings) -> None:
    """Route every logger through one redacting handler on stderr; safe to call twice."""
    json_lines = settings.log_format == "json" or (
        settings.log_format is None and settings.is_production
    )
    formatter = (JsonFormatter if json_lines else TextFormatter)(secrets_of(settings))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_DropProbeChatter())  # passes every record of creditgate's own
    requests_module.request_lines = (
        RequestLines(handler, formatter) if isinstance(formatter, JsonFormatter) else None
    )
    # No line shows the caller's file, thread or process: skip collecting them on every
    # record, as the logging HOWTO's "Optimization" section describes.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Our request log replaces uvicorn's access log (which would print query strings).
    logging.getLogger("uvicorn.access").disabled = True
