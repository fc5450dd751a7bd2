"""A request id for every HTTP request: echoed in ``X-Request-Id`` and kept on the ASGI scope.

A client's own ``X-Request-Id`` is reused when it is a short token, so a trace can span
services; anything else is replaced, so no header can smuggle text into the logs. The
request middleware (``app/observability/requests.py``) assigns and echoes it.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers
from starlette.types import Scope

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_of(scope: Scope) -> str | None:
    value = scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def request_id_for(scope: Scope) -> str:
    """The client's ``X-Request-Id`` when it is a short plain token, else a fresh one."""
    incoming = Headers(scope=scope).get(HEADER, "")
    return incoming if _SANE.fullmatch(incoming) else uuid.uuid4().hex
