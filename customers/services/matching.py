"""Auto-match Nhanh ↔ Shopify customers on every normalized phone, set-based in SQL.

Candidates are pairs (unmapped Nhanh customer, Shopify customer without an active mapping) that share an
E.164 phone. A pair becomes a mapping when the Nhanh customer has exactly one Shopify candidate AND that
Shopify customer has exactly one Nhanh candidate. Anything else with candidates is ambiguous: reported
(phones, candidates, rivals), never guessed. A Nhanh customer without a valid phone is skipped; one that
has any mapping row (active, or unmatched by staff) is left alone.

A few statements, no Python loop over rows: one INSERT … SELECT creates the mappings, one SELECT lists
the ambiguous ones. PostgreSQL and SQLite run the same SQL (CTEs, window functions, ON CONFLICT).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.utils import timezone

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


def _tables() -> dict[str, str]:
    return {"np": NhanhCustomerPhone._meta.db_table, "sp": ShopifyCustomerPhone._meta.db_table,
            "m": CustomerMapping._meta.db_table, "n": NhanhCustomer._meta.db_table}


# Pairs sharing a phone, with how many candidates each side has. {…} are table names.
CANDIDATES_SQL = """
WITH pairs AS (
    SELECT np.customer_id AS nhanh_id, sp.customer_id AS shopify_id, MIN(np.e164) AS phone
    FROM {np} np
    JOIN {sp} sp ON sp.e164 = np.e164
    WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.nhanh_customer_id = np.customer_id)
      AND NOT EXISTS (SELECT 1 FROM {m} m WHERE m.shopify_customer_id = sp.customer_id AND m.is_active = %s)
    GROUP BY np.customer_id, sp.customer_id
), counted AS (
    SELECT nhanh_id, shopify_id, phone,
           COUNT(*) OVER (PARTITION BY nhanh_id) AS shopify_candidates,
           COUNT(*) OVER (PARTITION BY shopify_id) AS nhanh_candidates
    FROM pairs
)
"""

INSERT_SQL = CANDIDATES_SQL + """
INSERT INTO {m} (nhanh_customer_id, shopify_customer_id, is_active, matched_by, matched_phone, matched_at,
                 sync_status, sync_attempts, last_sent_tier, last_error)
SELECT nhanh_id, shopify_id, %s, %s, phone, %s, %s, 0, '', ''
FROM counted
WHERE shopify_candidates = 1 AND nhanh_candidates = 1
"""

COUNT_MATCHES_SQL = CANDIDATES_SQL + """
SELECT COUNT(*) FROM counted WHERE shopify_candidates = 1 AND nhanh_candidates = 1
"""

# Every pair of an ambiguous Nhanh customer, with the other Nhanh customers claiming the same Shopify one.
AMBIGUOUS_SQL = CANDIDATES_SQL + """
SELECT c.nhanh_id, c.shopify_id, c.phone
FROM counted c
WHERE c.nhanh_id IN (SELECT nhanh_id FROM counted WHERE shopify_candidates > 1 OR nhanh_candidates > 1)
ORDER BY c.nhanh_id, c.shopify_id
"""

COUNTS_SQL = """
SELECT
  (SELECT COUNT(*) FROM {n} n WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.nhanh_customer_id = n.id)
      AND NOT EXISTS (SELECT 1 FROM {np} np WHERE np.customer_id = n.id)) AS no_phone,
  (SELECT COUNT(*) FROM {n} n WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.nhanh_customer_id = n.id)) AS unmapped,
  (SELECT COUNT(*) FROM {m} m) AS mapped
"""


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
    t = _tables()
    result = MatchResult(dry_run=dry_run)
    with mappings.writing() as cur:
        cur.execute(COUNTS_SQL.format(**t))
        no_phone, unmapped, mapped = cur.fetchone()
        started = time.perf_counter()
        if dry_run:
            cur.execute(COUNT_MATCHES_SQL.format(**t), [True])
            result.matched = cur.fetchone()[0]
        else:
            if connection.vendor == "postgresql":
                # Check the new rows' foreign keys now, not at COMMIT: the time measured is the real cost.
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                # The window functions sort ~100k pairs twice; in memory, not in temp files.
                cur.execute("SET LOCAL work_mem = '64MB'")
            cur.execute(INSERT_SQL.format(**t), [True, True, MatchedBy.PHONE, timezone.now(), SyncStatus.PENDING])
            # Not cur.rowcount: SQLite's driver reports -1 for a statement that starts with WITH. Inside
            # this serialized transaction the difference in rows is exact.
            cur.execute(f"SELECT COUNT(*) FROM {t['m']}")
            result.matched = cur.fetchone()[0] - mapped
        cur.execute(AMBIGUOUS_SQL.format(**t), [True])
        pairs = cur.fetchall()
        result.sql_seconds = round(time.perf_counter() - started, 3)
        ambiguous = _group_ambiguous(pairs, cur, t)
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


def _group_ambiguous(pairs, cur, t) -> list[dict]:
    """Group pairs per Nhanh customer and name the rival Nhanh customers of each Shopify candidate."""
    by_nhanh: dict[int, dict] = {}
    for nhanh_id, shopify_id, phone in pairs:
        entry = by_nhanh.setdefault(nhanh_id, {"nhanh_id": nhanh_id, "phones": [], "shopify_candidates": [],
                                               "nhanh_rivals": []})
        entry["shopify_candidates"].append(shopify_id)
        if phone not in entry["phones"]:
            entry["phones"].append(phone)
    if not by_nhanh:
        return []
    rivals: dict[int, set[int]] = {}
    for nhanh_id, entry in by_nhanh.items():
        for shopify_id in entry["shopify_candidates"]:
            rivals.setdefault(shopify_id, set()).add(nhanh_id)
    for entry in by_nhanh.values():
        others = set().union(*(rivals[s] for s in entry["shopify_candidates"])) - {entry["nhanh_id"]}
        entry["nhanh_rivals"] = sorted(others)
    return list(by_nhanh.values())


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
    jobs.register_job_type(CustomerJobType.AUTO_MATCH_CUSTOMERS, label="Auto-match customers", run=run_auto_match_job,
                           start=start_auto_match, result=MatchResult, permission="customers.run_automatch")
