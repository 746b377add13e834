"""One way to get a client for an upstream: ``client_for(system)``, built from the stored connection and the
HTTP settings (attempts, back-off). Each upstream module registers its client class here by name, so callers
never pick a class or copy the options."""

from __future__ import annotations

import importlib
from typing import Any

from django.conf import settings
from django.utils.translation import gettext

from .models import get_connection

# system → "module:Class" (imported when first asked for, so an app without that upstream loads nothing).
CLIENT_CLASSES = {
    "nhanh": "integrations.nhanh.client:NhanhClient",
    "shopify": "integrations.shopify.client:ShopifyClient",
    "pancake": "integrations.pancake.client:PancakeClient",
    "shopee": "integrations.shopee.client:ShopeeClient",
}


def client_options() -> dict[str, Any]:
    """Retry/back-off options every client shares (settings: SHOPBRIDGE_HTTP_*)."""
    s = settings.SHOPBRIDGE
    return {"max_attempts": s["HTTP_MAX_ATTEMPTS"], "backoff_base": s["HTTP_BACKOFF_BASE"],
            "backoff_max": s["HTTP_BACKOFF_MAX"]}


def client_class(system: str):
    try:
        target = CLIENT_CLASSES[system]
    except KeyError:
        raise ValueError(f"no client for {system!r}; known: {', '.join(sorted(CLIENT_CLASSES))}") from None
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def client_for(system: str, connection=None, **overrides):
    """A client for ``system`` built from its stored connection (or the one given); ``overrides`` win."""
    conn = connection if connection is not None else get_connection(system)
    client = client_class(system).from_connection(conn, **{**client_options(), **overrides})
    client.status_key = system  # its calls' outcomes show on the overview (integrations.status)
    return client


# A connection test makes one call and must answer while staff wait: no long retry storms.
CONNECTION_TEST_OPTIONS = {"max_attempts": 2, "backoff_base": 0.2, "backoff_max": 1.0, "max_retry_seconds": 20.0,
                           "connect_timeout": 5.0, "read_timeout": 15.0}


def check_connection(connection) -> tuple[bool, str]:
    """One cheap authenticated call to ``connection``'s upstream through its client's ``test_connection()``:
    (True, "OK …") or (False, what is wrong). Changes nothing; never raises for an upstream's answer."""
    from .errors import UpstreamError

    label = connection.get_system_display()
    try:
        cls = client_class(connection.system)
    except (ValueError, ImportError):
        return False,
        gettext("%(system)s: no client for this upstream yet, so it cannot be tested.") % {"system": label}
    if not callable(getattr(cls, "test_connection", None)):
        return False, gettext("%(system)s: its client has no connection test yet.") % {"system": label}
    try:
        client = cls.from_connection(connection, **CONNECTION_TEST_OPTIONS)
    except (TypeError, ValueError) as exc:
        return False, gettext("%(system)s: the connection settings are incomplete (%(error)s).") % {
            "system": label, "error": exc}
    client.status_key = connection.system  # a test is a real call: the overview shows its outcome
    try:
        return True, f"{label}: {client.test_connection()}"
    except UpstreamError as exc:
        return False, f"{label}: {exc}"
    finally:
        client.close()
