"""The per-request context: who is calling, the services, and fresh loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from strawberry.types import Info as StrawberryInfo

from app.auth import InvalidToken, Principal, bearer_token, decode_token, token_expires_at
from app.events.hub import Hub, Session
from app.services.deps import Services
from graphql_schema.engine.limits import ListLimits
from graphql_schema.errors import ApiError, forbidden, to_api_error, unauthenticated
from graphql_schema.loaders import AccountLoader

_UNSET = object()


@dataclass
class Context:
    services: Services
    jwt_secret: str
    authorization: str | None
    request: Request | None = None
    # The caller's address over a websocket (``request`` is HTTP only): the per-IP budget.
    websocket_client: str | None = None
    request_id: str | None = None
    lists: ListLimits = field(default_factory=ListLimits)
    # This process's live subscribers; set where the app serves subscriptions.
    feeds: Hub | None = None
    # The websocket's connection_init payload (Strawberry sets it).
    connection_params: dict[str, Any] | None = None
    # The websocket's place in the hub, from connection_init until the socket closes.
    session: Session | None = field(default=None, init=False)
    _accounts: AccountLoader | None = field(default=None, init=False)
    _principal: object = field(default=_UNSET, init=False)

    @property
    def accounts(self) -> AccountLoader:
        """The request's account loader, made on first use (a mutation never reads one);
        loaders bind the running event loop, and this is only read by resolvers."""
        loader = self._accounts
        if loader is None:
            loader = self._accounts = AccountLoader(self.services)
        return loader

    @property
    def client_host(self) -> str | None:
        """The caller's IP, over HTTP or a websocket alike."""
        if self.request is not None:
            return self.request.client.host if self.request.client else None
        return self.websocket_client

    def renew_loaders(self) -> None:
        """Fresh loaders for the next event: a websocket keeps one context for its lifetime,
        and a loader's cache would otherwise serve the previous event's rows."""
        self._accounts = None

    def still_authorized(self) -> bool:
        """Whether the token still holds now: a subscription outlives the moment it was checked."""
        if self.session is not None and self.session.expired.is_set():
            return False
        self._principal = _UNSET
        try:
            return self.principal is not None
        except ApiError:
            return False

    @property
    def principal(self) -> Principal | None:
        """The caller, decoded on first use so public fields never pay for a token."""
        if self._principal is _UNSET:
            try:
                token = bearer_token(self.authorization)
                now = self.services.clock.now()
                self._principal = decode_token(token, self.jwt_secret, now) if token else None
            except InvalidToken as exc:
                raise to_api_error(exc) from None
        return self._principal  # type: ignore[return-value]

    @property
    def known_principal(self) -> Principal | None:
        """The caller if already decoded; never decodes and never raises (for logs)."""
        return self._principal if isinstance(self._principal, Principal) else None

    def authorize_connection(self) -> Principal | None:
        """Take the token from connection_init ({"Authorization": "Bearer ..."}, any case)."""
        for key, value in (self.connection_params or {}).items():
            if isinstance(key, str) and key.lower() == "authorization" and isinstance(value, str):
                self.authorization = value
                self._principal = _UNSET
        return self.principal

    def open_session(self, principal: Principal) -> None:
        """Hold the websocket's place in the hub until it closes or its token runs out.

        Raises OverCapacity when the account already holds all its connections.
        """
        token = bearer_token(self.authorization)
        if self.feeds is None or token is None:
            return
        # An ``exp`` that names no moment ends the connection at once.
        expires_at = token_expires_at(token, self.jwt_secret) or self.services.clock.now()
        self.session = self.feeds.connect(principal.account_id, expires_at)

    def close_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def require_principal(self) -> Principal:
        principal = self.principal
        if principal is None:
            raise unauthenticated()
        return principal

    def require_service(self) -> Principal:
        principal = self.require_principal()
        if not principal.is_service:
            raise forbidden("This field needs a service token.")
        return principal

    def require_user(self) -> str:
        """The caller's own account id: for fields that act as the signed-in user."""
        principal = self.require_principal()
        if principal.account_id is None:
            raise forbidden("This field needs a user token.")
        return principal.account_id

    def require_access(self, account_id: str) -> Principal:
        principal = self.require_principal()
        if not principal.may_act_for(account_id):
            raise forbidden("A user token acts on its own account only.")
        return principal

    def require_feeds(self) -> Hub:
        if self.feeds is None:
            raise RuntimeError("this app serves no subscriptions")
        return self.feeds


Info = StrawberryInfo[Context, None]
