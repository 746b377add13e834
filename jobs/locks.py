"""Every database lock the hub takes by name, in one place.

On PostgreSQL these are transaction-scoped advisory locks (released at COMMIT/ROLLBACK); SQLite needs none,
since every transaction there starts IMMEDIATE and holds the database's write lock from BEGIN.

Order: a transaction that needs several takes them in the order of ``LockKey`` values below (claims first,
then mappings), so two transactions can never wait on each other. Today no transaction takes two.
"""

from __future__ import annotations

from enum import IntEnum

from django.db import connection


class LockKey(IntEnum):
    # Pull claims: the concurrency cap spans rows, so claims are counted one transaction at a time.
    PULL_CLAIMS = 0x5B0B7D6E
    # Writes to customer mappings (auto-match, manual match, unmatch, created customers): an auto-match's
    # SELECT and INSERT see no manual match slip in between, so the INSERT needs no ON CONFLICT.
    CUSTOMER_MAPPINGS = 0x5B0B3A7C
    # Writes to product mappings (SKU auto-match, manual match, unmatch): same reason as customers'.
    PRODUCT_MAPPINGS = 0x5B0B3A7D


def advisory_xact_lock(key: LockKey) -> None:
    """Take ``key`` for the rest of the current transaction (call inside ``transaction.atomic``)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [int(key)])
