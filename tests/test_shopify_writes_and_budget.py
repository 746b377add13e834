"""Writes that are not safe to repeat (customerCreate committed, then the connection dropped) and the cost
budget shared by several processes calling one shop, over real HTTP against the Shopify sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from integrations.sandbox.server import control
from integrations.shopify.budget import FLIGHT_SECONDS, reserve_points, settle_points
from integrations.shopify.client import ShopifyClient
from integrations.shopify.sandbox import SANDBOX_ACCESS_TOKEN

FAST = {"backoff_base": 0.01, "backoff_max": 0.1}
REPO = Path(__file__).resolve().parents[1]


def start(sandbox_factory, customers=200, rate_limit=False):
    return sandbox_factory(customers=customers, seed=9, rate_limit=rate_limit, only=["shopify"])


def make_client(server, **kw) -> ShopifyClient:
    return ShopifyClient(server.url_for("shopify"), access_token=SANDBOX_ACCESS_TOKEN, **{**FAST, **kw})


def hook(server, action, payload=None):
    return control(server.base_url, "shopify", action, payload)["result"]


NEW_CUSTOMER = {"firstName": "Thu", "lastName": "Lê", "phone": "+84912000111", "email": "thu.le.new@example.com"}


# --- customerCreate: commit, then the connection drops --------------------------------------------------
def test_a_create_committed_before_the_connection_dropped_is_found_not_repeated(sandbox_factory):
    server = start(sandbox_factory)
    control(server.base_url, "shopify", "faults", {"drop_after_commit_next": 1})
    client = make_client(server)
    customer, errors = client.customer_create(dict(NEW_CUSTOMER))
    assert errors == [] and customer["defaultPhoneNumber"] == {"phoneNumber": "+84912000111"}
    assert hook(server, "stats")["created"] == 1  # created once, and we hold its id
    assert hook(server, "customer", {"id": customer["id"]})["email"] == "thu.le.new@example.com"
    assert client.retries == 1


def test_the_same_drop_with_a_blind_retry_ends_in_phone_already_taken(sandbox_factory):
    """What the lookup prevents: the create went through, so sending it again is refused."""
    server = start(sandbox_factory)
    control(server.base_url, "shopify", "faults", {"drop_after_commit_next": 1})
    client = make_client(server)
    from integrations.errors import UpstreamUnavailable
    from integrations.shopify.client import CUSTOMER_FIELDS, CUSTOMER_MUTATION

    text = CUSTOMER_MUTATION % {"name": "CustomerCreate", "field": "customerCreate", "fields": CUSTOMER_FIELDS}
    with pytest.raises(UpstreamUnavailable):
        client.graphql(text, {"input": NEW_CUSTOMER}, retry_unavailable=False)
    again = client.graphql(text, {"input": NEW_CUSTOMER})["customerCreate"]
    assert again["customer"] is None
    assert {"field": ["phone"], "message": "Phone has already been taken"} in again["userErrors"]


def test_a_create_found_by_email_when_it_has_no_phone(sandbox_factory):
    server = start(sandbox_factory)
    control(server.base_url, "shopify", "faults", {"drop_after_commit_next": 1})
    customer, errors = make_client(server).customer_create({"firstName": "Mai", "email": "mai.only@example.com"})
    assert errors == [] and customer["defaultEmailAddress"] == {"emailAddress": "mai.only@example.com"}
    assert hook(server, "stats")["created"] == 1


@pytest.mark.parametrize("fault", [{"server_error_next": 2}, {"timeout_next": 1, "timeout_seconds": 0.5}])
def test_a_create_that_never_reached_shopify_is_sent_again_once(sandbox_factory, fault):
    server = start(sandbox_factory)
    control(server.base_url, "shopify", "faults", fault)
    customer, errors = make_client(server, read_timeout=0.3).customer_create(dict(NEW_CUSTOMER))
    assert errors == [] and customer["defaultEmailAddress"] == {"emailAddress": NEW_CUSTOMER["email"]}
    assert hook(server, "stats")["created"] == 1


def test_user_errors_of_a_create_are_answers_not_retries(sandbox_factory):
    server = start(sandbox_factory)
    client = make_client(server)
    _, errors = client.customer_create({"firstName": "An", "phone": "0912 345 678"})
    assert errors == [{"field": ["phone"], "message": "Phone is invalid"}] and client.calls == 1


# --- one cost budget for every process ------------------------------------------------------------------
SENDER = textwrap.dedent("""
    import json, sys
    from integrations.shopify.budget import FileBackend, RedisBackend, SharedCostBudget
    from integrations.shopify.client import ShopifyClient
    from integrations.shopify.sandbox import SANDBOX_ACCESS_TOKEN

    url, kind, where, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    backend = {"file": FileBackend, "redis": RedisBackend}.get(kind)
    budget = SharedCostBudget(backend(where), url) if backend else None
    client = ShopifyClient(url, access_token=SANDBOX_ACCESS_TOKEN, cost_budget=budget, backoff_base=0.01,
                           backoff_max=0.1, max_attempts=20)
    for _ in range(calls):
        client.graphql("{ customers(first: 50) { nodes { id } } }")  # 52 points
    print(json.dumps({"throttled": client.throttled, "paced": client.paced_seconds}))
""")


def run_senders(server, kind, where, processes=2, calls=14) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, "-c", SENDER, server.url_for("shopify"), kind, str(where),
                               str(calls)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _backends():
    from django.conf import settings

    redis_url = settings.CELERY_BROKER_URL if settings.CELERY_BROKER_URL.startswith("redis://") else None
    return [("file", None), pytest.param("redis", redis_url, marks=pytest.mark.skipif(
        not redis_url, reason="CELERY_BROKER_URL is not redis:// (the Redis backend is used only then)"))]


@pytest.mark.parametrize(("kind", "redis_url"), _backends())
def test_two_processes_sharing_the_budget_stay_within_it(sandbox_factory, tmp_path, kind, redis_url):
    server = start(sandbox_factory, rate_limit=True)
    hook(server, "plan", {"maximum": 200, "restore": 400})
    where = tmp_path / "budget" if kind == "file" else redis_url
    results = run_senders(server, kind, where)
    stats = hook(server, "stats")
    assert stats["throttled"] == 0 and all(r["throttled"] == 0 for r in results)
    assert sum(r["paced"] for r in results) > 0.5  # they waited for each other instead
    assert stats["cost_spent"] == 2 * 14 * 52


def test_two_processes_each_with_its_own_estimate_overrun_the_bucket(sandbox_factory):
    """The contrast: each process believes it has the whole bucket, so together they get throttled."""
    server = start(sandbox_factory, rate_limit=True)
    hook(server, "plan", {"maximum": 200, "restore": 400})
    run_senders(server, "none", "-")
    stats = hook(server, "stats")
    assert stats["throttled"] > 0 and stats["rate_limited"] == stats["throttled"]  # GET /_sandbox/ counts them


def test_calls_sent_before_the_first_report_are_counted_against_it():
    """Two processes start on an unknown bucket: A's report may not hold B's call yet, so it is counted."""
    status = {"maximumAvailable": 200.0, "currentlyAvailable": 148, "restoreRate": 0.0}
    state, (_, taken_a) = reserve_points(None, 52, now=0.0, flight="a")
    state, (_, taken_b) = reserve_points(state, 250, now=0.0, flight="b")  # B does not know its cost yet
    assert (taken_a, taken_b) == (52, 250) and set(state["flights"]) == {"a", "b"}
    state = settle_points(state, "a", 52, status, now=0.0)  # A's report: only A's own call in it
    assert state["avail"] == 148 - 250 and set(state["flights"]) == {"b"}
    state = settle_points(state, "b", 52, {**status, "currentlyAvailable": 96}, now=0.0)
    assert state["avail"] == 96 and state["flights"] == {}  # B's unspent 198 back, as the report says
    # a call that timed out before any report stops counting as in flight
    state, _ = reserve_points(None, 60, now=0.0, flight="c")
    assert settle_points(state, "c", None, None, now=1.0)["flights"] == {}


def test_the_estimate_takes_waits_refunds_and_follows_reports():
    status = {"maximumAvailable": 100.0, "currentlyAvailable": 90, "restoreRate": 10.0}
    state = settle_points(None, "first", 10, status, now=0.0)
    assert (state["avail"], state["at"], state["max"], state["restore"]) == (90.0, 0.0, 100.0, 10.0)
    state, (wait, taken) = reserve_points(state, 60, now=0.0, flight="x")
    assert (wait, taken) == (0, 60) and state["avail"] == 30
    same, (wait, taken) = reserve_points(state, 60, now=1.0, flight="y")  # 30 + 10 refilled: 20 short → 2 s
    assert wait == pytest.approx(2.0) and taken == 0 and same["avail"] == pytest.approx(40)
    assert "y" not in same["flights"]
    assert reserve_points({**state, "avail": 100.0}, 250, now=0.0, flight="z")[1] == (0.0, 100.0)  # capped
    # answered: actual 20 of the 60 reserved → 40 back (80), but never above what Shopify reported
    answered = settle_points(same, "x", 20, {**status, "currentlyAvailable": 50}, now=1.0)
    assert answered["avail"] == 50 and answered["flights"] == {}
    assert settle_points(answered, "x", None, None, now=1.0) == answered  # no report (timeout): nothing back
    throttled = settle_points(same, "x", None, {**status, "currentlyAvailable": 70}, now=1.0)
    assert throttled["avail"] == 70  # THROTTLED spent nothing: all 60 back (100), capped by the report (70)


def test_a_report_seen_late_raises_the_estimate_only_to_what_the_bucket_surely_holds():
    status = {"maximumAvailable": 100.0, "restoreRate": 0.0}
    state = settle_points(None, "first", 0, {**status, "currentlyAvailable": 100}, now=0.0)
    for flight in "abc":
        state, _ = reserve_points(state, 10, now=0.0, flight=flight)
    assert state["avail"] == 70
    state = {**state, "avail": 40.0}  # an earlier report, seen late, left the estimate below the bucket (70)
    # c answers first with 70: a and b were sent before it and are still in flight (they may reach Shopify
    # after c), so the bucket surely holds 70 - 20: the estimate rises to 50, not to 70
    state = settle_points(state, "c", 10, {**status, "currentlyAvailable": 70}, now=0.0)
    assert state["avail"] == 50
    # a answers with an older report (90: only a served): b, and c taken after a, may not be in it → 70
    state = settle_points(state, "a", 10, {**status, "currentlyAvailable": 90}, now=0.0)
    assert state["avail"] == 70
    # b last: nothing else unseen, yet a report never raises past what the estimate holds with refunds
    state = settle_points(state, "b", 10, {**status, "currentlyAvailable": 70}, now=0.0)
    assert state["avail"] == 70 and state["flights"] == {}
    # a call whose process died stops counting after FLIGHT_SECONDS
    state, _ = reserve_points(state, 10, now=0.0, flight="lost")
    state, _ = reserve_points(state, 10, now=FLIGHT_SECONDS + 1, flight="d")
    assert set(state["flights"]) == {"d"}
