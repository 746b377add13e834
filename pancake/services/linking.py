"""Link Pancake chat partners to the shop's Nhanh customers by phone, with the same set-based matcher as
Nhanh ↔ Shopify (``customers.services.matching.PhoneMatcher``): a Pancake customer whose phones point at exactly
one Nhanh customer is linked; one with several candidates is listed as ambiguous, never guessed. A Nhanh customer
may have several Pancake customers (the same person chatting with several pages), so only the Pancake side must be
unique. A Pancake customer that has a link is left alone by later runs. Tracked as LINK_PANCAKE_CUSTOMERS."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.models import NhanhCustomer, NhanhCustomerPhone
from customers.services.matching import PhoneMatcher, group_ambiguous, write_links
from jobs import services as jobs
from jobs.models import BackgroundJob, StartedBy
from jobs.operations import Argument, Operation, dry_runnable, register_operation
from jobs.results import result_of

from ..models import PancakeAmbiguousLink, PancakeCustomer, PancakeCustomerPhone, PancakeNhanhLink

log = logging.getLogger(__name__)

JOB_TYPE = "LINK_PANCAKE_CUSTOMERS"
LINK_LOCK = (0x5B0C, 1)  # pg_advisory_xact_lock(class, id): one link run at a time


def pancake_nhanh_matcher() -> PhoneMatcher:
    return PhoneMatcher(
        left=PancakeCustomer._meta.db_table, left_phones=PancakeCustomerPhone._meta.db_table,
        right_phones=NhanhCustomerPhone._meta.db_table, links=PancakeNhanhLink._meta.db_table,
        link_left="pancake_customer_id", link_right="nhanh_customer_id", right_exclusive=False,
    )


@dataclass
class LinkResult:
    linked: int = 0
    ambiguous: int = 0
    skipped_no_phone: int = 0
    no_candidate: int = 0
    already_linked: int = 0
    considered: int = 0
    dry_run: bool = False
    sql_seconds: float = 0.0
    ambiguous_examples: list[dict] = field(default_factory=list)

    def as_metadata(self) -> dict:
        return dict(self.__dict__)


def link_pancake_customers(*, dry_run: bool = False, examples: int | None = None) -> LinkResult:
    examples = settings.SHOPBRIDGE["ERROR_EXAMPLES_KEPT"] if examples is None else examples
    matcher = pancake_nhanh_matcher()
    result = LinkResult(dry_run=dry_run)
    with transaction.atomic(durable=True), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(LINK_LOCK))
        cur.execute(matcher.counts_sql())
        no_phone, unlinked, linked_before = cur.fetchone()
        started = time.perf_counter()
        matcher.stage_pairs(cur)
        if dry_run:
            result.linked = matcher.count_matches(cur)
        else:
            result.linked = write_links(cur, matcher, ("matched_phone", "matched_at"), "phone, %s", [timezone.now()])
        ambiguous = group_ambiguous(matcher.ambiguous_pairs(cur))
        matcher.drop_pairs(cur)
        result.sql_seconds = round(time.perf_counter() - started, 3)
        if not dry_run:
            PancakeAmbiguousLink.objects.all().delete()
            PancakeAmbiguousLink.objects.bulk_create(
                [PancakeAmbiguousLink(pancake_customer_id=a["left_id"], phones=a["phones"],
                                      nhanh_candidates=a["candidates"]) for a in ambiguous], batch_size=2000)
    result.ambiguous = len(ambiguous)
    result.ambiguous_examples = _examples(ambiguous[:examples])
    result.skipped_no_phone, result.already_linked, result.considered = no_phone, linked_before, unlinked
    result.no_candidate = unlinked - no_phone - result.linked - result.ambiguous
    return result


def _examples(ambiguous: list[dict]) -> list[dict]:
    """Staff know them by page, psid and Nhanh id, not by our row numbers."""
    pancake = {c.pk: c for c in PancakeCustomer.objects.filter(pk__in=[a["left_id"] for a in ambiguous])}
    nhanh = dict(NhanhCustomer.objects.filter(pk__in={r for a in ambiguous for r in a["candidates"]})
                 .values_list("pk", "nhanh_id"))
    return [{"page_id": pancake[a["left_id"]].page_id, "psid": pancake[a["left_id"]].psid, "phones": a["phones"],
             "nhanh_ids": [nhanh.get(r) for r in a["candidates"]]} for a in ambiguous if a["left_id"] in pancake]


# --- as a job, and `manage.py automatch pancake` ------------------------------------------------------------
def start_link(*, dry_run: bool = False, started_by: str = StartedBy.SYSTEM, user=None,
               retry_of: BackgroundJob | None = None, run_now: bool = False, **_ignored) -> BackgroundJob:
    job = jobs.create_job(JOB_TYPE, params={"dry_run": dry_run}, started_by=started_by, user=user,
                          retry_of=retry_of, metadata={"dry_run": dry_run})
    return jobs.launch(job, run_now=run_now)


def run_link_job(ctx: jobs.JobContext) -> None:
    result = link_pancake_customers(dry_run=bool(ctx.params.get("dry_run")))
    ctx.progress(total=result.considered, processed=result.considered, successful=result.linked, failed=0,
                 metadata=result.as_metadata())
    log.info("pancake link%s: %s linked, %s ambiguous, %s without phone (SQL %.2f s)",
             " (dry run)" if result.dry_run else "", result.linked, result.ambiguous, result.skipped_no_phone,
             result.sql_seconds)


def _report_command(job: BackgroundJob, o: dict) -> list[str]:
    r = result_of(job)
    lines = [f"{'Would link' if r.dry_run else 'Linked'} {r.linked} Pancake customers to Nhanh customers; "
             f"{r.ambiguous} ambiguous, {r.skipped_no_phone} without a phone, {r.no_candidate} without a candidate, "
             f"{r.already_linked} already linked (SQL {r.sql_seconds} s)."]
    lines += [f"  ambiguous: page {a['page_id']} psid {a['psid']} ({', '.join(a['phones'])}) → Nhanh "
              f"{', '.join(map(str, a['nhanh_ids']))}" for a in r.ambiguous_examples[:10]]
    return lines


def register() -> None:
    jobs.register_job_type(JOB_TYPE, label=_("Link Pancake ↔ Nhanh customers"), run=run_link_job, start=start_link,
                           result=LinkResult, permission="pancake.run_pancake_link")
    register_operation(Operation(
        "automatch", "pancake", dry_runnable(start_link, "Pancake ↔ Nhanh link"), _report_command,
        arguments=(Argument(("--dry-run",), {"action": "store_true", "help": "Report without writing."}),),
    ))
