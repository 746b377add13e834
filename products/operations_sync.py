"""``manage.py sync_shopify products [--all|--ids …|--retry-failed] [--prices] [--wait]``."""

from __future__ import annotations

from django.core.management.base import CommandError

from jobs.cli import record_id
from jobs.models import BackgroundJob, StartedBy
from jobs.operations import Argument, Operation, Started, register_operation
from jobs.results import result_of

from .models import ProductMapping
from .services.sync import start_product_sync


def _start(o: dict, *, wait: bool) -> Started:
    chosen = [flag for flag, key in (("--all", "all"), ("--ids", "ids"), ("--retry-failed", "retry_failed"))
              if o.get(key)]
    if len(chosen) > 1:
        raise ValueError(f"choose one of {', '.join(chosen)}")
    for flag in ("changed_only", "create_missing", "force"):
        if o.get(flag):
            raise ValueError(f"--{flag.replace('_', '-')} is for customers; products always send only what differs")
    ids = o.get("ids")
    if ids:
        unknown = sorted(set(ids) - set(ProductMapping.objects.filter(pk__in=ids).values_list("pk", flat=True)))
        if unknown:
            raise ValueError(f"no product mapping with id {', '.join(map(str, unknown))}")
    scope = "ids" if ids else "failed" if o.get("retry_failed") else "all"
    job = start_product_sync(scope=scope, ids=ids, prices=True if o.get("prices") else None,
                             started_by=StartedBy.COMMAND, start_now=not wait)
    return Started(job, queued_message=f"Product sync ({scope}) queued as job #{job.pk}.")


def _report(job: BackgroundJob, o: dict) -> list[str]:
    r = result_of(job)
    lines = [f"{r.mappings} mappings: {r.synced} in step, {r.failed} failed; {r.levels_sent} levels set "
             f"({r.levels_unchanged} already right, {r.stale_reread} re-read after a stale answer, "
             f"{r.resent_pushes} earlier pushes resent) in {r.calls} calls"
             + (f"; {r.prices_sent} prices in {r.price_calls} calls." if r.prices else ".")]
    lines += [f"  {error}" for error in r.errors[:5]]
    if r.failed:
        # Exit non-zero: some mappings did not reach Shopify (their errors are on the mappings).
        raise CommandError(" ".join(lines[:2]).strip())
    return lines


def register() -> None:
    register_operation(Operation(
        "sync_shopify", "products", _start, _report,
        arguments=(
            Argument(("--all",), {"action": "store_true", "help": "Every matched record (the default)."}),
            Argument(("--ids",), {"nargs": "+", "type": record_id, "metavar": "MAPPING_ID"}),
            Argument(("--retry-failed",), {"action": "store_true"}),
            Argument(("--prices",), {"action": "store_true", "help": "Products: also send changed prices "
                                                                     "(off by default)."}),
        ),
    ))
