"""Shopify access tokens that expire: the client-credentials grant and where the token is kept.

Since 2026-01-01 a shop's own app comes from the Dev Dashboard and gets its Admin API token by
``POST https://{shop}.myshopify.com/admin/oauth/access_token`` (form ``grant_type=client_credentials``,
``client_id``, ``client_secret``) → ``{access_token, scope, expires_in}``; the token lasts ~24 h
(shared/upstreams/shopify.md §1). Every worker of a deployment shares one token: it is kept on the
Connection row and renewed under a row lock, so two workers never both fetch one. Tokens and secrets are
never logged or put in an error message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import requests

from integrations.errors import AuthRejected, BadPayload, UpstreamUnavailable

TOKEN_PATH = "/admin/oauth/access_token"  # noqa: S105 - a URL path, not a secret
RENEW_MARGIN_SECONDS = 300.0  # renew this long before expiry (at most a tenth of the token's lifetime)


@dataclass(frozen=True)
class StoredToken:
    token: str
    obtained_at: float  # unix seconds
    expires_at: float  # unix seconds

    def usable(self, now: float | None = None) -> bool:
        """Still valid with a margin to spare: renewed before it runs out, not on the 401 after."""
        now = time.time() if now is None else now
        margin = min(RENEW_MARGIN_SECONDS, max(self.expires_at - self.obtained_at, 0.0) / 10)
        return bool(self.token) and now < self.expires_at - margin


class TokenStore(Protocol):
    def load(self) -> StoredToken | None: ...

    def renew(self, stale: str | None, fetch: Callable[[], StoredToken]) -> StoredToken:
        """Return a usable token: the stored one if another worker already replaced ``stale`` with a
        usable token, else ``fetch()`` a new one and store it. Only one renewal runs at a time."""
        ...


class ClientCredentials:
    """The client-credentials grant for one shop."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, timeout=(5.0, 30.0)):
        self.url = base_url.rstrip("/") + TOKEN_PATH
        self.client_id = client_id
        self._secret = client_secret
        self.timeout = timeout

    def __repr__(self) -> str:  # the secret never reaches a log through repr()
        return f"<ClientCredentials {self.url} client_id={self.client_id}>"

    def obtain(self) -> StoredToken:
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._secret}
        try:
            response = requests.post(self.url, data=form, timeout=self.timeout,
                                     headers={"Accept": "application/json", "User-Agent": "ShopBridge/0.1"})
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"cannot reach {self.url} for a token ({type(exc).__name__})",
                                      system="shopify") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable(f"token endpoint answered HTTP {response.status_code}", system="shopify",
                                      status=response.status_code)
        if response.status_code >= 400:
            raise AuthRejected(
                f"Shopify refused the client id / client secret (HTTP {response.status_code}: "
                f"{_oauth_error(response)}); check the app's credentials on the connection",
                system="shopify", status=response.status_code, code="CLIENT_CREDENTIALS")
        try:
            body = response.json()
            token, expires_in = str(body["access_token"]), float(body.get("expires_in") or 86_400)
        except (ValueError, KeyError, TypeError) as exc:
            raise BadPayload("token endpoint answered without an access_token", system="shopify") from exc
        now = time.time()
        return StoredToken(token, now, now + expires_in)


def _oauth_error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:120]
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("error", "error_description", "errors") if body.get(k)]
        return ": ".join(parts)[:200] or "no detail"
    return str(body)[:120]


class MemoryTokenStore:
    """The token kept in this process only (one client, tests)."""

    def __init__(self):
        self._token: StoredToken | None = None
        self._lock = threading.Lock()

    def load(self) -> StoredToken | None:
        return self._token

    def renew(self, stale: str | None, fetch: Callable[[], StoredToken]) -> StoredToken:
        with self._lock:
            current = self._token
            if current is not None and current.token != stale and current.usable():
                return current
            self._token = fetch()
            return self._token


class ConnectionTokenStore:
    """The token kept on the Connection row, shared by every worker on every machine. A renewal locks the
    row (``select_for_update``; on SQLite a write that takes the database's write lock first), re-reads
    it, and fetches only if no other worker renewed meanwhile."""

    def __init__(self, connection_pk: int):
        self.pk = connection_pk
        self._lock = threading.Lock()  # threads of one process queue here before the row lock

    def load(self) -> StoredToken | None:
        from integrations.models import Connection

        row = (Connection.objects.filter(pk=self.pk)
               .values_list("issued_token", "issued_token_obtained_at", "issued_token_expires_at").first())
        return _stored(*row) if row else None

    def renew(self, stale: str | None, fetch: Callable[[], StoredToken]) -> StoredToken:
        from django.db import connection as db
        from django.db import transaction
        from django.db.models import F

        from integrations.models import Connection

        with self._lock, transaction.atomic():
            if db.vendor == "sqlite":  # no row locks: take the write lock before reading
                Connection.objects.filter(pk=self.pk).update(issued_token=F("issued_token"))
            row = Connection.objects.select_for_update().get(pk=self.pk)
            current = _stored(row.issued_token, row.issued_token_obtained_at, row.issued_token_expires_at)
            if current is not None and current.token != stale and current.usable():
                return current
            fresh = fetch()
            Connection.objects.filter(pk=self.pk).update(
                issued_token=fresh.token,
                issued_token_obtained_at=datetime.fromtimestamp(fresh.obtained_at, UTC),
                issued_token_expires_at=datetime.fromtimestamp(fresh.expires_at, UTC),
            )
            return fresh


def _stored(token, obtained_at, expires_at) -> StoredToken | None:
    if not token or expires_at is None:
        return None
    obtained = obtained_at.timestamp() if obtained_at else expires_at.timestamp() - 86_400
    return StoredToken(token, obtained, expires_at.timestamp())
