"""The HTTP sender: httpx with a hard timeout, refusing non-public addresses when told to.

With ``public_only`` (production) the host is resolved before each send and every address
it resolves to must be public: an endpoint accepted at creation whose name later points
inside the network is refused at send time too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from app.domain.webhooks import UnsafeUrl, check_address, check_url_form
from app.webhooks.port import Attempt

TIMEOUT_SECONDS = 10.0


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


async def check_destination(url: str, *, public_only: bool) -> None:
    """Raises :class:`UnsafeUrl` unless ``url`` may be called (DNS included)."""
    host = check_url_form(url, public_only=public_only)
    if not public_only:
        return
    parts = urlsplit(url)
    try:
        addresses = await resolve(host, parts.port or 443)
    except OSError:
        raise UnsafeUrl(f"url host {host} does not resolve.") from None
    for address in addresses:
        check_address(address)


class HttpSender:
    def __init__(self, *, public_only: bool, timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self._public_only = public_only
        # No redirects: a 3xx is a failed attempt, so a redirect can't lead inside either.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), follow_redirects=False, trust_env=False
        )
        self._timeout = timeout_seconds

    async def check_url(self, url: str) -> None:
        await check_destination(url, public_only=self._public_only)

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> Attempt:
        try:
            await check_destination(url, public_only=self._public_only)
        except UnsafeUrl as refused:
            return Attempt(None, f"refused: {refused}")
        try:
            # The whole exchange is bounded, not only each read: a receiver that trickles
            # bytes can't keep a delivery open past the timeout.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(url, content=body, headers=dict(headers))
        except (TimeoutError, httpx.TimeoutException):
            return Attempt(None, f"timeout after {self._timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])
        return Attempt(response.status_code)

    async def aclose(self) -> None:
        await self._client.aclose()
