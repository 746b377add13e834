"""The budget scheduler against the Shopee sandbox: applied in its window, caught up after a missed tick,
restored after, idempotent, logged."""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ads.models import BudgetAction, BudgetLog, BudgetSchedule, Campaign, Shop
from ads.services import setup_sandbox_shops
from ads.services.budgets import occurrence_at, run_budget_scheduler
from ads.services.sync import start_shop_sync
from integrations.sandbox.server import control
from jobs.models import StartedBy
from jobs.services import run_job

pytestmark = pytest.mark.django_db(transaction=True)
VN = ZoneInfo("Asia/Ho_Chi_Minh")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=VN)  # 2026-12-02 is a Wednesday


@pytest.fixture
def campaign(sandbox_factory, settings) -> tuple:
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 2, "HTTP_BACKOFF_BASE": 0.01}
    server = sandbox_factory(only=["shopee"], shopee_shops=[35], seed=4, rate_limit=False)
    setup_sandbox_shops(server.base_url)
    run_job(start_shop_sync(Shop.objects.get(), started_by=StartedBy.COMMAND, foreground=True).pk)
    # A campaign with a budget (0 means unlimited in Shopee's terms).
    return server, Campaign.objects.filter(daily_budget__gt=0).order_by("campaign_id").first()


def live_budget(server, campaign) -> float:
    truth = control(server.base_url, "shopee", "campaigns", {"shop_id": campaign.shop.shop_id})["result"]
    return truth["budgets"][str(campaign.campaign_id)]


def edits(server) -> list:
    return control(server.base_url, "shopee", "stats")["result"]["edits"]


def schedule(campaign, start=time(10), end=time(12), **kw) -> BudgetSchedule:
    return BudgetSchedule.objects.create(campaign=campaign, start_time=start, end_time=end, budget=Decimal("999000"),
                                         **kw)


def test_applied_in_its_window_idempotent_and_restored_after(campaign):
    server, c = campaign
    before = live_budget(server, c)
    s = schedule(c)
    assert run_budget_scheduler(at(2, 9, 30))["unchanged"] == 1 and edits(server) == []
    assert run_budget_scheduler(at(2, 10))["applied"] == 1
    assert live_budget(server, c) == 999000
    assert run_budget_scheduler(at(2, 10))["unchanged"] == 1  # the same tick again
    assert run_budget_scheduler(at(2, 11, 30))["unchanged"] == 1
    assert len(edits(server)) == 1
    assert run_budget_scheduler(at(2, 12))["restored"] == 1
    assert live_budget(server, c) == before
    c.refresh_from_db()
    assert c.daily_budget == Decimal(str(before))
    logs = list(BudgetLog.objects.order_by("created_at", "id").values_list("action", "old_budget", "new_budget", "ok"))
    assert logs == [(BudgetAction.APPLIED, Decimal(str(before)), Decimal("999000"), True),
                    (BudgetAction.RESTORED, Decimal("999000"), Decimal(str(before)), True)]
    s.refresh_from_db()
    assert s.applied_occurrence == "" and s.previous_budget is None
    assert run_budget_scheduler(at(2, 12, 30))["unchanged"] == 1 and len(edits(server)) == 2


def test_a_missed_tick_catches_up_and_a_missed_end_still_restores(campaign):
    server, c = campaign
    before = live_budget(server, c)
    schedule(c)
    # The 10:00 tick never ran: 10:30 applies the window that is active now.
    assert run_budget_scheduler(at(2, 10, 30))["applied"] == 1 and live_budget(server, c) == 999000
    # The 12:00 tick never ran either: 13:00 restores.
    assert run_budget_scheduler(at(2, 13))["restored"] == 1 and live_budget(server, c) == before
    # The next day's window is a new occurrence.
    assert run_budget_scheduler(at(3, 10))["applied"] == 1
    assert BudgetLog.objects.filter(action=BudgetAction.APPLIED).values("occurrence").distinct().count() == 2


def test_windows_across_midnight_weekdays_and_dates(campaign):
    server, c = campaign
    night = schedule(c, start=time(23), end=time(1))
    assert occurrence_at(night, at(3, 0, 30)) == "2026-12-02T23:00"
    assert occurrence_at(night, at(3, 1, 0)) is None
    weekend = schedule(c, days_of_week="5,6")
    assert occurrence_at(weekend, at(2, 10)) is None and occurrence_at(weekend, at(5, 10)) == "2026-12-05T10:00"
    sale = schedule(c, dates=["2026-12-12"])
    assert occurrence_at(sale, at(12, 11)) == "2026-12-12T10:00" and occurrence_at(sale, at(11, 11)) is None


def test_a_disabled_schedule_that_was_applied_is_restored(campaign):
    server, c = campaign
    before = live_budget(server, c)
    s = schedule(c)
    run_budget_scheduler(at(2, 10))
    BudgetSchedule.objects.filter(pk=s.pk).update(enabled=False)
    assert run_budget_scheduler(at(2, 10, 30))["restored"] == 1 and live_budget(server, c) == before
