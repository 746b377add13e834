"""Auto-match Nhanh ↔ Shopify customers on every normalized phone, set-based in SQL.

Candidates are pairs (unmapped Nhanh customer, Shopify customer without an active mapping) that share an
E.164 phone. A pair becomes a mapping when the Nhanh customer has exactly one Shopify candidate AND that
Shopify customer has exactly one Nhanh candidate. Anything else with candidates is ambiguous: reported
(phones, candidates, rivals), never guessed. A Nhanh customer without a valid phone is skipped; one that
has any mapping row (active, or unmatched by staff) is left alone.

A few statements, no Python loop over rows: the candidate pairs are staged once in a temporary table, one
INSERT … SELECT creates the mappings from it (a big batch the bulk-load way on PostgreSQL: ``bulk_load``), one
SELECT lists the ambiguous ones. PostgreSQL and SQLite run the same SQL (CTEs, window functions).
``PhoneMatcher`` is the matcher for any two phone tables and a link table; Pancake → Nhanh uses it too.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from jobs import services as jobs
from jobs.models import BackgroundJob, StartedBy

from ..job_types import CustomerJobType
from ..models import (
    AmbiguousMatch,
    CustomerMapping,
    MatchedBy,
    NhanhCustomer,
    NhanhCustomerPhone,
    ShopifyCustomer,
    ShopifyCustomerPhone,
    SyncStatus,
)
from . import mappings
from .mappings import MappingError, match_manually, unmatch  # noqa: F401 - the matching API staff use

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhoneMatcher:
    """The set-based phone match between any two customer tables, each with a child table of E.164 phones
    (``customer_id``, ``e164``), writing pairs into a link table. Nhanh ↔ Shopify and Pancake → Nhanh are two
    instances; the SQL below is theirs alike.

    A left customer with any link row is left alone. ``right_exclusive``: a right customer takes one link (one
    whose ``right_taken`` condition holds, e.g. an active mapping) and so must have exactly one left candidate
    too; otherwise many left customers may link to one right customer (chats on several pages, one shop
    customer), and only the left side must be unique."""

    left: str  # left customers' table
    left_phones: str
    right_phones: str
    links: str
    link_left: str  # the link table's column naming the left customer
    link_right: str
    right_exclusive: bool = True
    right_taken: str = ""  # SQL on link row ``m`` marking its right customer taken, with one %s parameter
    right_taken_param: object = True

    @property
    def _t(self) -> dict[str, str]:
        return {"lp": self.left_phones, "rp": self.right_phones, "m": self.links, "ml": self.link_left,
                "mr": self.link_right, "n": self.left}

    def candidates_sql(self) -> tuple[str, list]:
        """Every (left, right, phone) the two sides share, flagged: ``unique_pair`` when the left customer has
        exactly one right candidate and (``right_exclusive``) that right customer exactly one left candidate;
        ``first_phone`` on the pair's smallest shared phone (the one a link records).

        The flags are window aggregates over the raw shared-phone rows: "one candidate" is MIN = MAX of the
        other side's id over the partition, so a pair sharing two phones needs no GROUP BY first. Both flags
        hold for every row of a left customer or for none of them, so a left customer is ambiguous exactly
        when its rows are not ``unique_pair``. (Before: GROUP BY pair, then COUNT(*) OVER each side — a hash
        aggregate and its text MIN on top of the same two sorts; ~25 % more CPU at 200k × 200k.)"""
        taken, params = "", []
        if self.right_exclusive:
            condition = f" AND {self.right_taken}" if self.right_taken else ""
            taken = f"\n      AND NOT EXISTS (SELECT 1 FROM {{m}} m WHERE m.{{mr}} = rp.customer_id{condition})"
            params = [self.right_taken_param] if self.right_taken else []
        one_left = ("\n         AND MIN(left_id) OVER by_right = MAX(left_id) OVER by_right"
                    if self.right_exclusive else "")
        by_right = ", by_right AS (PARTITION BY right_id)" if self.right_exclusive else ""
        sql = f"""
WITH shared AS (
    SELECT lp.customer_id AS left_id, rp.customer_id AS right_id, lp.e164 AS phone
    FROM {{lp}} lp
    JOIN {{rp}} rp ON rp.e164 = lp.e164
    WHERE NOT EXISTS (SELECT 1 FROM {{m}} m WHERE m.{{ml}} = lp.customer_id){taken}
)
SELECT left_id, right_id, phone,
       MIN(right_id) OVER by_left = MAX(right_id) OVER by_left{one_left} AS unique_pair,
       phone = MIN(phone) OVER by_left AS first_phone
FROM shared
WINDOW by_left AS (PARTITION BY left_id){by_right}
"""
        return sql.format(**self._t), params

    def counts_sql(self) -> str:
        """(left customers without a phone and without a link, left customers without a link, links)."""
        return """
SELECT
  (SELECT COUNT(*) FROM {n} n WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.{ml} = n.id)
      AND NOT EXISTS (SELECT 1 FROM {lp} lp WHERE lp.customer_id = n.id)) AS no_phone,
  (SELECT COUNT(*) FROM {n} n WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.{ml} = n.id)) AS unmapped,
  (SELECT COUNT(*) FROM {m} m) AS mapped
""".format(**self._t)

    # --- one run: the pairs are computed once into a temporary table, then counted, inserted and listed --------
    def stage_pairs(self, cur) -> None:
        """Every shared phone of a candidate pair, flagged (``candidates_sql``), into the temporary table
        ``PAIRS`` (dropped at COMMIT on PostgreSQL, by ``drop_pairs`` on SQLite). The phone join runs once for
        the insert and the ambiguous list."""
        sql, params = self.candidates_sql()
        cur.execute(f"DROP TABLE IF EXISTS {PAIRS}")
        on_commit = ""
        if connection.vendor == "postgresql":
            on_commit = " ON COMMIT DROP"
            cur.execute("SET LOCAL work_mem = '64MB'")  # the window functions sort ~100k rows twice: in memory
            # Past ~400k customers a side these statements cost more than jit_above_cost, and compiling them
            # (~0.1–0.3 s) buys nothing for a hash join and two sorts.
            cur.execute("SET LOCAL jit = off")
        cur.execute(f"CREATE TEMPORARY TABLE {PAIRS}{on_commit} AS {sql.strip()}", params)

    @staticmethod
    def drop_pairs(cur) -> None:
        cur.execute(f"DROP TABLE IF EXISTS {PAIRS}")

    @staticmethod
    def count_matches(cur) -> int:
        cur.execute(f"SELECT COUNT(*) FROM {PAIRS} WHERE unique_pair AND first_phone")
        return cur.fetchone()[0]

    @staticmethod
    def ambiguous_pairs(cur) -> list[tuple]:
        """Every pair of an ambiguous left customer (ordered) with its smallest shared phone, to list with its
        rivals."""
        cur.execute(f"""
SELECT c.left_id, c.right_id, MIN(c.phone) FROM {PAIRS} c WHERE NOT c.unique_pair
GROUP BY c.left_id, c.right_id ORDER BY c.left_id, c.right_id""")
        return cur.fetchall()

    def insert_sql(self, columns: tuple[str, ...], values: str) -> str:
        cols = ", ".join((self.link_left, self.link_right, *columns))
        return (f"INSERT INTO {self.links} ({cols})\nSELECT left_id, right_id, {values} FROM {PAIRS}\n"
                "WHERE unique_pair AND first_phone ORDER BY left_id")

    def insert(self, cur, columns: tuple[str, ...], values: str, params: list, *, expected: int,
               bulk_from: int | None = None) -> None:
        """Write the staged unique pairs into the link table; ``values`` is the SQL of ``columns`` after the two
        ids, with %s ``params``. On PostgreSQL a batch of ``bulk_from`` rows or more goes in the bulk-load way."""
        bulk_from = BULK_LINKS_FROM if bulk_from is None else bulk_from
        if connection.vendor == "postgresql" and expected >= bulk_from:
            with bulk_load(cur, self.links):
                cur.execute(self.insert_sql(columns, values), params)
        else:
            cur.execute(self.insert_sql(columns, values), params)


# The staged pairs of the running match (a temporary table: private to the transaction's connection).
PAIRS = "_phone_match_pairs"
# From this many new links on, the bulk-load way pays for itself (measured: bench/automatch_customers).
BULK_LINKS_FROM = 20_000


@contextmanager
def bulk_load(cur, table: str):
    """Insert many rows into ``table`` the way PostgreSQL's manual advises for populating a table ("Remove
    Indexes", "Remove Foreign Key Constraints"): drop its foreign keys, primary key, unique constraints and
    secondary indexes, let the caller insert, then put each back exactly as it was (definitions read from the
    catalog, same names). A key another table's foreign key depends on stays.

    Why: at 200,000 × 200,000 (bench/automatch_customers) inserting ~85,000 mappings spent most of its time in the
    per-row foreign-key checks (an index probe plus a FOR KEY SHARE lock that dirties the referenced customer's
    heap page and writes WAL, for each of two keys) and in maintaining four indexes in random key order.
    Re-adding a foreign key validates every row in one anti-join and building an index is one sort: a fraction of
    that. Integrity is unchanged: a key or uniqueness violation fails the re-add, and with it the transaction.
    The cost: the table is locked ACCESS EXCLUSIVE and the referenced tables SHARE ROW EXCLUSIVE until COMMIT
    (about a second): the admin's mapping pages and pull batches wait that long.

    Measured (backend CPU, bench/automatch_customers's database): the primary key rebuilt costs 150 ms with the
    insert against 190 ms maintained row by row; each foreign key is validated with a merge anti-join of the
    freshly built index against the referenced primary key (``enable_hashjoin`` off for the re-add): 100 ms for
    the three, against 225 ms for the planner's hash of all 200,000 customer ids."""
    cur.execute("""SELECT k.conname, pg_get_constraintdef(k.oid), k.contype FROM pg_constraint k
                   WHERE k.conrelid = %s::regclass AND k.contype IN ('f', 'u', 'p')
                     AND NOT EXISTS (SELECT 1 FROM pg_constraint r
                                     WHERE r.contype = 'f' AND r.confrelid = k.conrelid AND r.conindid = k.conindid
                                       AND k.contype <> 'f')
                   ORDER BY k.contype, k.conname""", [table])
    constraints = cur.fetchall()
    cur.execute("""SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                   WHERE x.indrelid = %s::regclass AND NOT x.indisprimary
                     AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
                   ORDER BY i.relname""", [table])
    indexes = cur.fetchall()
    qn = connection.ops.quote_name
    rebuild_order = {"p": 0, "u": 1, "f": 2}  # keys before the foreign keys that validate against their indexes
    for name, _definition, _kind in sorted(constraints, key=lambda c: -rebuild_order[c[2]]):
        cur.execute(f"ALTER TABLE {qn(table)} DROP CONSTRAINT {qn(name)}")
    for name, _definition in indexes:
        cur.execute(f"DROP INDEX {qn(name)}")
    yield
    cur.execute("SET LOCAL maintenance_work_mem = '128MB'")
    for _name, definition in indexes:
        cur.execute(definition)
    cur.execute("SELECT current_setting('enable_hashjoin')")
    hashjoin = cur.fetchone()[0]
    for name, definition, kind in sorted(constraints, key=lambda c: rebuild_order[c[2]]):
        if kind == "f":
            cur.execute("SET LOCAL enable_hashjoin = off")
        cur.execute(f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {definition}")
    cur.execute("SELECT set_config('enable_hashjoin', %s, true)", [hashjoin])


def nhanh_shopify_matcher() -> PhoneMatcher:
    return PhoneMatcher(
        left=NhanhCustomer._meta.db_table, left_phones=NhanhCustomerPhone._meta.db_table,
        right_phones=ShopifyCustomerPhone._meta.db_table, links=CustomerMapping._meta.db_table,
        link_left="nhanh_customer_id", link_right="shopify_customer_id",
        right_exclusive=True, right_taken="m.is_active = %s", right_taken_param=True,
    )


def group_ambiguous(pairs) -> list[dict]:
    """Group (left, right, phone) pairs per left customer and name the rival left customers of each candidate."""
    by_left: dict[int, dict] = {}
    for left_id, right_id, phone in pairs:
        entry = by_left.setdefault(left_id, {"left_id": left_id, "phones": [], "candidates": [], "rivals": []})
        entry["candidates"].append(right_id)
        if phone not in entry["phones"]:
            entry["phones"].append(phone)
    rivals: dict[int, set[int]] = {}
    for left_id, entry in by_left.items():
        for right_id in entry["candidates"]:
            rivals.setdefault(right_id, set()).add(left_id)
    for entry in by_left.values():
        others = set().union(*(rivals[r] for r in entry["candidates"])) - {entry["left_id"]}
        entry["rivals"] = sorted(others)
    return list(by_left.values())


@dataclass
class MatchResult:
    matched: int = 0
    ambiguous: int = 0
    skipped_no_phone: int = 0
    no_candidate: int = 0
    already_mapped: int = 0
    considered: int = 0
    dry_run: bool = False
    sql_seconds: float = 0.0
    job_seconds: float = 0.0
    ambiguous_examples: list[dict] = field(default_factory=list)

    def as_metadata(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def auto_match_customers(*, dry_run: bool = False, examples: int | None = None) -> MatchResult:
    examples = settings.SHOPBRIDGE["ERROR_EXAMPLES_KEPT"] if examples is None else examples
    matcher = nhanh_shopify_matcher()
    result = MatchResult(dry_run=dry_run)
    with mappings.writing() as cur:
        cur.execute(matcher.counts_sql())
        no_phone, unmapped, mapped = cur.fetchone()
        started = time.perf_counter()
        matcher.stage_pairs(cur)
        if dry_run:
            result.matched = matcher.count_matches(cur)
        else:
            result.matched = write_links(
                cur, matcher, ("is_active", "matched_by", "matched_phone", "matched_at", "sync_status",
                               "sync_attempts", "last_sent_tier", "last_error"),
                "%s, %s, phone, %s, %s, 0, '', ''", [True, MatchedBy.PHONE, timezone.now(), SyncStatus.PENDING])
        pairs = matcher.ambiguous_pairs(cur)
        matcher.drop_pairs(cur)
        result.sql_seconds = round(time.perf_counter() - started, 3)
        ambiguous = [{"nhanh_id": a["left_id"], "phones": a["phones"], "shopify_candidates": a["candidates"],
                      "nhanh_rivals": a["rivals"]} for a in group_ambiguous(pairs)]
        if not dry_run:
            AmbiguousMatch.objects.all().delete()
            AmbiguousMatch.objects.bulk_create(
                [AmbiguousMatch(nhanh_customer_id=a["nhanh_id"], phones=a["phones"],
                                shopify_candidates=a["shopify_candidates"], nhanh_rivals=a["nhanh_rivals"])
                 for a in ambiguous], batch_size=2000,
            )
    result.ambiguous = len(ambiguous)
    result.ambiguous_examples = _with_upstream_ids(ambiguous[:examples])
    result.skipped_no_phone = no_phone
    result.already_mapped = mapped
    result.considered = unmapped
    result.no_candidate = unmapped - no_phone - result.matched - result.ambiguous
    return result


def write_links(cur, matcher: PhoneMatcher, columns: tuple[str, ...], values: str, params: list,
                bulk_from: int | None = None) -> int:
    """Insert the staged unique pairs into the matcher's link table (inside the caller's transaction, after
    ``matcher.stage_pairs``); the number written (counted first: every staged unique pair is written)."""
    expected = matcher.count_matches(cur)
    if connection.vendor == "postgresql":
        # Check foreign keys now, not at COMMIT, so the time measured is the real cost; and don't wait for the WAL
        # flush at COMMIT: a crash just before it loses the links, and the next run writes them again.
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("SET LOCAL synchronous_commit TO OFF")
    matcher.insert(cur, columns, values, params, expected=expected, bulk_from=bulk_from)
    return expected


def _with_upstream_ids(examples: list[dict]) -> list[dict]:
    """Staff know customers by their Nhanh and Shopify ids, not by our row numbers."""
    nhanh_rows = {e["nhanh_id"] for e in examples} | {r for e in examples for r in e["nhanh_rivals"]}
    shopify_rows = {s for e in examples for s in e["shopify_candidates"]}
    nhanh = dict(NhanhCustomer.objects.filter(pk__in=nhanh_rows).values_list("pk", "nhanh_id"))
    shopify = dict(ShopifyCustomer.objects.filter(pk__in=shopify_rows).values_list("pk", "shopify_id"))
    return [{"nhanh_id": nhanh.get(e["nhanh_id"]), "phones": e["phones"],
             "shopify_ids": [shopify.get(s) for s in e["shopify_candidates"]],
             "other_nhanh_ids": [nhanh.get(r) for r in e["nhanh_rivals"]]} for e in examples]


# --- as a job ---------------------------------------------------------------------------------------------
def start_auto_match(*, dry_run: bool = False, started_by: str = StartedBy.SYSTEM, user=None,
                     retry_of: BackgroundJob | None = None, run_now: bool = False, **_ignored) -> BackgroundJob:
    job = jobs.create_job(CustomerJobType.AUTO_MATCH_CUSTOMERS, params={"dry_run": dry_run}, started_by=started_by,
                          user=user, retry_of=retry_of, metadata={"dry_run": dry_run})
    return jobs.launch(job, run_now=run_now)


def run_auto_match_job(ctx: jobs.JobContext) -> None:
    started = time.perf_counter()
    result = auto_match_customers(dry_run=bool(ctx.params.get("dry_run")))
    meta = result.as_metadata()
    meta["job_seconds"] = round(time.perf_counter() - started, 3)
    ctx.progress(total=result.considered, processed=result.considered, successful=result.matched, failed=0,
                 metadata=meta)
    log.info("auto-match%s: %s matched, %s ambiguous, %s without phone, %s without candidate (SQL %.2f s)",
             " (dry run)" if result.dry_run else "", result.matched, result.ambiguous, result.skipped_no_phone,
             result.no_candidate, result.sql_seconds)


def register() -> None:
    jobs.register_job_type(CustomerJobType.AUTO_MATCH_CUSTOMERS, label=_("Auto-match customers"),
                           run=run_auto_match_job,
                           start=start_auto_match, result=MatchResult, permission="customers.run_automatch")
