"""The chunked Shopee ads sync (seed 004, its defects fixed).

A run of one shop::

    begin_run       claim the shop's progress (one run per shop), fetch the campaign id list ONCE, cut it
                    into fixed slices, one chunk row (SyncQueue, is_chunk) per slice
    run_lane × K    each lane claims the next pending chunk (conditional UPDATE) until none is left; K is
                    the per-shop concurrency bound. A chunk is done when its campaigns are committed, in
                    the same transaction that counts it.
    counted         the chunk that makes chunks_done + chunks_failed == total_chunks wins a conditional
                    UPDATE (stage syncing_campaigns → syncing_performance) and runs the performance stage;
                    the others, and the chord's callback, find the stage moved and do nothing.
    finish          completed, or failed with every failed chunk and its error; one mail per failed run.

With Celery the lanes are a chord (``ads.tasks``); ``run_foreground`` runs the same lanes in threads.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from jobs import services as jobs
from jobs.models import BackgroundJob, JobStatus, StartedBy

from ..models import (
    ACTIVE_STAGES,
    ADS_SYNC,
    Campaign,
    CampaignDailyPerformance,
    QueueStatus,
    Shop,
    ShopDailyPerformance,
    Stage,
    SyncProgress,
    SyncQueue,
    SyncType,
    stuck_cutoff,
)
from . import bulk
from .tokens import shop_client

log = logging.getLogger(__name__)

MANUAL_PRIORITY = 10  # "enqueue now", retries and re-queued stuck shops go before the schedule's entries
PERF_FIELDS = ["impressions", "clicks", "ctr", "spend", "direct_orders", "broad_orders", "direct_gmv", "broad_gmv",
               "direct_items_sold", "broad_items_sold", "roas", "acos", "synced_at"]


class RunRefused(Exception):
    pass


# --- small helpers -------------------------------------------------------------------------------------
def _dec(value: Any, places: str = "0.01") -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else 0)).quantize(Decimal(places))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def _int(value: Any) -> int:
    try:
        return int(float(value or 0))
    except (TypeError, ValueError):
        return 0


def _day(value: str):
    for fmt in ("%d-%m-%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).date()
        except (TypeError, ValueError):
            continue
    return None


def _local_today():
    return timezone.localdate()


def _log_stage(progress_qs, stage: str) -> None:
    """Append to the stage log; only the single winner of a transition calls this, so no race."""
    row = progress_qs.values("stage_log").first()
    if row is not None:
        progress_qs.update(stage_log=[*row["stage_log"], {"stage": stage, "at": timezone.now().isoformat()}])


def _update_job(job_id: int | None, **values) -> None:
    if job_id:
        BackgroundJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now(), **values)


def _job_figures(progress: SyncProgress) -> dict:
    return {
        "processed": progress.synced_campaigns, "successful": progress.synced_campaigns,
        "failed": sum(f.get("campaigns", 0) for f in progress.failed_chunks),
        "total": progress.total_campaigns,
        "metadata": {"shop_id": progress.shop.shop_id if hasattr(progress, "shop") else None,
                     "stage": progress.stage, "chunks": f"{progress.chunks_finished}/{progress.total_chunks}",
                     "chunks_done": progress.chunks_done, "chunks_failed": progress.chunks_failed,
                     "total_chunks": progress.total_chunks, "sync_type": progress.sync_type,
                     "failed_chunks": [{"index": f["index"], "error": f["error"]} for f in progress.failed_chunks],
                     "error": progress.error_message},
    }


def _refresh_job(shop_pk: int, run_id) -> None:
    progress = SyncProgress.objects.select_related("shop").filter(shop_id=shop_pk, run_id=run_id).first()
    if progress is not None and progress.job_id:
        _update_job(progress.job_id, **_job_figures(progress))


# --- queue ------------------------------------------------------------------------------------------------
def enqueue_shop(shop: Shop, *, sync_type: str = SyncType.REALTIME, priority: int = 0) -> SyncQueue | None:
    """A pending entry for the shop, unless one of that type is pending already (then its priority is raised
    to ``priority`` and None is returned). A partial unique constraint decides, not a read."""
    try:
        with transaction.atomic():
            return SyncQueue.objects.create(shop=shop, sync_type=sync_type, priority=priority)
    except IntegrityError:
        SyncQueue.objects.filter(shop=shop, is_chunk=False, status=QueueStatus.PENDING, sync_type=sync_type,
                                 priority__lt=priority).update(priority=priority)
        return None


def enqueue_all(sync_type: str = SyncType.REALTIME) -> int:
    return sum(1 for shop in Shop.objects.filter(enabled=True) if enqueue_shop(shop, sync_type=sync_type))


def process_queue(batch: int | None = None, *, started_by: str = StartedBy.BEAT) -> list[int]:
    """Start the runs of up to ``batch`` pending entries (priority, then age). Rows are claimed with
    FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite serializes writers anyway), so two processors never take
    the same entry. A shop whose run is in progress keeps its entry pending. Returns the entry ids started."""
    batch = batch or settings.ADS_QUEUE_BATCH
    started: list[tuple[int, int]] = []
    with transaction.atomic():
        qs = SyncQueue.objects.filter(status=QueueStatus.PENDING, is_chunk=False).order_by("-priority", "created_at")
        if connection.vendor == "postgresql":
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        busy = set(SyncProgress.objects.filter(stage__in=ACTIVE_STAGES).values_list("shop_id", flat=True))
        for entry in qs.select_related("shop")[: batch * 4]:
            if len(started) >= batch:
                break
            if entry.shop_id in busy:
                continue
            if not entry.shop.enabled:
                SyncQueue.objects.filter(pk=entry.pk).update(status=QueueStatus.FAILED, error=gettext("shop disabled"),
                                                            finished_at=timezone.now())
                continue
            busy.add(entry.shop_id)
            job = _claim_entry(entry, started_by=started_by)
            started.append((entry.pk, job.pk))
    from ..tasks import start_run_task

    for entry_id, _job_id in started:
        transaction.on_commit(lambda e=entry_id: start_run_task.delay(e))
    return [e for e, _ in started]


def _claim_entry(entry: SyncQueue, *, started_by: str, user=None, retry_of=None) -> BackgroundJob:
    job = jobs.create_job(ADS_SYNC, params={"shop": entry.shop_id, "queue_id": entry.pk},
                          started_by=started_by, user=user, retry_of=retry_of,
                          metadata={"shop_id": entry.shop.shop_id, "sync_type": entry.sync_type,
                                    "stage": Stage.IDLE, "chunks": "0/?"})
    SyncQueue.objects.filter(pk=entry.pk).update(status=QueueStatus.PROCESSING, attempts=F("attempts") + 1,
                                                 started_at=timezone.now(), job=job)
    return job


def start_shop_sync(shop: Shop, *, sync_type: str = SyncType.REALTIME, started_by: str = StartedBy.USER,
                    user=None, retry_of=None, foreground: bool = False) -> BackgroundJob:
    """Sync one shop now (an entry claimed at once). ``foreground``: the caller runs the job (``run_job``)."""
    if SyncProgress.objects.filter(shop=shop, stage__in=ACTIVE_STAGES).exists():
        raise RunRefused(gettext("shop %(shop)s is already syncing; reset it first if it is stuck")
                         % {"shop": shop.shop_id})
    entry = SyncQueue.objects.create(shop=shop, sync_type=sync_type, priority=MANUAL_PRIORITY)
    job = _claim_entry(entry, started_by=started_by, user=user, retry_of=retry_of)
    if not foreground:
        from ..tasks import start_run_task

        transaction.on_commit(lambda: start_run_task.delay(entry.pk))
    return job


# --- a run --------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    shop_pk: int
    run_id: uuid.UUID
    chunks: int
    lanes: int


def begin_run(entry_id: int) -> Plan | None:
    """Claim the shop's progress for a new run, list its campaigns once and write the chunk rows."""
    entry = SyncQueue.objects.select_related("shop").get(pk=entry_id)
    shop = entry.shop
    SyncProgress.objects.get_or_create(shop=shop)
    run_id, now = uuid.uuid4(), timezone.now()
    claimed = SyncProgress.objects.filter(shop=shop).exclude(stage__in=ACTIVE_STAGES).update(
        run_id=run_id, stage=Stage.SYNCING_CAMPAIGNS, sync_type=entry.sync_type, total_campaigns=0,
        synced_campaigns=0, total_chunks=0, chunks_done=0, chunks_failed=0, current_chunk=0, failed_chunks=[],
        started_at=now, last_chunk_at=None, performance_started_at=None, completed_at=None, error_message="",
        stage_log=[{"stage": Stage.SYNCING_CAMPAIGNS, "at": now.isoformat()}], job_id=entry.job_id,
        queue_entry=entry)
    if not claimed:
        # Another run of this shop is in progress: this entry waits for the next processor pass (or, when
        # another entry of its type is pending already, is merged into that one).
        try:
            with transaction.atomic():
                SyncQueue.objects.filter(pk=entry.pk).update(status=QueueStatus.PENDING)
        except IntegrityError:
            SyncQueue.objects.filter(pk=entry.pk).update(status=QueueStatus.COMPLETED, finished_at=now,
                                                         error=gettext("merged into the pending entry of this shop"))
        _update_job(entry.job_id, status=JobStatus.CANCELLED, completed_at=now,
                    error=gettext("Another sync of this shop is running; the entry stays queued."))
        return None
    _update_job(entry.job_id, status=JobStatus.RUNNING, started_at=now)
    client = shop_client(shop)
    try:
        listing = client.campaign_ids()
    except Exception as exc:
        log.warning("shop %s: listing campaigns failed: %s", shop.shop_id, exc)
        _fail_whole_run(shop.pk, run_id, f"Listing the campaigns failed: {exc}")
        return None
    finally:
        client.close()
    ids = list(dict.fromkeys(int(row["campaign_id"]) for row in listing if row.get("campaign_id") is not None))
    progress = SyncProgress.objects.get(shop=shop)
    size = len(ids) if len(ids) <= settings.ADS_CHUNK_THRESHOLD else (progress.chunk_size or settings.ADS_CHUNK_SIZE)
    slices = [ids[i:i + size] for i in range(0, len(ids), max(size, 1))]
    with transaction.atomic():
        SyncQueue.objects.bulk_create([
            SyncQueue(shop=shop, sync_type=entry.sync_type, priority=entry.priority, is_chunk=True, run_id=run_id,
                      chunk_index=index, chunk_size=size, campaign_ids=part, job_id=entry.job_id)
            for index, part in enumerate(slices)])
        SyncProgress.objects.filter(shop=shop, run_id=run_id).update(total_campaigns=len(ids),
                                                                     total_chunks=len(slices))
    _refresh_job(shop.pk, run_id)
    lanes = max(1, min(settings.ADS_SHOP_CONCURRENCY, len(slices)))
    log.info("shop %s: run %s, %s campaigns in %s chunks of %s, %s lanes", shop.shop_id, run_id, len(ids),
             len(slices), size, lanes)
    return Plan(shop.pk, run_id, len(slices), lanes)


def _fail_whole_run(shop_pk: int, run_id, message: str) -> None:
    qs = SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id, stage__in=ACTIVE_STAGES)
    with transaction.atomic():  # the stage, its log entry, the queue entry and the job are seen together
        if qs.update(stage=Stage.FAILED, error_message=message, completed_at=timezone.now()):
            _log_stage(SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id), Stage.FAILED)
            _close_run(shop_pk, run_id, failed=True)


def claim_next_chunk(run_id) -> int | None:
    """The next pending chunk of the run, claimed with a conditional UPDATE (no two lanes get the same)."""
    while True:
        pk = (SyncQueue.objects.filter(run_id=run_id, is_chunk=True, status=QueueStatus.PENDING)
              .order_by("chunk_index").values_list("pk", flat=True).first())
        if pk is None:
            return None
        if SyncQueue.objects.filter(pk=pk, status=QueueStatus.PENDING).update(
                status=QueueStatus.PROCESSING, started_at=timezone.now()):
            return pk


def run_lane(shop_pk: int, run_id, *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Process chunks of the run until none is pending; returns how many this lane did."""
    done = 0
    client = None
    try:
        while (chunk_pk := claim_next_chunk(run_id)) is not None:
            if _cancel_requested(shop_pk, run_id):
                _fail_claimed_chunk(chunk_pk, "cancelled by staff")
                continue
            if client is None:
                client = shop_client(Shop.objects.get(pk=shop_pk))
            run_claimed_chunk(chunk_pk, client=client, sleep=sleep)
            done += 1
    finally:
        if client is not None:
            client.close()
    return done


def _cancel_requested(shop_pk: int, run_id) -> bool:
    """Staff cancelled the run's job on the dashboard: the remaining chunks are failed (counted), so the run
    still ends, as failed, with what was stored so far."""
    job_id = SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id).values_list("job_id", flat=True).first()
    return bool(job_id) and BackgroundJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def _fail_claimed_chunk(chunk_pk: int, error: str) -> None:
    chunk = SyncQueue.objects.select_related("shop").get(pk=chunk_pk)
    if _record_failed_chunk(chunk, error):
        run_performance_stage(chunk.shop_id, chunk.run_id)


def run_chunk(chunk_pk: int, *, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Claim one given chunk and process it (False if it was not pending)."""
    if not SyncQueue.objects.filter(pk=chunk_pk, status=QueueStatus.PENDING).update(
            status=QueueStatus.PROCESSING, started_at=timezone.now()):
        return False
    chunk = SyncQueue.objects.select_related("shop").get(pk=chunk_pk)
    client = shop_client(chunk.shop)
    try:
        run_claimed_chunk(chunk_pk, client=client, sleep=sleep)
    finally:
        client.close()
    return True


def run_claimed_chunk(chunk_pk: int, *, client, sleep: Callable[[float], None] = time.sleep) -> None:
    """Fetch and store one chunk's campaigns; retried with exponential backoff up to ADS_CHUNK_MAX_ATTEMPTS,
    then recorded as failed with its error. Whoever finishes the last outstanding chunk runs performance."""
    chunk = SyncQueue.objects.select_related("shop").get(pk=chunk_pk)
    max_attempts = max(1, settings.ADS_CHUNK_MAX_ATTEMPTS)
    error = ""
    for attempt in range(1, max_attempts + 1):
        SyncQueue.objects.filter(pk=chunk_pk).update(attempts=F("attempts") + 1)
        started = time.monotonic()
        try:
            rows = client.campaign_settings(chunk.campaign_ids)
            won = _store_chunk(chunk, rows, time.monotonic() - started)
            break
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("shop %s chunk %s attempt %s/%s failed: %s", chunk.shop.shop_id, chunk.chunk_index,
                        attempt, max_attempts, error)
            SyncQueue.objects.filter(pk=chunk_pk).update(error=error[:2000])
            if attempt < max_attempts:
                sleep(settings.ADS_CHUNK_RETRY_BACKOFF * 2 ** (attempt - 1))
    else:
        won = _record_failed_chunk(chunk, error)
    _refresh_job(chunk.shop_id, chunk.run_id)
    if won:
        run_performance_stage(chunk.shop_id, chunk.run_id)


def _campaign_row(shop: Shop, info: dict, run_id, now) -> dict:
    common = info.get("common_info") or {}
    duration = common.get("campaign_duration") or {}

    def stamp(value):
        return datetime.fromtimestamp(int(value), tz=UTC) if value else None

    return {
        "shop_id": shop.pk, "campaign_id": int(info["campaign_id"]), "ad_type": str(common.get("ad_type") or "")[:10],
        "name": str(common.get("ad_name") or "")[:300], "status": str(common.get("campaign_status") or "")[:20],
        "bidding_method": str(common.get("bidding_method") or "")[:10],
        "placement": str(common.get("campaign_placement") or "")[:20],
        "daily_budget": _dec(common.get("campaign_budget")) if "campaign_budget" in common else None,
        "total_budget": None, "start_time": stamp(duration.get("start_time")),
        "end_time": stamp(duration.get("end_time")),
        # The bidding blocks (manual/auto) as served; ``raw`` keeps the common block they sit beside.
        "settings": {k: v for k, v in info.items() if k not in ("campaign_id", "common_info")},
        "raw": common, "synced_at": now, "run_id": run_id,
    }


CAMPAIGN_FIELDS = ["ad_type", "name", "status", "bidding_method", "placement", "daily_budget", "start_time",
                   "end_time", "settings", "raw", "synced_at", "run_id"]


def _store_chunk(chunk: SyncQueue, rows: list[dict], seconds: float) -> bool:
    """Upsert the campaigns and count the chunk in ONE transaction: done means committed. Returns True for
    the one caller whose chunk completed the campaign stage."""
    now = timezone.now()
    wanted = set(chunk.campaign_ids)
    objs = list({row["campaign_id"]: row for row in (
        _campaign_row(chunk.shop, r, chunk.run_id, now) for r in rows
        if r.get("campaign_id") is not None and int(r["campaign_id"]) in wanted)}.values())
    with transaction.atomic():
        progress = SyncProgress.objects.filter(shop_id=chunk.shop_id, run_id=chunk.run_id)
        if not SyncQueue.objects.filter(pk=chunk.pk, status=QueueStatus.PROCESSING).update(
                status=QueueStatus.COMPLETED, finished_at=now, synced=len(objs), seconds=seconds, error=""):
            return False  # reset or taken over meanwhile: this run no longer owns the chunk
        if not progress.filter(stage=Stage.SYNCING_CAMPAIGNS).exists():
            return False
        bulk.upsert(Campaign, objs, unique_fields=["shop", "campaign_id"], update_fields=CAMPAIGN_FIELDS)
        progress.update(chunks_done=F("chunks_done") + 1, synced_campaigns=F("synced_campaigns") + len(objs),
                        last_chunk_at=now, current_chunk=chunk.chunk_index)
        return _advance_if_all_finished(chunk.shop_id, chunk.run_id)


def _record_failed_chunk(chunk: SyncQueue, error: str) -> bool:
    now = timezone.now()
    with transaction.atomic():
        if not SyncQueue.objects.filter(pk=chunk.pk, status=QueueStatus.PROCESSING).update(
                status=QueueStatus.FAILED, finished_at=now, error=error[:2000]):
            return False
        progress_qs = SyncProgress.objects.filter(shop_id=chunk.shop_id, run_id=chunk.run_id,
                                                  stage=Stage.SYNCING_CAMPAIGNS)
        progress = progress_qs.select_for_update().first()  # the failed list is a read-modify-write
        if progress is None:
            return False
        failed = [*progress.failed_chunks, {"index": chunk.chunk_index, "error": error[:500],
                                            "campaigns": len(chunk.campaign_ids)}]
        progress_qs.update(chunks_failed=F("chunks_failed") + 1, failed_chunks=failed, last_chunk_at=now,
                           current_chunk=chunk.chunk_index)
        return _advance_if_all_finished(chunk.shop_id, chunk.run_id)


def _advance_if_all_finished(shop_pk: int, run_id) -> bool:
    """The counted completion: one conditional UPDATE, true for exactly one caller per run."""
    with transaction.atomic():  # the stage and its log entry are seen together
        won = SyncProgress.objects.filter(
            shop_id=shop_pk, run_id=run_id, stage=Stage.SYNCING_CAMPAIGNS,
            total_chunks=F("chunks_done") + F("chunks_failed"),
        ).update(stage=Stage.SYNCING_PERFORMANCE, performance_started_at=timezone.now())
        if won:
            _log_stage(SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id), Stage.SYNCING_PERFORMANCE)
    return bool(won)


def ensure_finished(shop_pk: int, run_id) -> None:
    """The chord's callback (and the foreground's join): normally every chunk already moved the stage on;
    this covers a run with no chunks at all."""
    if _advance_if_all_finished(shop_pk, run_id):
        run_performance_stage(shop_pk, run_id)


# --- performance -------------------------------------------------------------------------------------------
def _date_range(sync_type: str):
    end = _local_today()
    days = settings.ADS_BACKFILL_DAYS if sync_type == SyncType.BACKFILL else settings.ADS_PERFORMANCE_DAYS
    return end - timedelta(days=max(days - 1, 1)), end


def _perf_values(m: dict, *, shop_level: bool) -> dict | None:
    day = _day(m.get("date"))
    if day is None:
        return None
    spend = _dec(m.get("expense"))
    broad_gmv = _dec(m.get("broad_gmv"))
    if shop_level:
        direct_items, broad_items = _int(m.get("direct_item_sold")), _int(m.get("broad_item_sold"))
    else:  # campaign rows name it order_amount (items in the orders)
        direct_items, broad_items = _int(m.get("direct_order_amount")), _int(m.get("broad_order_amount"))
    roas = (broad_gmv / spend) if spend else Decimal(0)
    acos = (100 * spend / broad_gmv) if broad_gmv else Decimal(0)
    return {"date": day, "impressions": _int(m.get("impression")), "clicks": _int(m.get("clicks")),
            "ctr": _dec(m.get("ctr"), "0.0001"), "spend": spend, "direct_orders": _int(m.get("direct_order")),
            "broad_orders": _int(m.get("broad_order")), "direct_gmv": _dec(m.get("direct_gmv")),
            "broad_gmv": broad_gmv, "direct_items_sold": direct_items, "broad_items_sold": broad_items,
            "roas": roas.quantize(Decimal("0.0001")), "acos": acos.quantize(Decimal("0.0001")),
            "synced_at": timezone.now()}


def run_performance_stage(shop_pk: int, run_id) -> None:
    """Daily results of the run's campaigns (≤100 ids a call, the calls in parallel within the shop's bound)
    and of the shop, then finish the run."""
    progress = SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id,
                                           stage=Stage.SYNCING_PERFORMANCE).first()
    if progress is None:
        return
    shop = Shop.objects.get(pk=shop_pk)
    start, end = _date_range(progress.sync_type)
    ids = [cid for part in SyncQueue.objects.filter(run_id=run_id, is_chunk=True, status=QueueStatus.COMPLETED)
           .order_by("chunk_index").values_list("campaign_ids", flat=True) for cid in part]
    campaign_pk = dict(Campaign.objects.filter(shop=shop, campaign_id__in=ids).values_list("campaign_id", "pk"))
    ids = [cid for cid in ids if cid in campaign_pk]
    batches = [ids[i:i + 100] for i in range(0, len(ids), 100)]
    error = ""
    clients = [shop_client(shop) for _ in range(max(1, min(settings.ADS_SHOP_CONCURRENCY, len(batches) or 1)))]
    try:
        shop_rows = clients[0].shop_daily_performance(start, end)
        _upsert_shop_days(shop, shop_rows)
        with ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix="ads-perf") as pool:
            futures = [pool.submit(_closing, clients[i % len(clients)].campaign_daily_performance, batch, start, end)
                       for i, batch in enumerate(batches)]
            for future in futures:  # stored here, on this thread: one DB connection
                _upsert_campaign_days(campaign_pk, future.result())
                SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id).update(last_chunk_at=timezone.now())
                _update_job(progress.job_id)
    except Exception as exc:
        log.warning("shop %s: performance failed: %s", shop.shop_id, exc)
        error = f"Performance sync failed: {type(exc).__name__}: {exc}"
    finally:
        for c in clients:
            c.close()
    finish_run(shop_pk, run_id, performance_error=error)


def _closing(fn, *args):
    """Run ``fn`` on a pool thread and close the DB connection it may have opened (the token lookup)."""
    try:
        return fn(*args)
    finally:
        connections.close_all()


def _upsert_campaign_days(campaign_pk: dict[int, int], blocks: list[dict]) -> None:
    objs = []
    for block in blocks:
        pk = campaign_pk.get(_int(block.get("campaign_id")))
        for m in block.get("metrics_list") or []:
            values = _perf_values(m, shop_level=False) if pk else None
            if values:
                objs.append({"campaign_id": pk, **values})
    with transaction.atomic():
        bulk.upsert(CampaignDailyPerformance, list({(o["campaign_id"], o["date"]): o for o in objs}.values()),
                    unique_fields=["campaign", "date"], update_fields=PERF_FIELDS)


def _upsert_shop_days(shop: Shop, rows: list[dict]) -> None:
    objs = [ShopDailyPerformance(shop=shop, **v) for v in (_perf_values(r, shop_level=True) for r in rows) if v]
    ShopDailyPerformance.objects.bulk_create(objs, update_conflicts=True, unique_fields=["shop", "date"],
                                             update_fields=PERF_FIELDS)


# --- finishing ----------------------------------------------------------------------------------------------
def finish_run(shop_pk: int, run_id, *, performance_error: str = "") -> str | None:
    progress = SyncProgress.objects.select_related("shop").filter(shop_id=shop_pk, run_id=run_id).first()
    if progress is None:
        return None
    problems = []
    if progress.failed_chunks:
        listed = "; ".join(gettext("chunk %(index)s: %(error)s") % {"index": f["index"], "error": f["error"]}
                           for f in progress.failed_chunks[:10])
        problems.append(gettext("%(failed)d of %(total)d chunks failed (%(chunks)s)") % {
            "failed": len(progress.failed_chunks), "total": progress.total_chunks, "chunks": listed})
    if performance_error:
        problems.append(performance_error)
    stage = Stage.FAILED if problems else Stage.COMPLETED
    # The stage, its log entry, the queue entry and the job change together: no reader sees a completed run
    # whose job still says running.
    with transaction.atomic():
        if not SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id, stage=Stage.SYNCING_PERFORMANCE).update(
                stage=stage, completed_at=timezone.now(), error_message=". ".join(problems)):
            return None
        _log_stage(SyncProgress.objects.filter(shop_id=shop_pk, run_id=run_id), stage)
        _close_run(shop_pk, run_id, failed=stage == Stage.FAILED)
    _adapt_chunk_size(shop_pk, run_id)
    return stage


def _close_run(shop_pk: int, run_id, *, failed: bool) -> None:
    """Queue entry, job and (for a failed run) the one mail to the admins."""
    progress = SyncProgress.objects.select_related("shop").get(shop_id=shop_pk)
    if str(progress.run_id) != str(run_id):
        return
    now = timezone.now()
    status = QueueStatus.FAILED if failed else QueueStatus.COMPLETED
    if progress.queue_entry_id:
        SyncQueue.objects.filter(pk=progress.queue_entry_id).update(status=status, finished_at=now,
                                                                    error=progress.error_message[:2000])
    figures = _job_figures(progress)
    _update_job(progress.job_id, status=JobStatus.FAILED if failed else JobStatus.COMPLETED, completed_at=now,
                error=progress.error_message, **figures)
    if failed:  # mailed once the transaction the caller closes the run in has committed
        shop = progress.shop
        transaction.on_commit(lambda: mail_admins(
            f"Shopee ads sync failed: {shop}",
            f"The ads sync of shop {shop} (run {run_id}) ended failed.\n\n{progress.error_message}\n\n"
            f"Campaigns synced: {progress.synced_campaigns}/{progress.total_campaigns}; chunks done "
            f"{progress.chunks_done}, failed {progress.chunks_failed} of {progress.total_chunks}.\n"
            "Retry the failed chunks from the admin (Ads → Shops) or `manage.py ads enqueue "
            f"{shop.shop_id}`.",
            fail_silently=True,
        ))


def _adapt_chunk_size(shop_pk: int, run_id) -> None:
    """Next run's chunk size from this run's measured chunk times: aim at ADS_CHUNK_TARGET_SECONDS, at most
    doubling per run, within [ADS_CHUNK_SIZE_MIN, ADS_CHUNK_SIZE_MAX]."""
    rows = list(SyncQueue.objects.filter(run_id=run_id, is_chunk=True, status=QueueStatus.COMPLETED,
                                         seconds__isnull=False).values_list("seconds", "chunk_size", "campaign_ids"))
    progress = SyncProgress.objects.get(shop_id=shop_pk)
    if len(rows) < 2 or progress.total_campaigns <= settings.ADS_CHUNK_THRESHOLD:
        return
    slowest_per_campaign = max(s / max(len(ids), 1) for s, _size, ids in rows)
    current = rows[0][1] or settings.ADS_CHUNK_SIZE
    ideal = settings.ADS_CHUNK_TARGET_SECONDS / max(slowest_per_campaign, 1e-6)
    new = int(min(max(ideal, settings.ADS_CHUNK_SIZE_MIN), settings.ADS_CHUNK_SIZE_MAX, current * 2))
    SyncProgress.objects.filter(shop_id=shop_pk).update(chunk_size=new)


# --- the whole run in this process (manage.py ads sync --wait, the job dashboard's retry) ------------------
def run_foreground(entry_id: int, *, lanes: int | None = None) -> Plan | None:
    """Plan the run and run its lanes in threads here (no Celery); returns when the run finished."""
    plan = begin_run(entry_id)
    if plan is None:
        return None
    run_lanes_here(plan.shop_pk, plan.run_id, lanes or plan.lanes)
    return plan


def run_lanes_here(shop_pk: int, run_id, lanes: int) -> None:
    def lane():
        try:
            run_lane(shop_pk, run_id)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=max(1, lanes), thread_name_prefix="ads-lane") as pool:
        for future in [pool.submit(lane) for _ in range(max(1, lanes))]:
            future.result()
    ensure_finished(shop_pk, run_id)


def run_sync_job(ctx: jobs.JobContext) -> None:
    """The ADS_SYNC handler when the job itself is run (``run_job``): the whole run in this process."""
    entry_id = ctx.params["queue_id"]
    plan = run_foreground(entry_id, lanes=ctx.params.get("lanes"))
    progress = SyncProgress.objects.select_related("shop").get(shop_id=ctx.params["shop"])
    figures = _job_figures(progress)
    ctx.progress(processed=figures["processed"], successful=figures["successful"], failed=figures["failed"],
                 total=figures["total"], metadata=figures["metadata"])
    if plan is None and progress.stage != Stage.FAILED:
        raise RunRefused(gettext("shop %(shop)s is already syncing") % {"shop": progress.shop.shop_id})
    if progress.stage != Stage.COMPLETED:
        raise RuntimeError(progress.error_message or f"the run ended {progress.stage}")


def restart_job(*, params, started_by, user, retry_of=None, force_restart=False) -> BackgroundJob:
    """The dashboard's "retry" of an ADS_SYNC job: a new run of the shop, or, while one is in progress, a
    queued entry (the returned job says so) so that the retry never fails with an error page."""
    shop = Shop.objects.get(pk=params["shop"])
    try:
        return start_shop_sync(shop, started_by=started_by, user=user, retry_of=retry_of)
    except RunRefused as exc:
        enqueue_shop(shop, priority=MANUAL_PRIORITY)
        job = jobs.create_job(ADS_SYNC, params=dict(params), started_by=started_by, user=user,
                              retry_of=retry_of, metadata={"shop_id": shop.shop_id})
        _update_job(job.pk, status=JobStatus.CANCELLED, completed_at=timezone.now(),
                    error=gettext("%(error)s. The shop was queued to sync after the current run.") % {
                        "error": exc})
        job.refresh_from_db()
        return job


# --- operators ------------------------------------------------------------------------------------------------
def cleanup_stuck() -> list[int]:
    """Runs without chunk progress for ADS_STUCK_MINUTES → failed (chunks, entry, job, one mail) and
    re-queued. Returns the shop ids."""
    cutoff = stuck_cutoff()
    stuck = SyncProgress.objects.filter(stage__in=ACTIVE_STAGES).annotate(
        beat=Coalesce("last_chunk_at", "started_at")).filter(Q(beat__lt=cutoff) | Q(beat__isnull=True))
    cleaned = []
    for progress in stuck.select_related("shop"):
        minutes = settings.ADS_STUCK_MINUTES
        message = f"Stuck: no chunk progress for more than {minutes} minutes; failed and re-queued."
        with transaction.atomic():  # stage, log entry, chunks, queue entry and job change together
            if not SyncProgress.objects.filter(shop_id=progress.shop_id, run_id=progress.run_id,
                                               stage__in=ACTIVE_STAGES).update(
                    stage=Stage.FAILED, error_message=message, completed_at=timezone.now()):
                continue
            _log_stage(SyncProgress.objects.filter(shop_id=progress.shop_id), Stage.FAILED)
            SyncQueue.objects.filter(run_id=progress.run_id, is_chunk=True,
                                     status__in=[QueueStatus.PENDING, QueueStatus.PROCESSING]).update(
                status=QueueStatus.FAILED, error=gettext("stuck run cleaned up"), finished_at=timezone.now())
            _close_run(progress.shop_id, progress.run_id, failed=True)
        enqueue_shop(progress.shop, sync_type=progress.sync_type, priority=MANUAL_PRIORITY)
        cleaned.append(progress.shop.shop_id)
    return cleaned


def reset_shop(shop: Shop) -> dict:
    """Back to idle: a new run id (writes of the old run change nothing), its open chunks failed, the shop's
    pending entries removed."""
    now = timezone.now()
    progress, _ = SyncProgress.objects.get_or_create(shop=shop)
    old_run = progress.run_id
    SyncProgress.objects.filter(shop=shop).update(
        run_id=uuid.uuid4(), stage=Stage.IDLE, error_message="", total_chunks=0, chunks_done=0, chunks_failed=0,
        failed_chunks=[], synced_campaigns=0, total_campaigns=0, current_chunk=0, completed_at=None,
        stage_log=[{"stage": Stage.IDLE, "at": now.isoformat()}])
    chunks = SyncQueue.objects.filter(run_id=old_run, is_chunk=True,
                                      status__in=[QueueStatus.PENDING, QueueStatus.PROCESSING]).update(
        status=QueueStatus.FAILED, error=gettext("reset by staff"), finished_at=now)
    if progress.queue_entry_id:
        SyncQueue.objects.filter(pk=progress.queue_entry_id, status=QueueStatus.PROCESSING).update(
            status=QueueStatus.FAILED, error=gettext("reset by staff"), finished_at=now)
    if progress.job_id:
        BackgroundJob.objects.filter(pk=progress.job_id, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED, error=gettext("Reset by staff."), completed_at=now)
    pending, _ = SyncQueue.objects.filter(shop=shop, is_chunk=False, status=QueueStatus.PENDING).delete()
    return {"chunks_failed": chunks, "pending_removed": pending}


def retry_failed_chunks(shop: Shop, *, started_by: str = StartedBy.USER, user=None,
                        foreground: bool = False) -> BackgroundJob:
    """Put a failed run's failed chunks back to pending and run them (then performance again); the counters
    make the stage move on only when they have all finished again."""
    progress = SyncProgress.objects.filter(shop=shop).first()
    if progress is None or progress.stage != Stage.FAILED or not progress.failed_chunks:
        raise RunRefused(gettext("shop %(shop)s has no failed chunks to retry") % {"shop": shop.shop_id})
    job = jobs.create_job(ADS_SYNC, params={"shop": shop.pk, "queue_id": progress.queue_entry_id,
                                                    "retry_chunks": True},
                          started_by=started_by, user=user, retry_of=progress.job,
                          metadata={"shop_id": shop.shop_id, "retry_of_run": str(progress.run_id)})
    n = len(progress.failed_chunks)
    with transaction.atomic():
        if not SyncProgress.objects.filter(shop=shop, run_id=progress.run_id, stage=Stage.FAILED).update(
                stage=Stage.SYNCING_CAMPAIGNS, chunks_failed=F("chunks_failed") - n, failed_chunks=[],
                error_message="", completed_at=None, performance_started_at=None, last_chunk_at=timezone.now(),
                job=job):
            raise RunRefused(gettext("shop %(shop)s changed meanwhile; try again") % {"shop": shop.shop_id})
        SyncQueue.objects.filter(run_id=progress.run_id, is_chunk=True, status=QueueStatus.FAILED).update(
            status=QueueStatus.PENDING, attempts=0, error="")
        if progress.queue_entry_id:
            SyncQueue.objects.filter(pk=progress.queue_entry_id).update(status=QueueStatus.PROCESSING)
    _log_stage(SyncProgress.objects.filter(shop=shop), Stage.SYNCING_CAMPAIGNS)
    _update_job(job.pk, status=JobStatus.RUNNING, started_at=timezone.now())
    lanes = max(1, min(settings.ADS_SHOP_CONCURRENCY, n))
    if foreground:
        run_lanes_here(shop.pk, progress.run_id, lanes)
    else:
        from ..tasks import dispatch_lanes

        transaction.on_commit(lambda: dispatch_lanes(shop.pk, progress.run_id, lanes))
    job.refresh_from_db()
    return job


def cleanup_queue(days: int | None = None) -> int:
    cutoff = timezone.now() - timedelta(days=days or settings.ADS_QUEUE_KEEP_DAYS)
    current = SyncProgress.objects.values_list("run_id", flat=True)
    deleted, _ = (SyncQueue.objects.filter(status__in=[QueueStatus.COMPLETED, QueueStatus.FAILED],
                                           created_at__lt=cutoff)
                  .exclude(run_id__in=current).exclude(pk__in=SyncProgress.objects.values("queue_entry_id"))
                  .delete())
    return deleted


def status_rows() -> list[dict]:
    """The seed's v_ads_sync_progress_status, for the command and the admin."""
    rows = []
    for shop in Shop.objects.select_related("progress").order_by("shop_id"):
        p = getattr(shop, "progress", None)
        rows.append({
            "shop_id": shop.shop_id, "name": shop.name, "stage": p.stage if p else Stage.IDLE,
            "chunks": f"{p.chunks_finished}/{p.total_chunks}" if p else "0/0",
            "progress_percent": p.progress_percent if p else 0.0,
            "synced": f"{p.synced_campaigns}/{p.total_campaigns}" if p else "0/0",
            "minutes_since_last_chunk": p.minutes_since_last_chunk if p else None,
            "failed_chunks": len(p.failed_chunks) if p else 0, "stuck": p.is_stuck if p else False,
            "error": (p.error_message if p else "")[:200],
        })
    return rows


def chunk_count(total: int) -> int:
    """How many chunks a first run of a shop with ``total`` campaigns gets."""
    if total <= settings.ADS_CHUNK_THRESHOLD:
        return 1 if total else 0
    return math.ceil(total / settings.ADS_CHUNK_SIZE)
