"""The sender behind outgoing webhooks, in the domain's words: send one signed event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to: the receiver's status code, or why there was none."""

    status_code: int | None
    error: str | None = None


class WebhookSender(Protocol):
    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> Attempt:
        """POST ``body`` to ``url``; never raises for the receiver's or the network's faults."""

    async def check_url(self, url: str) -> None:
        """Raise ``UnsafeUrl`` unless an endpoint may have this URL (production: https, and
        every address the host resolves to is public)."""

    async def aclose(self) -> None: ...
