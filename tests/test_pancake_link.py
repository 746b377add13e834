"""Pancake ↔ Nhanh link by phone: the generalized matcher against the generator's truth, dry run, admin."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from customers.models import CustomerMapping, MatchedBy, NhanhCustomer, ShopifyCustomer
from customers.services.pulls import upsert_nhanh_customers
from integrations.nhanh.sandbox import _customer_id
from jobs.models import JobStatus
from pancake.models import PancakeAmbiguousLink, PancakeCustomer, PancakeNhanhLink
from pancake.services.linking import link_pancake_customers, start_link
from tests.pancake_helpers import connect, pull

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def both(sandbox_factory):
    server = sandbox_factory(customers=700, seed=3, only=["nhanh", "pancake"], pancake_pages=2,
                             pancake_customers=500, rate_limit=False)
    nhanh = server.apps["nhanh"]
    rows = [nhanh.customer(i) for i in range(nhanh.population.n_nhanh)]
    upsert_nhanh_customers(rows)
    connect(server)
    assert pull("backfill").status == JobStatus.COMPLETED
    return server


def ground_truth(server) -> tuple[set, set, set]:
    """(linked (page, psid, nhanh id), ambiguous (page, psid), without phone) from the generator's canonical phones."""
    population = server.apps["nhanh"].population
    by_phone: dict[str, set[int]] = {}
    for i in range(population.n_nhanh):
        for phone in population.nhanh_phones(i)[1]:
            by_phone.setdefault(phone, set()).add(_customer_id(i))
    linked, ambiguous, no_phone = set(), set(), set()
    for page_id, page in server.apps["pancake"].pages.items():
        for psid, row in page.rows.items():
            phones = row["phones_e164"]
            if not phones:
                no_phone.add((page_id, psid))
            candidates = set().union(*(by_phone.get(p, set()) for p in phones)) if phones else set()
            if len(candidates) == 1:
                linked.add((page_id, psid, next(iter(candidates))))
            elif candidates:
                ambiguous.add((page_id, psid))
    return linked, ambiguous, no_phone


def test_the_link_equals_the_generators_truth(both):
    result = link_pancake_customers()
    linked, ambiguous, no_phone = ground_truth(both)
    got = {(link.pancake_customer.page_id, link.pancake_customer.psid, link.nhanh_customer.nhanh_id)
           for link in PancakeNhanhLink.objects.select_related("pancake_customer", "nhanh_customer")}
    assert got == linked
    assert {(a.pancake_customer.page_id, a.pancake_customer.psid)
            for a in PancakeAmbiguousLink.objects.select_related("pancake_customer")} == ambiguous
    assert result.linked == len(linked) and result.ambiguous == len(ambiguous)
    assert result.skipped_no_phone == len(no_phone)
    # All kinds were planted: plenty linked, some ambiguous (a relative's phone, Nhanh duplicates), and one Nhanh
    # customer with chats on both pages (only the Pancake side must be unique).
    assert len(linked) > 300 and len(ambiguous) >= 5
    nhanh_ids = [n for _, _, n in linked]
    assert len(nhanh_ids) > len(set(nhanh_ids))
    assert all(link.matched_phone.startswith("+84") for link in PancakeNhanhLink.objects.all())
    again = link_pancake_customers()  # linked customers are left alone; nothing new
    assert again.linked == 0 and again.already_linked == len(linked)


def test_dry_run_writes_nothing_and_counts_the_same(both):
    dry = link_pancake_customers(dry_run=True)
    assert not PancakeNhanhLink.objects.exists() and not PancakeAmbiguousLink.objects.exists()
    real = link_pancake_customers()
    assert dry.linked == real.linked > 0 and dry.ambiguous == real.ambiguous


def test_the_command_and_the_job(both, capsys):
    call_command("automatch", "pancake", "--dry-run")
    assert "Would link" in capsys.readouterr().out
    job = start_link(run_now=True)
    assert job.status == JobStatus.COMPLETED and job.metadata["linked"] == PancakeNhanhLink.objects.count() > 0


def test_the_admin_shows_the_nhanh_customer_its_shopify_match_and_total(both, staff_client):
    link_pancake_customers()
    link = PancakeNhanhLink.objects.select_related("nhanh_customer", "pancake_customer").first()
    nhanh = link.nhanh_customer
    shopify = ShopifyCustomer.objects.create(shopify_id=9001, first_name="Lan", last_name="Trần", payload_hash="")
    CustomerMapping.objects.create(nhanh_customer=nhanh, shopify_customer=shopify, matched_by=MatchedBy.MANUAL)
    page = staff_client.get(reverse("admin:pancake_pancakecustomer_changelist") + f"?q={link.pancake_customer.psid}")
    html = page.content.decode()
    assert page.status_code == 200
    assert str(nhanh) in html and str(shopify) in html and f"{nhanh.total_spent:,}" in html
    detail = staff_client.get(reverse("admin:customers_nhanhcustomer_change", args=[nhanh.pk]))
    assert detail.status_code == 200 and "Pancake chats" in detail.content.decode()
    assert link.pancake_customer.psid in detail.content.decode()
    form = staff_client.get(reverse("admin:pancake_pancakecustomer_link"))
    assert form.status_code == 200
    done = staff_client.post(reverse("admin:pancake_pancakecustomer_link"), {"dry_run": "1"}, follow=True)
    assert "would link" in done.content.decode()
    pages = staff_client.get(reverse("admin:pancake_pancakepage_changelist"))
    assert pages.status_code == 200 and "Pull from Pancake" in pages.content.decode()
    assert "sandbox-pancake-page" not in pages.content.decode()  # tokens masked
    assert PancakeCustomer.objects.count() == 1000 and NhanhCustomer.objects.count() == 700
