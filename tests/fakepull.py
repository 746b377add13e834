"""A test-only pull: a spec, a source and an upsert, and nothing else. Everything around it (claims, 409, force
restart, resume, incremental marks, capped continuation, admin page, JSON API, ``manage.py pull``) is the
framework's. Its "upstream" is a deterministic list; its table is made here with plain SQL (no model).

The upsert's table has a DEFERRED foreign key: a row naming a missing ``parent`` passes the INSERT and fails at
COMMIT, i.e. after the batch's rows were written and the checkpoint moved, inside the same transaction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from django.db import connection

from jobs.pull_specs import Capped, FilterField, Incremental, PullMode, PullSpec, parse_text, register_pull_spec
from jobs.pulls import BatchResult, Page

SYSTEM, KIND, JOB_TYPE = "fake", "things", "PULL_FAKE_THINGS"
TABLE, PARENTS = "fake_pull_rows", "fake_pull_parents"
BASE_TIME = 1_700_000_000

# The upstream: ``rows`` things, ``page_size`` a page, ``delay`` seconds a page; ``poison`` ids name a missing
# parent. Settable through the environment so a subprocess serves the same upstream.
UPSTREAM = {
    "rows": int(os.environ.get("FAKE_ROWS", 100)),
    "page_size": int(os.environ.get("FAKE_PAGE_SIZE", 10)),
    "delay": float(os.environ.get("FAKE_DELAY", 0)),
    "poison": {int(i) for i in os.environ.get("FAKE_POISON", "").split(",") if i},
    "updated": {},  # id → updated_at for things changed "upstream" after the base time
}


def thing(i: int) -> dict:
    row = {"id": i, "name": f"thing {i}", "updated_at": UPSTREAM["updated"].get(i, BASE_TIME + i)}
    if i in UPSTREAM["poison"]:
        row["parent"] = 999
    return row


class FakeSource:
    def __init__(self, group: str | None = None, window=None, start=None):
        self.group, self.window, self.start = group, window, start

    def pages(self, cursor) -> Iterator[Page]:
        position = cursor if cursor is not None else (self.start or 0)
        wanted = [thing(i) for i in range(UPSTREAM["rows"])]
        if self.window:
            since, until = (int(t.timestamp()) for t in self.window)
            wanted = [r for r in wanted if since <= r["updated_at"] <= until]
        size = UPSTREAM["page_size"]
        while position < len(wanted):
            time.sleep(UPSTREAM["delay"])
            page = wanted[position:position + size]
            position += len(page)
            yield Page(page, position if position < len(wanted) else None)


def create_tables() -> None:
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {PARENTS} (id INTEGER PRIMARY KEY)")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, name TEXT, updated_at BIGINT, "
                    f"parent INTEGER NULL REFERENCES {PARENTS} (id) DEFERRABLE INITIALLY DEFERRED)")
        cur.execute(f"DELETE FROM {TABLE}")
        cur.execute(f"DELETE FROM {PARENTS}")


def stored() -> dict[int, int]:
    with connection.cursor() as cur:
        cur.execute(f"SELECT id, updated_at FROM {TABLE}")
        return dict(cur.fetchall())


def upsert_things(rows: list[dict]) -> BatchResult:
    ids = [r["id"] for r in rows]
    with connection.cursor() as cur:
        cur.execute(f"SELECT id FROM {TABLE} WHERE id IN ({', '.join(['%s'] * len(ids))})", ids)
        known = {i for (i,) in cur.fetchall()}
        cur.executemany(
            f"INSERT INTO {TABLE} (id, name, updated_at, parent) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = EXCLUDED.updated_at",
            [(r["id"], r["name"], r["updated_at"], r.get("parent")) for r in rows])
    return BatchResult(created=len(set(ids) - known), updated=len(set(ids) & known))


SPEC = PullSpec(
    system=SYSTEM, kind=KIND, job_type=JOB_TYPE, label="Pull fake things", demo_mode=None,
    modes=(
        PullMode("all", "All things, in the background"),
        PullMode("group", "One group of things, in the background", filters=("group",),
                 requires_filter="a group pull needs --group"),
        PullMode("new", "New / updated since the last pull", synchronous=True, incremental=Incremental()),
        PullMode("next", "The next few things", synchronous=True, capped=Capped(25)),
    ),
    filters=(FilterField("group", parse_text("the group"), cli_flag="--group", help="Fake: a group name"),),
    source=lambda req: FakeSource(req.filters.get("group"), req.window, req.start),
    upsert=upsert_things,
)


def register() -> None:
    register_pull_spec(SPEC)
