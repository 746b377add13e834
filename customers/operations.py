"""The customers kinds of ``manage.py automatch`` and ``manage.py sync_shopify`` (registered in ready())."""

from __future__ import annotations

from jobs.cli import record_id
from jobs.models import BackgroundJob, StartedBy
from jobs.operations import Argument, Operation, Started, dry_runnable, register_operation
from jobs.results import result_of

from .models import CustomerMapping
from .services.matching import start_auto_match
from .services.sync import start_sync


def _report_automatch(job: BackgroundJob, o: dict) -> list[str]:
    r = result_of(job)
    lines = [f"{'Would match' if r.dry_run else 'Matched'} {r.matched}; {r.ambiguous} ambiguous, "
             f"{r.skipped_no_phone} without a phone, {r.no_candidate} without a candidate, {r.already_mapped} "
             f"already mapped (SQL {r.sql_seconds} s)."]
    for a in r.ambiguous_examples[:10]:
        others = ", ".join(map(str, a["other_nhanh_ids"]))
        rivals = f"; also claimed by Nhanh {others}" if others else ""
        lines.append(f"  ambiguous: Nhanh {a['nhanh_id']} ({', '.join(a['phones'])}) → Shopify "
                     f"{', '.join(map(str, a['shopify_ids']))}{rivals}")
    return lines


def _start_sync(o: dict, *, wait: bool) -> Started:
    chosen = [flag for flag, key in (("--all", "all"), ("--ids", "ids"), ("--retry-failed", "retry_failed"),
                                     ("--changed-only", "changed_only")) if o.get(key)]
    if len(chosen) > 1:
        raise ValueError(f"choose one of {', '.join(chosen)}")
    ids = o.get("ids")
    if ids:
        unknown = sorted(set(ids) - set(CustomerMapping.objects.filter(pk__in=ids).values_list("pk", flat=True)))
        if unknown:
            raise ValueError(f"no customer mapping with id {', '.join(map(str, unknown))}")
    scope = "ids" if ids else "failed" if o.get("retry_failed") else "changed" if o.get("changed_only") else "all"
    force = True if o.get("force") else (False if o.get("changed_only") else None)
    job = start_sync(scope=scope, ids=ids, force=force, started_by=StartedBy.COMMAND, start_now=not wait,
                     create_missing=o.get("create_missing") or None)
    return Started(job, queued_message=f"Sync ({scope}) queued as job #{job.pk}.")


def _report_sync(job: BackgroundJob, o: dict) -> list[str]:
    r = result_of(job)
    return [f"Sent {r.sent}, unchanged {r.skipped}, failed {r.failed_customers}, created {r.created} "
            f"in {r.calls} calls."] + [f"  {error}" for error in r.errors[:5]]


def register() -> None:
    register_operation(Operation(
        "automatch", "customers", dry_runnable(start_auto_match, "Auto-match"), _report_automatch,
        arguments=(Argument(("--dry-run",), {"action": "store_true", "help": "Report without writing."}),),
    ))
    register_operation(Operation(
        "sync_shopify", "customers", _start_sync, _report_sync,
        arguments=(
            Argument(("--all",), {"action": "store_true", "help": "Every matched record (the default)."}),
            Argument(("--ids",), {"nargs": "+", "type": record_id, "metavar": "MAPPING_ID"}),
            Argument(("--retry-failed",), {"action": "store_true"}),
            Argument(("--changed-only",), {"action": "store_true", "help": "Customers: only those whose total "
                                                                           "moved by the threshold."}),
            Argument(("--force",), {"action": "store_true", "help": "Send even unchanged values (default for "
                                                                    "--all/--ids/--retry-failed)."}),
            Argument(("--create-missing",), {"action": "store_true", "help": "Customers: also create Shopify "
                                                                             "customers for unmatched Nhanh ones."}),
        ),
    ))
