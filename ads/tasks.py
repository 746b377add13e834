"""Celery entry points; each is a thin caller of ``ads.services``. A run's lanes are a chord whose callback
is the join point (the counted completion has normally moved the stage on already)."""

from celery import chord, group, shared_task

from .services import budgets, sync

BEAT = {"time_limit": 300, "soft_time_limit": 280}
RUN = {"time_limit": 3600, "soft_time_limit": 3500}


def dispatch_lanes(shop_pk: int, run_id, lanes: int) -> None:
    chord(group(sync_lane.si(shop_pk, str(run_id)) for _ in range(max(1, lanes))),
          run_finished.si(shop_pk, str(run_id))).apply_async()


@shared_task(name="ads.start_run", **RUN)
def start_run_task(entry_id: int) -> dict:
    plan = sync.begin_run(entry_id)
    if plan is None:
        return {"started": False}
    dispatch_lanes(plan.shop_pk, plan.run_id, plan.lanes)
    return {"started": True, "run_id": str(plan.run_id), "chunks": plan.chunks, "lanes": plan.lanes}


# Not acks_late: a lane killed mid-chunk leaves that chunk "processing"; the stuck cleanup fails the run and
# re-queues the shop, rather than a redelivery racing the counters.
@shared_task(name="ads.sync_lane", **RUN)
def sync_lane(shop_pk: int, run_id: str) -> int:
    return sync.run_lane(shop_pk, run_id)


@shared_task(name="ads.run_finished", **RUN)
def run_finished(shop_pk: int, run_id: str) -> None:
    sync.ensure_finished(shop_pk, run_id)


@shared_task(name="ads.enqueue_shops", expires=600, **BEAT)
def enqueue_shops() -> int:
    return sync.enqueue_all()


@shared_task(name="ads.process_queue", expires=240, **BEAT)
def process_queue() -> list[int]:
    return sync.process_queue()


@shared_task(name="ads.cleanup_stuck", expires=500, **BEAT)
def cleanup_stuck() -> list[int]:
    return sync.cleanup_stuck()


@shared_task(name="ads.backfill", expires=3600, **BEAT)
def backfill() -> int:
    return sync.enqueue_all(sync_type="backfill")


@shared_task(name="ads.cleanup_queue", expires=3600, **BEAT)
def cleanup_queue() -> int:
    return sync.cleanup_queue()


@shared_task(name="ads.budget_scheduler", expires=1500, **BEAT)
def budget_scheduler() -> dict:
    return budgets.run_budget_scheduler()
