"""Auto-match Nhanh products ↔ Shopify variants on the normalized SKU (``sku_key``: trimmed, case-folded), set-based
in SQL.

Among *unmapped* rows — a Nhanh product with no mapping row at all (an unmatch by staff is a row: it is left
alone), a Shopify variant with no active mapping — a SKU present on both sides maps its pair only when exactly one
Nhanh product and exactly one Shopify variant carry it. A SKU on both sides with more than one product on either
side is *ambiguous*: listed (AmbiguousSku, replaced by each run, and in the job's result), never guessed. Blank SKUs
are skipped. A SKU on one side only has no candidate.

One statement groups both sides by SKU into a temporary table, one INSERT … SELECT writes the unique pairs, one
SELECT lists the ambiguous SKUs' products. PostgreSQL and SQLite run the same SQL. Everything happens under the
product-mapping lock (mappings.writing), so two runs cannot both claim a variant; the partial unique constraint
would refuse it anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from customers.models import SyncStatus
from customers.services.matching import BULK_LINKS_FROM, bulk_load
from jobs import services as jobs
from jobs.models import BackgroundJob, StartedBy
from jobs.operations import Argument, Operation, dry_runnable, register_operation
from jobs.results import result_of

from ..models import AmbiguousSku, NhanhProduct, ProductMapping, ProductMatchedBy, ShopifyVariant
from . import mappings

log = logging.getLogger(__name__)

AUTO_MATCH_PRODUCTS = "AUTO_MATCH_PRODUCTS"
PERMISSION = "products.run_product_automatch"
KEYS = "_sku_match_keys"  # the run's per-SKU counts (a temporary table, private to the connection)
AMBIGUOUS_LISTED = 500  # ambiguous SKUs listed in the job's result (all of them are AmbiguousSku rows)

N, S, M = NhanhProduct._meta.db_table, ShopifyVariant._meta.db_table, ProductMapping._meta.db_table


def keys_sql() -> str:
    """Per non-blank SKU on both sides among unmapped rows: how many on each side, and the single ids."""
    return f"""
WITH n AS (
  SELECT p.sku_key, COUNT(*) AS n_count, MIN(p.id) AS n_id FROM {N} p
  WHERE p.sku_key <> '' AND NOT EXISTS (SELECT 1 FROM {M} m WHERE m.nhanh_product_id = p.id)
  GROUP BY p.sku_key
), s AS (
  SELECT v.sku_key, COUNT(*) AS s_count, MIN(v.id) AS s_id FROM {S} v
  WHERE v.sku_key <> '' AND NOT EXISTS (SELECT 1 FROM {M} m WHERE m.shopify_variant_id = v.id AND m.is_active = %s)
  GROUP BY v.sku_key
)
SELECT n.sku_key, n.n_count, s.s_count, n.n_id, s.s_id FROM n JOIN s ON s.sku_key = n.sku_key"""


@dataclass
class ProductMatchResult:
    matched: int = 0
    ambiguous: int = 0  # SKUs
    blank_nhanh: int = 0  # unmapped Nhanh products without a SKU (skipped)
    blank_shopify: int = 0  # unmapped Shopify variants without a SKU (skipped)
    no_candidate: int = 0  # unmapped Nhanh products whose SKU no free Shopify variant has
    already_mapped: int = 0  # Nhanh products with a mapping row before the run (active or unmatched)
    considered: int = 0  # unmapped Nhanh products
    dry_run: bool = False
    sql_seconds: float = 0.0
    job_seconds: float = 0.0
    ambiguous_skus: list[dict] = field(default_factory=list)  # {sku, nhanh_ids, shopify_variant_ids}

    def as_metadata(self) -> dict:
        return dict(self.__dict__)


def _empty_json() -> str:
    return "CAST('{}' AS jsonb)" if connection.vendor == "postgresql" else "'{}'"


def auto_match_products(*, dry_run: bool = False) -> ProductMatchResult:
    result = ProductMatchResult(dry_run=dry_run)
    with mappings.writing() as cur:
        cur.execute(f"""
SELECT (SELECT COUNT(*) FROM {N} p WHERE NOT EXISTS (SELECT 1 FROM {M} m WHERE m.nhanh_product_id = p.id)),
       (SELECT COUNT(*) FROM {N} p WHERE p.sku_key = ''
          AND NOT EXISTS (SELECT 1 FROM {M} m WHERE m.nhanh_product_id = p.id)),
       (SELECT COUNT(*) FROM {S} v WHERE v.sku_key = ''
          AND NOT EXISTS (SELECT 1 FROM {M} m WHERE m.shopify_variant_id = v.id AND m.is_active = %s)),
       (SELECT COUNT(*) FROM {M})""", [True])
        result.considered, result.blank_nhanh, result.blank_shopify, result.already_mapped = cur.fetchone()
        started = time.perf_counter()
        cur.execute(f"DROP TABLE IF EXISTS {KEYS}")
        on_commit = " ON COMMIT DROP" if connection.vendor == "postgresql" else ""
        if connection.vendor == "postgresql":
            cur.execute("SET LOCAL work_mem = '64MB'")
        cur.execute(f"CREATE TEMPORARY TABLE {KEYS}{on_commit} AS {keys_sql().strip()}", [True])
        cur.execute(f"SELECT COUNT(*) FROM {KEYS} WHERE n_count = 1 AND s_count = 1")
        result.matched = cur.fetchone()[0]
        # The ambiguous SKUs' unmapped products on both sides (upstream ids: what staff know them by). Read before
        # the INSERT, which cannot change them (its SKUs are the unique ones): a few keys looked up through the
        # sku_key indexes, not a join over both tables.
        cur.execute(f"SELECT sku_key FROM {KEYS} WHERE n_count > 1 OR s_count > 1")
        ambiguous_keys = [row[0] for row in cur.fetchall()]
        rows = []
        for start in range(0, len(ambiguous_keys), 500):
            chunk = ambiguous_keys[start:start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cur.execute(f"""
SELECT p.sku_key, 'n', p.nhanh_id FROM {N} p
WHERE p.sku_key IN ({marks}) AND NOT EXISTS (SELECT 1 FROM {M} m WHERE m.nhanh_product_id = p.id)
UNION ALL
SELECT v.sku_key, 's', v.shopify_id FROM {S} v
WHERE v.sku_key IN ({marks})
  AND NOT EXISTS (SELECT 1 FROM {M} m WHERE m.shopify_variant_id = v.id AND m.is_active = %s)""",
                        [*chunk, *chunk, True])
            rows += cur.fetchall()
        if not dry_run and result.matched:
            if connection.vendor == "postgresql":
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cur.execute("SET LOCAL synchronous_commit TO OFF")
            insert = f"""
INSERT INTO {M} (nhanh_product_id, shopify_variant_id, is_active, matched_by, matched_sku, matched_at,
                 sync_status, last_sent_stock, sync_attempts, last_error)
SELECT n_id, s_id, %s, %s, sku_key, %s, %s, {_empty_json()}, 0, '' FROM {KEYS}
WHERE n_count = 1 AND s_count = 1 ORDER BY n_id"""
            params = [True, ProductMatchedBy.SKU, timezone.now(), SyncStatus.PENDING]
            if connection.vendor == "postgresql" and result.matched >= BULK_LINKS_FROM:
                with bulk_load(cur, M):
                    cur.execute(insert, params)
            else:
                cur.execute(insert, params)
        grouped: dict[str, dict] = {}
        for key, side, upstream_id in rows:
            entry = grouped.setdefault(key, {"sku": key, "nhanh_ids": [], "shopify_variant_ids": []})
            entry["nhanh_ids" if side == "n" else "shopify_variant_ids"].append(upstream_id)
        cur.execute(f"SELECT COUNT(*) FROM {KEYS}")
        with_candidates = cur.fetchone()[0]
        cur.execute(f"SELECT COALESCE(SUM(n_count), 0) FROM {KEYS}")
        nhanh_with_candidates = cur.fetchone()[0]
        cur.execute(f"DROP TABLE IF EXISTS {KEYS}")
        result.sql_seconds = round(time.perf_counter() - started, 3)
        ambiguous = sorted(grouped.values(), key=lambda a: a["sku"])
        for entry in ambiguous:
            entry["nhanh_ids"].sort()
            entry["shopify_variant_ids"].sort()
        if not dry_run:
            AmbiguousSku.objects.all().delete()
            AmbiguousSku.objects.bulk_create([
                AmbiguousSku(sku_key=a["sku"], nhanh_product_ids=a["nhanh_ids"],
                             shopify_variant_ids=a["shopify_variant_ids"]) for a in ambiguous], batch_size=2000)
    result.ambiguous = len(ambiguous)
    result.ambiguous_skus = ambiguous[:AMBIGUOUS_LISTED]
    result.no_candidate = result.considered - result.blank_nhanh - int(nhanh_with_candidates)
    log.debug("product auto-match: %s SKUs with candidates", with_candidates)
    return result


# --- as a job ---------------------------------------------------------------------------------------------
def start_auto_match(*, dry_run: bool = False, started_by: str = StartedBy.SYSTEM, user=None,
                     retry_of: BackgroundJob | None = None, run_now: bool = False, **_ignored) -> BackgroundJob:
    job = jobs.create_job(AUTO_MATCH_PRODUCTS, params={"dry_run": dry_run}, started_by=started_by, user=user,
                          retry_of=retry_of, metadata={"dry_run": dry_run})
    return jobs.launch(job, run_now=run_now)


def run_auto_match_job(ctx: jobs.JobContext) -> None:
    started = time.perf_counter()
    result = auto_match_products(dry_run=bool(ctx.params.get("dry_run")))
    meta = result.as_metadata()
    meta["job_seconds"] = round(time.perf_counter() - started, 3)
    ctx.progress(total=result.considered, processed=result.considered, successful=result.matched, failed=0,
                 metadata=meta)
    log.info("product auto-match%s: %s matched, %s ambiguous SKUs, %s blank, %s without candidate (SQL %.2f s)",
             " (dry run)" if result.dry_run else "", result.matched, result.ambiguous, result.blank_nhanh,
             result.no_candidate, result.sql_seconds)


def _report(job: BackgroundJob, o: dict) -> list[str]:
    r = result_of(job)
    lines = [f"{'Would match' if r.dry_run else 'Matched'} {r.matched}; {r.ambiguous} ambiguous SKUs, "
             f"{r.blank_nhanh} Nhanh products without a SKU, {r.no_candidate} without a candidate, "
             f"{r.already_mapped} already mapped (SQL {r.sql_seconds} s)."]
    for a in r.ambiguous_skus[:10]:
        lines.append(f"  ambiguous: {a['sku']!r}: Nhanh {', '.join(map(str, a['nhanh_ids']))} ↔ Shopify variants "
                     f"{', '.join(map(str, a['shopify_variant_ids']))}")
    return lines


def register() -> None:
    jobs.register_job_type(AUTO_MATCH_PRODUCTS, label="Auto-match products", run=run_auto_match_job,
                           start=start_auto_match, result=ProductMatchResult, permission=PERMISSION)
    register_operation(Operation(
        "automatch", "products", dry_runnable(start_auto_match, "Product auto-match"), _report,
        arguments=(Argument(("--dry-run",), {"action": "store_true", "help": "Report without writing."}),),
    ))
