"""The budget scheduler (every :00 and :30). It looks at every enabled schedule and asks "is a window of
it active NOW?", not "does one start in this half hour?": a missed tick catches up at the next one. When
the window has ended, the budget the campaign had before is put back. Every change is logged with the old
and the new value. ``applied_occurrence`` makes each tick idempotent; Shopee's ``reference_id`` (derived
from the schedule and the occurrence) makes a call repeated after a crash harmless."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.errors import RequestRejected, UpstreamError

from ..models import BudgetAction, BudgetLog, BudgetSchedule, Campaign
from .sync import _dec
from .tokens import shop_client

log = logging.getLogger(__name__)


def _runs_on(schedule: BudgetSchedule, day) -> bool:
    days = {int(d) for d in schedule.days_of_week.split(",") if d.strip().isdigit()}
    dates = set(schedule.dates or [])
    if not days and not dates:
        return True
    return day.weekday() in days or day.isoformat() in dates


def occurrence_at(schedule: BudgetSchedule, now: datetime) -> str | None:
    """The key of the schedule's window that contains ``now`` (local time), or None."""
    local = timezone.localtime(now)
    t, today = local.time().replace(tzinfo=None), local.date()
    start, end = schedule.start_time, schedule.end_time
    crosses_midnight = end <= start
    if start <= t and (crosses_midnight or t < end) and _runs_on(schedule, today):
        return f"{today.isoformat()}T{start:%H:%M}"
    yesterday = today - timedelta(days=1)
    if crosses_midnight and t < end and _runs_on(schedule, yesterday):
        return f"{yesterday.isoformat()}T{start:%H:%M}"
    return None


def _live_budget(client, campaign: Campaign):
    rows = client.campaign_settings([campaign.campaign_id], info_types=(1,))
    for row in rows:
        common = row.get("common_info") or {}
        if int(row.get("campaign_id", 0)) == campaign.campaign_id and "campaign_budget" in common:
            return _dec(common["campaign_budget"])
    return campaign.daily_budget


def _edit(client, campaign: Campaign, budget, reference: str) -> None:
    try:
        client.edit_budget(campaign.campaign_id, float(budget), reference_id=reference, ad_type=campaign.ad_type)
    except RequestRejected as exc:
        # The same reference was accepted before (we crashed before saving): the change is in place.
        if "reference_id" not in str(exc):
            raise


def run_budget_scheduler(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    counts = {"applied": 0, "restored": 0, "failed": 0, "unchanged": 0}
    candidates = BudgetSchedule.objects.filter(Q(enabled=True) | ~Q(applied_occurrence="")).values_list("pk", flat=True)
    for pk in list(candidates):
        try:
            outcome = _tick(pk, now)
        except Exception:
            log.exception("budget schedule %s failed", pk)
            outcome = "failed"
        counts[outcome] += 1
    return counts


def _tick(pk: int, now: datetime) -> str:
    with transaction.atomic():
        qs = BudgetSchedule.objects.select_related("campaign__shop").filter(pk=pk)
        # One scheduler per schedule at a time (a duplicate beat, a manual run): the others skip it.
        qs = qs.select_for_update(skip_locked=True, of=("self",)) if connection.vendor == "postgresql" else qs
        schedule = qs.first()
        if schedule is None:
            return "unchanged"
        key = occurrence_at(schedule, now) if schedule.enabled else None
        if key and key != schedule.applied_occurrence:
            return _apply(schedule, key, now)
        if not key and schedule.applied_occurrence:
            return _restore(schedule, now)
        return "unchanged"


def _apply(schedule: BudgetSchedule, key: str, now) -> str:
    campaign = schedule.campaign
    client = shop_client(campaign.shop)
    reference = f"sb{schedule.pk}-{key}-apply"
    try:
        # Back-to-back occurrences keep the budget from before the first one.
        old = schedule.previous_budget if schedule.applied_occurrence else _live_budget(client, campaign)
        _edit(client, campaign, schedule.budget, reference)
    except UpstreamError as exc:
        BudgetLog.objects.create(schedule=schedule, campaign=campaign, action=BudgetAction.APPLIED, occurrence=key,
                                 old_budget=campaign.daily_budget, new_budget=schedule.budget, ok=False,
                                 error=str(exc)[:2000], reference_id=reference)
        BudgetSchedule.objects.filter(pk=schedule.pk).update(last_error=str(exc)[:2000])
        return "failed"
    finally:
        client.close()
    BudgetSchedule.objects.filter(pk=schedule.pk).update(applied_occurrence=key, previous_budget=old, applied_at=now,
                                                         last_error="")
    Campaign.objects.filter(pk=campaign.pk).update(daily_budget=schedule.budget)
    BudgetLog.objects.create(schedule=schedule, campaign=campaign, action=BudgetAction.APPLIED, occurrence=key,
                             old_budget=old, new_budget=schedule.budget, reference_id=reference)
    log.info("budget of campaign %s: %s → %s (%s)", campaign.campaign_id, old, schedule.budget, key)
    return "applied"


def _restore(schedule: BudgetSchedule, now) -> str:
    campaign = schedule.campaign
    key, previous = schedule.applied_occurrence, schedule.previous_budget
    reference = f"sb{schedule.pk}-{key}-restore"
    client = shop_client(campaign.shop)
    try:
        if previous is not None:
            _edit(client, campaign, previous, reference)
    except UpstreamError as exc:
        BudgetLog.objects.create(schedule=schedule, campaign=campaign, action=BudgetAction.RESTORED, occurrence=key,
                                 old_budget=schedule.budget, new_budget=previous, ok=False, error=str(exc)[:2000],
                                 reference_id=reference)
        BudgetSchedule.objects.filter(pk=schedule.pk).update(last_error=str(exc)[:2000])
        return "failed"
    finally:
        client.close()
    BudgetSchedule.objects.filter(pk=schedule.pk).update(applied_occurrence="", previous_budget=None, last_error="")
    if previous is not None:
        Campaign.objects.filter(pk=campaign.pk).update(daily_budget=previous)
    BudgetLog.objects.create(schedule=schedule, campaign=campaign, action=BudgetAction.RESTORED, occurrence=key,
                             old_budget=schedule.budget, new_budget=previous, reference_id=reference)
    return "restored"
