"""Shopify pulls, auto-match against the generated ground truth, loyalty sync to Shopify metafields, and
the workflows: real HTTP to both sandboxes, the real database."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from customers.job_types import CustomerJobType as JobType
from customers.models import (
    AmbiguousMatch,
    CustomerMapping,
    LoyaltyTier,
    NhanhCustomer,
    ShopifyCustomer,
    ShopifyCustomerPhone,
    SyncStatus,
)
from customers.services.matching import auto_match_customers
from customers.services.sync import CUSTOMERS_PER_CALL, Loyalty, start_sync
from integrations.models import Connection
from integrations.nhanh import sandbox as nhanh_sandbox
from integrations.sandbox.server import control
from integrations.shopify import sandbox as shopify_sandbox
from jobs.models import BackgroundJob, JobStatus, StartedBy
from jobs.pull_specs import start_pull
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NHANH_BASE, NHANH_STEP = nhanh_sandbox.FIRST_ID, nhanh_sandbox.ID_STEP
SHOPIFY_BASE, SHOPIFY_STEP = 7_000_000_000, 11


@pytest.fixture(autouse=True)
def eager(settings, loyalty_tiers):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 6, "HTTP_BACKOFF_BASE": 0.01,
                           "HTTP_BACKOFF_MAX": 0.05, "SHOPIFY_BULK_POLL_SECONDS": 0.2}
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def connect(server):
    Connection.objects.update_or_create(system="nhanh", defaults={
        "base_url": server.url_for("nhanh"), "app_id": nhanh_sandbox.SANDBOX_APP_ID,
        "business_id": nhanh_sandbox.SANDBOX_BUSINESS_ID, "access_token": nhanh_sandbox.SANDBOX_ACCESS_TOKEN,
        "requests_per_window": None})
    Connection.objects.update_or_create(system="shopify", defaults={
        "base_url": server.url_for("shopify"), "access_token": shopify_sandbox.SANDBOX_ACCESS_TOKEN,
        "api_version": "2026-10"})


@pytest.fixture
def both(sandbox_factory):
    server = sandbox_factory(customers=1000, seed=21)
    connect(server)
    control(server.base_url, "shopify", "plan", {"maximum": 20000, "restore": 1000})  # Plus: tests are about logic
    return server


def pull_both():
    for system in ("nhanh", "shopify"):
        job = BackgroundJob.objects.get(pk=start_pull(system, "customers", "all").job.pk)
        assert job.status == JobStatus.COMPLETED, job.error


# --- Shopify pulls (issue 3) --------------------------------------------------------------------------------
def test_shopify_pull_all_and_with_query(both):
    job = BackgroundJob.objects.get(pk=start_pull("shopify", "customers", "all").job.pk)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.metadata["created"] == 1000 and ShopifyCustomer.objects.count() == 1000
    assert job.metadata["api_cost"] > 0
    again = BackgroundJob.objects.get(pk=start_pull("shopify", "customers", "all").job.pk)
    assert again.metadata["skipped"] == 1000 and again.metadata["created"] == 0
    # Phones from the phone field, the address and the note are all normalized.
    sources = set(ShopifyCustomerPhone.objects.values_list("source", flat=True))
    assert sources == {"shopify_phone", "shopify_address", "shopify_note"}
    ShopifyCustomer.objects.all().delete()
    query = "state:ENABLED AND updated_at:>='2025-06-01T00:00:00Z'"
    started = start_pull("shopify", "customers", "query", filters={"query": query})
    assert started.progress_id.startswith("shopify_customers_")
    want = {int(i) for i in control(both.base_url, "shopify", "expected", {"query": query})["result"]}
    assert 0 < len(want) < 1000
    assert set(ShopifyCustomer.objects.values_list("shopify_id", flat=True)) == want


def test_nhanh_and_shopify_pulls_have_different_ids_and_run_side_by_side(both):
    a = start_pull("nhanh", "customers", "all")
    b = start_pull("shopify", "customers", "all")
    assert a.progress_id == "nhanh_customers" and b.progress_id == "shopify_customers"


# --- auto-match against the ground truth ------------------------------------------------------------------
def ground_truth(population):
    """Expected matches from the generator's canonical phones (not from our normalizer)."""
    by_phone_s: dict[str, set[int]] = {}
    for j in range(population.n_shopify):
        for phone in population.shopify_phones(j):
            by_phone_s.setdefault(phone, set()).add(SHOPIFY_BASE + SHOPIFY_STEP * j)
    candidates: dict[int, set[int]] = {}
    no_phone = set()
    for i in range(population.n_nhanh):
        nid = NHANH_BASE + NHANH_STEP * i
        _, phones = population.nhanh_phones(i)
        if not phones:
            no_phone.add(nid)
        candidates[nid] = set().union(*(by_phone_s.get(p, set()) for p in phones)) if phones else set()
    claimed_by: dict[int, set[int]] = {}
    for nid, shops in candidates.items():
        for s in shops:
            claimed_by.setdefault(s, set()).add(nid)
    matched = {(nid, next(iter(shops))) for nid, shops in candidates.items()
               if len(shops) == 1 and len(claimed_by[next(iter(shops))]) == 1}
    ambiguous = {nid for nid, shops in candidates.items() if shops and (nid, next(iter(shops))) not in matched}
    return matched, ambiguous, no_phone


def test_match_equals_the_ground_truth_of_generated_data(both):
    pull_both()
    result = auto_match_customers()
    population = both.apps["nhanh"].population
    matched, ambiguous, no_phone = ground_truth(population)
    got = {(m.nhanh_customer.nhanh_id, m.shopify_customer.shopify_id)
           for m in CustomerMapping.objects.select_related("nhanh_customer", "shopify_customer")}
    assert got == matched
    assert {a.nhanh_customer.nhanh_id for a in AmbiguousMatch.objects.select_related("nhanh_customer")} == ambiguous
    assert result.skipped_no_phone == len(no_phone)
    # The generator planted all three kinds: two Nhanh claiming one Shopify, family phones, two phones each.
    assert len(matched) > 300 and len(ambiguous) >= 10
    two_phone_matches = CustomerMapping.objects.exclude(
        matched_phone__in=NhanhCustomer.objects.values("phones__e164").filter(phones__source="nhanh_mobile")
    )
    assert two_phone_matches.count() == 0  # every Nhanh match went through its mobile
    assert ShopifyCustomer.objects.filter(phones__source="shopify_note", mappings__isnull=False).exists()


# --- sync --------------------------------------------------------------------------------------------------
def shopify_metafields(server, shopify_id):
    gid = f"gid://shopify/Customer/{shopify_id}"
    return control(server.base_url, "shopify", "customer", {"id": gid})["result"]["metafields"]


@pytest.fixture
def matched(both):
    pull_both()
    auto_match_customers()
    return both


def test_sync_writes_total_and_tier_and_skips_unchanged_totals(matched):
    job = start_sync(scope="all", started_by=StartedBy.USER, run_now=True)
    n = CustomerMapping.objects.count()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.metadata["sent"] == n and job.failed == 0
    assert job.metadata["calls"] == -(-n // CUSTOMERS_PER_CALL)  # 12 customers per call, no call wasted
    loyalty = Loyalty.current()
    for m in CustomerMapping.objects.select_related("nhanh_customer", "shopify_customer")[:25]:
        fields = shopify_metafields(matched, m.shopify_customer.shopify_id)
        total = m.nhanh_customer.total_spent
        assert fields["custom.total_spent"] == {"value": str(total), "type": "number_integer"}
        assert fields["custom.loyalty_tier"]["value"] == loyalty.tier_for(total)
        assert m.sync_status == SyncStatus.SYNCED and m.last_sent_total == total and m.synced_at
    # The auto-sync (not forced) sends nothing when no total moved.
    auto = start_sync(scope="changed", force=False, started_by=StartedBy.BEAT, run_now=True)
    assert auto.metadata["sent"] == 0 and auto.metadata["calls"] == 0
    # One customer bought something: after a pull, only they are re-sent; a 500 VND move is below the threshold.
    moved, tiny = CustomerMapping.objects.select_related("nhanh_customer")[:2]
    control(matched.base_url, "nhanh", "touch", {"ids": [moved.nhanh_customer.nhanh_id],
                                                 "totalAmount": moved.nhanh_customer.total_spent + 25_000_000})
    control(matched.base_url, "nhanh", "touch", {"ids": [tiny.nhanh_customer.nhanh_id],
                                                 "totalAmount": tiny.nhanh_customer.total_spent + 500})
    start_pull("nhanh", "customers", "all")
    auto = start_sync(scope="changed", force=False, started_by=StartedBy.BEAT, run_now=True)
    assert auto.metadata["sent"] == 1
    fields = shopify_metafields(matched, moved.shopify_customer.shopify_id)
    assert fields["custom.total_spent"]["value"] == str(moved.nhanh_customer.total_spent + 25_000_000)
    # A manual sync is forced: everything is sent again.
    assert start_sync(scope="all", started_by=StartedBy.USER, run_now=True).metadata["sent"] == n


def test_tiers_follow_the_editable_thresholds(matched):
    LoyaltyTier.objects.all().delete()
    LoyaltyTier.objects.create(name="Thường", min_total=0)
    LoyaltyTier.objects.create(name="VIP", min_total=5_000_000)
    start_sync(scope="all", started_by=StartedBy.USER, run_now=True)
    for m in CustomerMapping.objects.select_related("nhanh_customer", "shopify_customer")[:20]:
        expected = "VIP" if m.nhanh_customer.total_spent >= 5_000_000 else "Thường"
        assert shopify_metafields(matched, m.shopify_customer.shopify_id)["custom.loyalty_tier"]["value"] == expected


def test_auto_sync_sends_tiers_changed_by_an_edited_threshold(matched):
    start_sync(scope="all", started_by=StartedBy.USER, run_now=True)
    LoyaltyTier.objects.filter(name="Silver").update(min_total=5_000_000)  # was 6 M
    moved = CustomerMapping.objects.filter(nhanh_customer__total_spent__gte=5_000_000,
                                           nhanh_customer__total_spent__lt=6_000_000)
    assert moved.exists()
    auto = start_sync(scope="changed", force=False, started_by=StartedBy.BEAT, run_now=True)
    assert auto.metadata["sent"] == moved.count()
    assert auto.metadata["skipped"] == CustomerMapping.objects.count() - moved.count()
    m = moved.select_related("shopify_customer").first()
    assert shopify_metafields(matched, m.shopify_customer.shopify_id)["custom.loyalty_tier"]["value"] == "Silver"


def test_one_bad_value_fails_only_its_customer_and_retry_failed_resends_only_failures(matched):
    mappings = list(CustomerMapping.objects.select_related("shopify_customer").order_by("pk")[:30])
    bad = [mappings[3], mappings[17]]  # in the first and second batch
    control(matched.base_url, "shopify", "inject_user_errors",
            {"owner_ids": [m.shopify_customer.gid for m in bad], "message": "Value is invalid for this customer"})
    job = start_sync(scope="ids", ids=[m.pk for m in mappings], started_by=StartedBy.USER, run_now=True)
    assert job.status == JobStatus.COMPLETED
    assert (job.metadata["sent"], job.failed) == (28, 2)
    failed = CustomerMapping.objects.filter(sync_status=SyncStatus.FAILED)
    assert set(failed.values_list("pk", flat=True)) == {m.pk for m in bad}
    errors = json.loads(failed.first().last_error)
    assert errors[0]["message"] == "Value is invalid for this customer"  # Shopify's words, verbatim
    assert shopify_metafields(matched, mappings[4].shopify_customer.shopify_id)  # its batch-mates got through
    assert "custom.total_spent" not in shopify_metafields(matched, bad[0].shopify_customer.shopify_id)
    control(matched.base_url, "shopify", "inject_user_errors", {"owner_ids": []})
    retry = start_sync(scope="failed", started_by=StartedBy.USER, run_now=True)
    assert retry.type == JobType.RETRY_FAILED_SYNC
    assert retry.metadata["sent"] == 2 and retry.processed == 2
    assert not CustomerMapping.objects.filter(sync_status=SyncStatus.FAILED).exists()
    assert CustomerMapping.objects.get(pk=bad[0].pk).sync_attempts == 2


def test_throttling_is_ridden_out_by_pacing(matched):
    control(matched.base_url, "shopify", "plan", {"maximum": 150, "restore": 200})  # a tiny, fast bucket
    job = start_sync(scope="all", started_by=StartedBy.USER, run_now=True)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.failed == 0 and job.metadata["sent"] == CustomerMapping.objects.count()


def test_create_missing_customers_is_an_option(matched):
    unmapped_before = NhanhCustomer.objects.filter(mapping__isnull=True).count()
    job = start_sync(scope="all", started_by=StartedBy.USER, run_now=True)
    assert job.metadata["created"] == 0  # off by default
    job = start_sync(scope="changed", force=False, create_missing=True, started_by=StartedBy.USER, run_now=True)
    assert job.status == JobStatus.COMPLETED
    created = job.metadata["created"]
    assert created > 0 and created + job.metadata["failed_customers"] <= unmapped_before, job.metadata["errors"]
    made = CustomerMapping.objects.filter(matched_by="created").select_related("shopify_customer", "nhanh_customer")
    m = made.first()
    assert shopify_metafields(matched, m.shopify_customer.shopify_id)["custom.total_spent"]["value"] == str(
        m.nhanh_customer.total_spent)


def test_sync_command_and_automatch_command(matched, capsys):
    CustomerMapping.objects.all().delete()
    call_command("automatch", "customers", "--wait")
    assert "Matched" in capsys.readouterr().out and CustomerMapping.objects.exists()
    call_command("sync_shopify", "customers", "--all", "--wait")
    assert "Sent" in capsys.readouterr().out
    assert not CustomerMapping.objects.exclude(sync_status=SyncStatus.SYNCED).exists()


# --- workflows ---------------------------------------------------------------------------------------------
def test_daily_workflow_runs_its_steps_in_order(both):
    from customers.tasks import workflow_daily

    workflow_daily.delay()
    jobs = list(BackgroundJob.objects.order_by("pk"))
    assert [j.type for j in jobs] == [JobType.PULL_NHANH_CUSTOMERS, JobType.PULL_SHOPIFY_CUSTOMERS,
                                      JobType.AUTO_MATCH_CUSTOMERS, JobType.CUSTOMER_SYNC]
    assert all(j.status == JobStatus.COMPLETED for j in jobs), [(j.type, j.error) for j in jobs]
    assert all(j.started_by == StartedBy.BEAT for j in jobs)
    assert jobs[0].params["mode"] == "new" and jobs[3].params["scope"] == "changed"


@pytest.mark.worker
def test_weekly_chord_starts_automatch_only_after_both_pulls(both, celery_worker_process):
    from config.celery import app
    from customers.tasks import workflow_weekly

    app.conf.task_always_eager = False
    control(both.base_url, "nhanh", "faults", {"latency_ms": 30})  # the Nhanh pull takes a while
    for _ in range(2):
        celery_worker_process()
    workflow_weekly.delay()
    match = wait_for(lambda: BackgroundJob.objects.filter(type=JobType.AUTO_MATCH_CUSTOMERS,
                                                          status=JobStatus.COMPLETED).first(),
                     timeout=120, message="auto-match after the chord")
    pulls = BackgroundJob.objects.filter(type__in=[JobType.PULL_NHANH_CUSTOMERS, JobType.PULL_SHOPIFY_CUSTOMERS])
    assert pulls.count() == 2 and all(p.status == JobStatus.COMPLETED for p in pulls)
    assert all(match.started_at >= p.completed_at for p in pulls)
    assert match.metadata["matched"] > 0


def test_the_senders_leave_the_database_to_the_jobs_thread(matched):
    """The loyalty senders only talk to Shopify; the health of their calls is written on the job's thread."""
    import threading

    from django.db.backends.signals import connection_created

    from customers.services.sync import sync_customers
    from integrations import status
    from integrations.models import UpstreamStatus

    opened_on: list[str] = []

    def opened(sender, connection, **kwargs):
        opened_on.append(threading.current_thread().name)

    status.forget_written()
    UpstreamStatus.objects.filter(key="shopify").delete()
    connection_created.connect(opened)
    try:
        totals = sync_customers(None, scope="all", force=True)
    finally:
        connection_created.disconnect(opened)
    assert totals.calls >= 2
    assert not [name for name in opened_on if name.startswith("sync")], opened_on
    assert UpstreamStatus.objects.get(key="shopify").ok
