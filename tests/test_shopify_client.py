"""ShopifyClient against the Shopify sandbox over real HTTP: paging, search, cost pacing, retries, writes."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from integrations.errors import AuthRejected, RequestRejected, UpstreamUnavailable
from integrations.sandbox.server import control
from integrations.shopify.client import QueryCostExceeded, ShopifyClient
from integrations.shopify.sandbox import SANDBOX_ACCESS_TOKEN

LIGHT_FIELDS = "id legacyResourceId updatedAt"  # 1 point a row: cheap pages for paging/pacing tests
FAST_RETRIES = {"backoff_base": 0.01, "backoff_max": 0.1}


# The metafields a customer pull reads (the loyalty ones the sync writes): with them a row costs ~7 points.
LOYALTY = (("totalSpent", "custom", "total_spent"), ("loyalty", "custom", "loyalty_tier"))

def start(sandbox_factory, customers=400, seed=11, rate_limit=False):
    return sandbox_factory(customers=customers, seed=seed, rate_limit=rate_limit, only=["shopify"])


def make_client(server, access_token=SANDBOX_ACCESS_TOKEN, **kw) -> ShopifyClient:
    return ShopifyClient(server.url_for("shopify"), access_token=access_token, **{**FAST_RETRIES, **kw})


def post_raw(server, **kw) -> requests.Response:
    url = f"{server.url_for('shopify')}/admin/api/2026-10/graphql.json"
    headers = {"X-Shopify-Access-Token": SANDBOX_ACCESS_TOKEN, **kw.pop("headers", {})}
    return requests.post(url, headers=headers, timeout=5, **kw)


def hook(server, action, payload=None):
    return control(server.base_url, "shopify", action, payload)["result"]


def pull_ids(client, query=None, **kw) -> list[int]:
    return [int(node["legacyResourceId"])
            for nodes, _, _ in client.iter_customer_pages(query, **kw) for node in nodes]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class SleepRecorder:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


# --- paging -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sort_key", ["ID", "UPDATED_AT"])
def test_full_pull_returns_every_customer_exactly_once(sandbox_factory, sort_key):
    server = start(sandbox_factory, customers=500)
    client = make_client(server)
    pages = list(client.iter_customer_pages(sort_key=sort_key, metafields=LOYALTY))
    nodes = [node for page, _, _ in pages for node in page]
    ids = [int(node["legacyResourceId"]) for node in nodes]
    assert len(ids) == len(set(ids)) == 500
    assert sorted(ids) == hook(server, "expected", {"query": None})
    if sort_key == "UPDATED_AT":
        stamps = [node["updatedAt"] for node in nodes]
        assert stamps == sorted(stamps)
    # The full field set costs ~7 points a row, so 250 a page would pass the 1000-point cap: the client
    # cut the page to what fits instead of failing.
    assert len(pages[0][0]) == 142
    calls = client.calls
    assert len(list(client.iter_customer_pages(sort_key=sort_key, metafields=LOYALTY))) == len(pages)
    assert client.calls - calls == len(pages)  # the fitting page size is remembered: no refused call
    assert pages[-1][2] is False and all(has_next for _, _, has_next in pages[:-1])
    assert client.cost_spent == hook(server, "stats")["cost_spent"]
    first = nodes[0]
    assert first["id"] == f"gid://shopify/Customer/{first['legacyResourceId']}"
    assert first["amountSpent"]["currencyCode"] == "VND"
    assert first["defaultAddress"] is None or first["defaultAddress"]["countryCodeV2"] == "VN"
    phones = [n["defaultPhoneNumber"]["phoneNumber"] for n in nodes if n["defaultPhoneNumber"]]
    assert phones and all(p.startswith("+84") and p[1:].isdigit() for p in phones)


def test_resume_from_a_mid_cursor(sandbox_factory):
    server = start(sandbox_factory, customers=450)
    client = make_client(server)
    pages = client.iter_customer_pages(first=100, fields=LIGHT_FIELDS, sort_key="UPDATED_AT")
    seen = []
    for nodes, cursor, _ in pages:
        seen += [int(n["legacyResourceId"]) for n in nodes]
        if len(seen) >= 200:
            break
    rest = pull_ids(make_client(server), after=cursor, first=100, fields=LIGHT_FIELDS, sort_key="UPDATED_AT")
    assert len(rest) == 250 and not set(rest) & set(seen)
    assert sorted(seen + rest) == hook(server, "expected", {"query": None})


def test_backward_and_reverse_paging(sandbox_factory):
    server = start(sandbox_factory, customers=300)
    client = make_client(server)
    every = hook(server, "expected", {"query": None})
    query = """query($last: Int, $before: String, $first: Int, $reverse: Boolean) {
      customers(last: $last, before: $before, first: $first, reverse: $reverse) {
        edges { cursor node { legacyResourceId } } pageInfo { hasNextPage hasPreviousPage } } }"""
    tail = client.graphql(query, {"last": 5})["customers"]
    assert [int(e["node"]["legacyResourceId"]) for e in tail["edges"]] == every[-5:]
    assert tail["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True}
    before = client.graphql(query, {"last": 5, "before": tail["edges"][0]["cursor"]})["customers"]
    assert [int(e["node"]["legacyResourceId"]) for e in before["edges"]] == every[-10:-5]
    assert before["pageInfo"]["hasNextPage"] is True
    newest_first = client.graphql(query, {"first": 5, "reverse": True})["customers"]
    assert [int(e["node"]["legacyResourceId"]) for e in newest_first["edges"]] == every[::-1][:5]


def test_paging_goes_on_past_injected_malformed_rows(sandbox_factory):
    server = start(sandbox_factory, customers=400)
    control(server.base_url, "shopify", "faults", {"malformed_rate": 0.3})
    nodes = [node for page, _, _ in make_client(server).iter_customer_pages(
        first=100, fields="id legacyResourceId updatedAt phone", sort_key="UPDATED_AT") for node in page]
    assert len({node["id"] for node in nodes}) == 400
    damaged = [n for n in nodes if not n["legacyResourceId"].isdigit() or n["updatedAt"].startswith("0000")
               or n["phone"] == "n/a"]
    assert 40 < len(damaged) < 200

# --- search -------------------------------------------------------------------------------------------
DAY = timedelta(days=1)
# case → (Shopify search query built from "now", sort key of the pull)
SEARCHES = {
    "updated_at window": lambda now: (
        f"updated_at:>='{iso(now - 200 * DAY)}' AND updated_at:<'{iso(now - 100 * DAY)}'", "UPDATED_AT"),
    "updated_at bare date": lambda now: (f"updated_at:<={(now - 40 * DAY).date().isoformat()}", "UPDATED_AT"),
    "state": lambda now: ("state:ENABLED", "ID"),
    "has email": lambda now: ("email:*", "ID"),
    "no email": lambda now: ("-email:*", "ID"),
    "free text": lambda now: ("nguyen", "ID"),
    "OR": lambda now: ("state:INVITED OR tag:vip", "ID"),
    "NOT": lambda now: ("NOT tag:vip state:DISABLED", "UPDATED_AT"),
    "grouped OR with negation": lambda now: ("(tag:zalo OR tag:facebook) -state:DISABLED", "ID"),
    "id range": lambda now: ("id:>7000001000 id:<=7000002000", "ID"),
}


@pytest.mark.parametrize("case", SEARCHES)
def test_search_matches_the_sandbox_ground_truth(sandbox_factory, case):
    server = start(sandbox_factory, customers=600, seed=3)
    query, sort_key = SEARCHES[case](datetime.now(UTC))
    expected = hook(server, "expected", {"query": query})
    assert 0 < len(expected) < 600, f"{query!r} should select some customers, not all"
    got = pull_ids(make_client(server), query, first=250, fields=LIGHT_FIELDS, sort_key=sort_key)
    if sort_key == "ID":
        assert got == expected
    else:
        assert sorted(got) == expected and len(got) == len(expected)


def test_exact_email_search_and_unknown_fields(sandbox_factory):
    server = start(sandbox_factory, customers=300)
    client = make_client(server)
    target = client.graphql('{ customers(first: 1, query: "email:*") { nodes { id email } } }')
    node = target["customers"]["nodes"][0]
    found = client.graphql("query($q: String) { customers(first: 5, query: $q) { nodes { id } } }",
                           {"q": f"email:{node['email'].upper()}"})
    assert found["customers"]["nodes"] == [{"id": node["id"]}]
    # An unknown field is ignored, as Shopify does (with a warning in extensions.search).
    unknown_field = '{ customers(first: 2, query: "colour:red") { nodes { id } } }'
    body = post_raw(server, json={"query": unknown_field}).json()
    assert len(body["data"]["customers"]["nodes"]) == 2
    assert body["extensions"]["search"][0]["warnings"][0]["field"] == "colour"


# --- auth, versions, transport -------------------------------------------------------------------------
def test_bad_token_is_auth_rejected_without_retries(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    client = make_client(server, access_token="shpat_wrong_token_value")
    with pytest.raises(AuthRejected):
        client.graphql("{ customers(first: 1) { nodes { id } } }")
    assert client.calls == 1 and client.retries == 0
    assert "shpat_wrong" not in repr(client) and repr(client).endswith("alue>")


def test_retired_version_falls_forward_and_is_logged_once(sandbox_factory, caplog):
    server = start(sandbox_factory, customers=50)
    client = make_client(server, api_version="2025-07")
    with caplog.at_level(logging.WARNING, logger="integrations.shopify.client"):
        for _ in range(2):
            assert client.graphql("{ customers(first: 1) { nodes { id } } }")["customers"]["nodes"]
    warnings = [r for r in caplog.records if "2026-01" in r.getMessage()]
    assert len(warnings) == 1


def test_raw_graphql_body_is_accepted(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    response = post_raw(server, data="{ customers(first: 2) { nodes { id } } }",
                        headers={"Content-Type": "application/graphql"})
    assert response.status_code == 200 and response.headers["X-Shopify-API-Version"] == "2026-10"
    body = response.json()
    assert len(body["data"]["customers"]["nodes"]) == 2
    assert body["extensions"]["cost"]["requestedQueryCost"] == 4  # 2 + 2 × 1


def test_injected_429_honours_retry_after(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    control(server.base_url, "shopify", "faults", {"rate_limit_next": 1})
    sleeps = SleepRecorder()
    client = make_client(server, sleep=sleeps)
    assert client.graphql("{ customers(first: 1) { nodes { id } } }")
    assert client.calls == 2 and len(sleeps.waits) == 1 and 1.0 <= sleeps.waits[0] < 1.2


def test_server_error_burst_is_retried_and_retries_are_bounded(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    control(server.base_url, "shopify", "faults", {"server_error_next": 3})
    client = make_client(server)
    assert client.graphql("{ customers(first: 1) { nodes { id } } }")
    assert client.calls == 4 and client.retries == 3
    control(server.base_url, "shopify", "faults", {"server_error_next": 10})
    bounded = make_client(server, max_attempts=3)
    with pytest.raises(UpstreamUnavailable):
        bounded.graphql("{ customers(first: 1) { nodes { id } } }")
    assert bounded.calls == 3


def test_timeouts_are_retried(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    control(server.base_url, "shopify", "faults", {"timeout_next": 1, "timeout_seconds": 0.5})
    client = make_client(server, read_timeout=0.2)
    assert client.graphql("{ customers(first: 1) { nodes { id } } }")
    assert client.calls == 2 and client.retries == 1


def test_graphql_errors_are_request_rejected(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    client = make_client(server)
    with pytest.raises(RequestRejected, match="Cannot query field"):
        client.graphql("{ customers(first: 1) { nodes { shoeSize } } }")
    with pytest.raises(RequestRejected, match="250"):
        client.graphql("{ customers(first: 251) { nodes { id } } }")
    assert client.calls == 2


def test_access_denied_is_auth_rejected():
    response = requests.Response()
    response.status_code = 200
    response._content = (b'{"errors": [{"message": "Access denied for customers field.", '
                         b'"extensions": {"code": "ACCESS_DENIED"}}]}')
    client = ShopifyClient("https://shop.example", access_token="shpat_x")
    with pytest.raises(AuthRejected, match="Access denied"):
        client.check_response(response)

# --- cost ------------------------------------------------------------------------------------------
def test_max_cost_exceeded_is_a_permanent_rejection(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    client = make_client(server)
    heavy = "{ customers(first: 250) { nodes { id metafields(first: 10) { nodes { key value } } } } }"
    with pytest.raises(QueryCostExceeded) as caught:
        client.graphql(heavy)
    assert isinstance(caught.value, RequestRejected)
    assert caught.value.requested_cost == 2 + 250 * (1 + 2 + 10) and caught.value.code == "MAX_COST_EXCEEDED"
    assert client.calls == 1


def test_pacing_keeps_a_small_bucket_from_throttling(sandbox_factory):
    server = start(sandbox_factory, customers=400, rate_limit=True)
    hook(server, "plan", {"maximum": 300, "restore": 50})
    client = make_client(server)
    ids = pull_ids(client, first=100, fields=LIGHT_FIELDS)  # 102 points a page, the bucket holds 300
    assert sorted(ids) == hook(server, "expected", {"query": None})
    assert hook(server, "stats")["throttled"] <= 2
    assert client.paced_seconds > 1.0  # it waited for the bucket rather than bouncing off THROTTLED
    assert client.throttle["maximumAvailable"] == 300


def test_throttled_is_retried_after_the_reported_deficit(sandbox_factory):
    server = start(sandbox_factory, customers=200, rate_limit=True)
    hook(server, "plan", {"maximum": 120, "restore": 200})
    page = "{ customers(first: 100) { nodes { id } } }"  # 102 points
    make_client(server).graphql(page)  # another worker of the same app drains the bucket
    sleeps = SleepRecorder()
    client = make_client(server, sleep=sleeps)  # knows nothing of the bucket yet, so it cannot pace
    reports = []
    check_response = client.check_response

    def recording(response):
        reports.append(response.json()["extensions"]["cost"])
        return check_response(response)

    client.check_response = recording
    assert len(client.graphql(page)["customers"]["nodes"]) == 100
    assert client.throttled == 1 and hook(server, "stats")["throttled"] == 1
    throttled = reports[0]
    assert throttled["actualQueryCost"] is None
    deficit = throttled["requestedQueryCost"] - throttled["throttleStatus"]["currentlyAvailable"]
    # The base retry adds at most a backoff's worth of jitter (≤ 0.02 s with these settings).
    assert len(sleeps.waits) == 1 and 0 <= sleeps.waits[0] - deficit / 200 <= 0.021


def test_pages_shrink_to_fit_a_bucket_smaller_than_the_query(sandbox_factory):
    server = start(sandbox_factory, customers=100, rate_limit=True)
    hook(server, "plan", {"maximum": 300, "restore": 1000})
    client = make_client(server)
    pages = list(client.iter_customer_pages(metafields=LOYALTY))  # 250 rows of the full field set: 1752 points
    assert [len(nodes) for nodes, _, _ in pages] == [42, 42, 16]  # 2 + 42 × 7 = 296 ≤ 300
    assert client.throttled == 1 and hook(server, "stats")["throttled"] == 1


# --- mutations ------------------------------------------------------------------------------------------
def _customer_gids(client, count):
    nodes = client.graphql("query($n: Int!) { customers(first: $n) { nodes { id } } }", {"n": count})
    return [n["id"] for n in nodes["customers"]["nodes"]]


def test_metafields_set_is_seen_by_a_later_pull(sandbox_factory):
    server = start(sandbox_factory, customers=300)
    client = make_client(server)
    owners = _customer_gids(client, 3)
    started = datetime.now(UTC) - timedelta(seconds=1)
    inputs = [item for n, gid in enumerate(owners) for item in (
        {"ownerId": gid, "namespace": "custom", "key": "total_spent", "type": "number_integer",
         "value": str(1_000_000 * (n + 1))},
        {"ownerId": gid, "namespace": "custom", "key": "loyalty_tier", "type": "single_line_text_field",
         "value": "gold"},
    )]
    written, errors = client.metafields_set(inputs)
    assert errors == [] and len(written) == 6
    assert written[0]["owner"] == {"id": owners[0]} and written[0]["value"] == "1000000"
    pulled = [node for nodes, _, _ in client.iter_customer_pages(f"updated_at:>='{iso(started)}'",
                                                                sort_key="UPDATED_AT", metafields=LOYALTY)
              for node in nodes]
    assert sorted(n["id"] for n in pulled) == sorted(owners)
    by_id = {n["id"]: n for n in pulled}
    assert by_id[owners[2]]["totalSpent"] == {"value": "3000000"}
    assert by_id[owners[2]]["loyalty"] == {"value": "gold"}
    held = hook(server, "customer", {"id": owners[1]})
    assert held["metafields"]["custom.total_spent"] == {"value": "2000000", "type": "number_integer"}


def test_a_batch_with_one_invalid_value_writes_nothing(sandbox_factory):
    server = start(sandbox_factory, customers=300)
    client = make_client(server)
    owners = _customer_gids(client, 25)
    batch = [{"ownerId": gid, "namespace": "custom", "key": "total_spent", "type": "number_integer",
              "value": "5"} for gid in owners]
    batch[17] = {**batch[17], "value": "12.5"}
    written, errors = client.metafields_set(batch)
    assert written == []
    assert [(e["elementIndex"], e["field"], e["code"]) for e in errors] == [
        (17, ["metafields", "17", "value"], "INVALID_VALUE")]
    assert all(hook(server, "customer", {"id": gid})["metafields"] == {} for gid in owners)
    assert hook(server, "stats")["metafields_written"] == 0


def test_an_injected_user_error_fails_the_whole_batch(sandbox_factory):
    server = start(sandbox_factory, customers=300)
    client = make_client(server)
    owners = _customer_gids(client, 5)
    hook(server, "inject_user_errors", {"owner_ids": [owners[3]], "message": "Customer is being merged"})
    batch = [{"ownerId": gid, "namespace": "custom", "key": "loyalty_tier", "type": "single_line_text_field",
              "value": "silver"} for gid in owners]
    written, errors = client.metafields_set(batch)
    assert written == []
    assert [(e["elementIndex"], e["message"]) for e in errors] == [(3, "Customer is being merged")]
    assert hook(server, "stats")["metafields_written"] == 0


def test_more_than_25_metafields_is_refused_before_sending(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    client = make_client(server)
    with pytest.raises(ValueError, match="25"):
        client.metafields_set([{"ownerId": "gid://shopify/Customer/7000000000", "key": "tier", "value": "1"}]
                              * 26)
    assert client.calls == 0


def test_customer_create_and_update_enforce_shopify_rules(sandbox_factory):
    server = start(sandbox_factory, customers=300)
    client = make_client(server)
    existing = client.graphql('{ customers(first: 9, query: "email:* phone:*") { nodes { email phone } } }')
    taken = existing["customers"]["nodes"][0]

    _, errors = client.customer_create({"firstName": "An", "email": taken["email"]})
    assert errors == [{"field": ["email"], "message": "Email has already been taken"}]
    _, errors = client.customer_create({"firstName": "An", "phone": taken["phone"]})
    assert errors == [{"field": ["phone"], "message": "Phone has already been taken"}]
    _, errors = client.customer_create({"firstName": "An", "phone": "0912 345 678"})
    assert errors == [{"field": ["phone"], "message": "Phone is invalid"}]
    _, errors = client.customer_create({"note": "no name, no contact"})
    assert errors and errors[0]["field"] == []

    created, errors = client.customer_create({
        "firstName": "Thị Mai", "lastName": "Trần", "email": "mai.tran.new@example.com",
        "phone": "+84901234999", "tags": ["vip", "zalo"],
        "addresses": [{"city": "Hà Nội", "countryCode": "VN", "phone": "0901 234 999"}],
    })
    assert errors == []
    assert int(created["legacyResourceId"]) > 7_000_000_000 + 11 * 299  # past the generated range
    assert created["defaultPhoneNumber"] == {"phoneNumber": "+84901234999"}
    assert created["defaultAddress"]["countryCodeV2"] == "VN"

    updated, errors = client.customer_update({"id": created["id"], "tags": ["wholesale"]})
    assert errors == [] and updated["tags"] == ["wholesale"]  # tags replace, they do not append
    _, errors = client.customer_update({"id": created["id"], "phone": taken["phone"]})
    assert errors == [{"field": ["phone"], "message": "Phone has already been taken"}]
    _, errors = client.customer_update({"id": "gid://shopify/Customer/1", "firstName": "X"})
    assert errors[0]["field"] == ["id"]

    found = pull_ids(client, "email:mai.tran.new@example.com", fields=LIGHT_FIELDS)
    assert found == [int(created["legacyResourceId"])]
    assert hook(server, "stats")["customers"] == 301


def test_threads_sharing_a_client_stay_within_the_bucket_together(sandbox_factory):
    """Calls in flight reserve their cost: six senders on a 60-point bucket are paced, never throttled."""
    import threading

    server = start(sandbox_factory, customers=100, rate_limit=True)
    hook(server, "plan", {"maximum": 60, "restore": 100})
    client = make_client(server)
    owner = _customer_gids(client, 1)[0]
    metafield = [{"ownerId": owner, "namespace": "custom", "key": "total_spent", "type": "number_integer",
                  "value": "1"}]
    client.metafields_set(metafield)  # learns the call's cost and the bucket
    errors = []

    def send():
        for _ in range(5):
            try:
                _written, user_errors = client.metafields_set(metafield)
                assert user_errors == []
            except Exception as exc:  # collected: a thread's assertion would otherwise be lost
                errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert hook(server, "stats")["throttled"] == 0 and client.throttled == 0
    assert client.calls == 1 + 31 and client.paced_seconds > 0  # the page of gids, then the mutations
