"""NhanhClient against the Nhanh sandbox over real HTTP, plus check_response on hand-made responses.

No database: the sandbox is served in a thread and the client talks to it through loopback.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import datetime, timedelta

import pytest
import requests

from integrations.errors import (
    AuthRejected,
    BadPayload,
    RateLimited,
    RequestRejected,
    UpstreamError,
    UpstreamUnavailable,
)
from integrations.models import Connection
from integrations.nhanh.client import NhanhClient
from integrations.nhanh.sandbox import (
    FIRST_ID,
    ID_STEP,
    SANDBOX_ACCESS_TOKEN,
    SANDBOX_APP_ID,
    SANDBOX_BUSINESS_ID,
    SANDBOX_SECRET_KEY,
)
from integrations.sandbox.base import WindowLimiter
from integrations.sandbox.server import control
from tests.conftest import running_sandbox

FAST_RETRIES = {"backoff_base": 0.01, "backoff_max": 0.1}
SHARED_CUSTOMERS = 1500


@pytest.fixture(scope="module")
def shared():
    """One sandbox for the tests that only read (each server costs ~0.5 s to stop). Its rate limit is off
    so that their requests, added up, cannot lock it; the rate-limit tests start their own."""
    with running_sandbox(only=["nhanh"], customers=SHARED_CUSTOMERS, seed=4, rate_limit=False) as server:
        yield server


@pytest.fixture
def start_nhanh(sandbox_factory):
    """Serve only the Nhanh sandbox: ``server = start_nhanh(customers=500, seed=3)``."""
    return lambda **options: sandbox_factory(only=["nhanh"], **options)


@pytest.fixture
def make_client():
    """A client for a sandbox server with the sandbox's credentials and short retry waits."""
    clients = []

    def make(server, **options) -> NhanhClient:
        credentials = {"app_id": SANDBOX_APP_ID, "business_id": SANDBOX_BUSINESS_ID,
                       "access_token": SANDBOX_ACCESS_TOKEN}
        client = NhanhClient(server.url_for("nhanh"), **{**credentials, **FAST_RETRIES, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def customer_id(index: int) -> int:
    return FIRST_ID + ID_STEP * index


def pulled_ids(client: NhanhClient, filters=None, **kw) -> list[int]:
    return [row["id"] for rows, _ in client.iter_customer_pages(filters, **kw) for row in rows]


def expected_ids(server, filters: dict) -> list[int]:
    return control(server.base_url, "nhanh", "expected", {"filters": filters})["result"]


# --- pagination -----------------------------------------------------------------------------------------
def test_full_pagination_returns_every_customer_once(shared, make_client):
    client = make_client(shared)
    pages = list(client.iter_customer_pages(size=100))
    ids = [row["id"] for rows, _ in pages for row in rows]
    assert ids == [customer_id(i) for i in range(SHARED_CUSTOMERS)]  # all, once, ascending
    assert len(pages) == 15
    assert all(cursor == {"id": rows[-1]["id"]} for rows, cursor in pages[:-1])
    assert pages[-1][1] is None
    assert client.retries == 0


def test_page_size_above_100_is_capped(shared, make_client):
    client = make_client(shared)
    rows, cursor = client.list_customers(size=1000)
    assert len(rows) == 100
    assert cursor == {"id": rows[-1]["id"]}


@pytest.mark.parametrize("filters", [None, {"type": 1}])
def test_resume_from_a_mid_cursor_continues_exactly(shared, make_client, filters):
    everything = pulled_ids(make_client(shared), filters, size=100)
    pages = make_client(shared).iter_customer_pages(filters, size=100)
    for _ in range(4):
        rows, checkpoint = next(pages)  # a crash right after the 4th page was stored: resume after it
    resumed = pulled_ids(make_client(shared), filters, start_cursor=checkpoint, size=100)
    assert checkpoint == {"id": rows[-1]["id"]}
    assert resumed == everything[400:]


def test_sort_is_not_sent_and_the_sandbox_keeps_its_own_order(start_nhanh, make_client):
    # sort is not a documented parameter of customer/list: the client never sends it, and the sandbox
    # ignores it (its order is its own) while counting the requests that carried it.
    server = start_nhanh(customers=250, seed=4, rate_limit=False)
    client = make_client(server)
    assert len(pulled_ids(client, size=100)) == 250
    assert control(server.base_url, "nhanh", "status")["sort_requests"] == 0
    body = {"filters": {}, "paginator": {"size": 100, "sort": {"id": "desc"}}}
    ignored = client.post("customer/list", body)
    assert [row["id"] for row in ignored["data"]] == [customer_id(i) for i in range(100)]
    assert control(server.base_url, "nhanh", "status")["sort_requests"] == 1


# --- filters --------------------------------------------------------------------------------------------
def _days_ago(anchor: datetime, days: int) -> int:
    return int((anchor - timedelta(days=days)).timestamp())


def _date_days_ago(anchor: datetime, days: int) -> str:
    return (anchor - timedelta(days=days)).strftime("%Y-%m-%d")


FILTER_CASES = {
    "type wholesale": lambda app: {"type": 2},
    "type agent": lambda app: {"type": 3},
    "updatedAt range": lambda app: {"updatedAtFrom": _days_ago(app.population.anchor, 90),
                                    "updatedAtTo": _days_ago(app.population.anchor, 30)},
    "updatedAt since": lambda app: {"updatedAtFrom": _days_ago(app.population.anchor, 3)},
    "lastBought range": lambda app: {"lastBoughtDateFrom": _date_days_ago(app.population.anchor, 400),
                                     "lastBoughtDateTo": _date_days_ago(app.population.anchor, 300)},
    "type and lastBought": lambda app: {"type": 1,
                                        "lastBoughtDateFrom": _date_days_ago(app.population.anchor, 100)},
    "mobile of a duplicate": lambda app: {"mobile": app.customer(68)["mobile"]},  # 68 duplicates 67
    "ids": lambda app: {"ids": [customer_id(5), customer_id(900), customer_id(2), FIRST_ID + 1, 99]},
}


@pytest.mark.parametrize("case", FILTER_CASES)
def test_filters_match_the_sandbox_ground_truth(shared, make_client, case):
    filters = FILTER_CASES[case](shared.apps["nhanh"])
    expected = expected_ids(shared, filters)
    assert 0 < len(expected) < SHARED_CUSTOMERS  # the filter selects something, and not everything
    assert pulled_ids(make_client(shared), filters, size=40) == expected


def test_python_dates_and_datetimes_are_encoded_for_nhanh(shared, make_client):
    anchor = shared.apps["nhanh"].population.anchor
    client = make_client(shared)
    typed = {"updatedAtFrom": anchor - timedelta(days=200), "lastBoughtDateTo": (anchor - timedelta(days=250)).date(),
             "type": None}
    raw = {"updatedAtFrom": _days_ago(anchor, 200), "lastBoughtDateTo": _date_days_ago(anchor, 250)}
    assert pulled_ids(client, typed) == expected_ids(shared, raw)


def test_unknown_filter_name_is_refused_before_calling(shared, make_client):
    client = make_client(shared)
    with pytest.raises(ValueError, match="updatedFrom"):
        client.list_customers({"updatedFrom": 1})


@pytest.mark.parametrize(("filters", "field"), [
    ({"type": 9}, "filters.type"),
    ({"updatedAtFrom": "2024-01-01"}, "filters.updatedAtFrom"),
    ({"lastBoughtDateTo": "01/02/2024"}, "filters.lastBoughtDateTo"),
    ({"ids": list(range(101))}, "filters.ids"),
])
def test_invalid_filter_values_are_rejected_with_the_field(shared, make_client, filters, field):
    client = make_client(shared)
    with pytest.raises(RequestRejected, match=field) as caught:
        client.list_customers(filters)
    assert caught.value.code == "ERR_INVALID_FORM_FIELDS"
    assert client.retries == 0


def test_touched_customers_show_up_in_an_incremental_pull(start_nhanh, make_client):
    server = start_nhanh(customers=500, seed=6)
    since = int(time.time()) - 1
    before = expected_ids(server, {"updatedAtFrom": since})
    touched = [customer_id(10), customer_id(400)]
    control(server.base_url, "nhanh", "touch", {"ids": touched, "totalAmount": 7_000_000})
    rows = [row for rows, _ in make_client(server).iter_customer_pages({"updatedAtFrom": since}) for row in rows]
    assert sorted(before + touched) == [row["id"] for row in rows]
    assert all(row["totalAmount"] == 7_000_000 for row in rows if row["id"] in touched)


# --- credentials ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("credential", "value", "code"), [
    ("access_token", "not-the-token", "ERR_INVALID_ACCESS_TOKEN"),
    ("access_token", f"Bearer {SANDBOX_ACCESS_TOKEN}", "ERR_INVALID_ACCESS_TOKEN"),
    ("app_id", "someone-else", "ERR_INVALID_APP_ID"),
    ("business_id", "999", "ERR_INVALID_BUSINESS_ID"),
])
def test_bad_credentials_fail_fast_without_retries(shared, make_client, credential, value, code):
    client = make_client(shared, **{credential: value})
    started = time.monotonic()
    with pytest.raises(AuthRejected) as caught:
        client.list_customers()
    assert caught.value.code == code
    assert code in str(caught.value)
    assert client.retries == 0
    assert time.monotonic() - started < 1.0


def test_auth_reject_fault_is_an_auth_error(start_nhanh, make_client):
    server = start_nhanh(customers=50)
    server.apps["nhanh"].faults.auth_reject = True
    with pytest.raises(AuthRejected, match="ERR_INVALID_ACCESS_TOKEN"):
        make_client(server).list_customers()


def test_check_token_reports_the_grant_without_echoing_the_token(shared, make_client):
    client = make_client(shared)
    grant = client.check_token(SANDBOX_SECRET_KEY)
    assert grant["businessId"] == int(SANDBOX_BUSINESS_ID)
    assert grant["expiredAt"] > time.time()
    assert "accessToken" not in grant
    with pytest.raises(RequestRejected, match="secretKey"):
        client.check_token("wrong-secret")


def test_token_never_shows_in_repr_or_logs(start_nhanh, make_client, caplog):
    server = start_nhanh(customers=50)
    server.apps["nhanh"].faults.server_error_next = 1
    client = make_client(server)
    with caplog.at_level("DEBUG"):
        client.list_customers()
    assert client.retries == 1
    assert SANDBOX_ACCESS_TOKEN not in repr(client)
    assert SANDBOX_ACCESS_TOKEN not in caplog.text


def test_from_connection_uses_the_connection_record(shared):
    conn = Connection(system="nhanh", base_url=shared.url_for("nhanh"), app_id=SANDBOX_APP_ID,
                      business_id=SANDBOX_BUSINESS_ID, access_token=SANDBOX_ACCESS_TOKEN,
                      requests_per_window=None, window_seconds=30)
    client = NhanhClient.from_connection(conn, **FAST_RETRIES)
    try:
        assert client.pacer is None
        assert len(client.list_customers()[0]) == 100
    finally:
        client.close()


def test_unknown_endpoint_is_a_rejected_request(shared, make_client):
    client = make_client(shared)
    with pytest.raises(RequestRejected, match="customer/detail") as caught:
        client.post("customer/detail", {"filters": {"id": customer_id(1)}})
    assert caught.value.status == 404
    assert client.retries == 0


# --- rate limits ----------------------------------------------------------------------------------------
def test_unpaced_client_rides_out_err_429(start_nhanh, make_client):
    server = start_nhanh(customers=400, seed=8)
    server.apps["nhanh"].limiter = WindowLimiter(5, 2)
    client = make_client(server, requests_per_window=None)
    assert pulled_ids(client, size=50) == [customer_id(i) for i in range(400)]
    assert client.retries > 0


def test_paced_client_never_hits_the_limit(start_nhanh, make_client):
    server = start_nhanh(customers=400, seed=8)
    server.apps["nhanh"].limiter = WindowLimiter(5, 2)
    client = make_client(server, requests_per_window=5, window_seconds=2)
    started = time.monotonic()
    assert len(pulled_ids(client, size=50)) == 400
    assert client.retries == 0  # an ERR_429 would have been retried
    assert time.monotonic() - started > 2  # 8 requests at 5 per 2 s: the pacer did wait


def test_calls_while_locked_extend_the_lock_for_that_url_only(start_nhanh):
    server = start_nhanh(customers=10)
    server.apps["nhanh"].limiter = WindowLimiter(2, 2)
    url = server.url_for("nhanh") + "/v3.0/"
    query = {"appId": SANDBOX_APP_ID, "businessId": SANDBOX_BUSINESS_ID}
    headers = {"Authorization": SANDBOX_ACCESS_TOKEN}

    def post(endpoint, body):
        return requests.post(url + endpoint, params=query, headers=headers, json=body, timeout=5)

    answers = [post("customer/list", {}) for _ in range(3)]
    locked = answers[-1].json()
    assert [a.json()["code"] for a in answers] == [1, 1, 0]
    assert answers[-1].status_code == 200
    assert locked["errorCode"] == "ERR_429" and locked["message"] == "Your app exceeded the API Rate Limit"
    assert locked["data"]["lockedSeconds"] >= 1
    time.sleep(1.1)
    extended = post("customer/list", {}).json()
    assert extended["errorCode"] == "ERR_429"
    assert extended["data"]["unlockedAt"] > locked["data"]["unlockedAt"]
    assert post("app/checkaccesstoken", {"secretKey": SANDBOX_SECRET_KEY}).json()["code"] == 1


# --- transient failures ---------------------------------------------------------------------------------
def test_server_error_burst_is_retried(start_nhanh, make_client):
    server = start_nhanh(customers=120)
    server.apps["nhanh"].faults.server_error_next = 3
    client = make_client(server)
    assert len(pulled_ids(client)) == 120
    assert client.retries == 3


def test_exhausted_retries_raise_upstream_unavailable(start_nhanh, make_client):
    server = start_nhanh(customers=120)
    server.apps["nhanh"].faults.server_error_next = 10
    client = make_client(server, max_attempts=3)
    with pytest.raises(UpstreamUnavailable):
        client.list_customers()
    assert client.retries == 2


def test_timeout_is_retried(start_nhanh, make_client):
    server = start_nhanh(customers=120)
    faults = server.apps["nhanh"].faults
    faults.timeout_next, faults.timeout_seconds = 1, 1.5
    client = make_client(server, read_timeout=0.5)
    rows, _ = client.list_customers()
    assert len(rows) == 100
    assert client.retries == 1


# --- rows -----------------------------------------------------------------------------------------------
def test_malformed_rows_come_through_unchanged(start_nhanh, make_client):
    server = start_nhanh(customers=200, seed=9)
    server.apps["nhanh"].faults.malformed_rate = 1.0
    rows = [row for rows, _ in make_client(server).iter_customer_pages(size=30) for row in rows]
    assert len(rows) == 200  # the cursor comes from the server, so pages continue past a row without id
    assert sum("id" not in row for row in rows) == 50
    assert sum(row.get("updatedAt") == "2024-13-45" for row in rows) == 50
    assert sum(row.get("type") == "abc" for row in rows) == 50
    assert sum(row.get("totalAmount") == "n/a" for row in rows) == 50


def test_rows_have_the_v3_shape(shared, make_client):
    # lastBoughtDate is not in the documented v3 record: no longer served (its filters still work, above).
    rows, _ = make_client(shared).list_customers()
    expected_keys = {"id", "type", "name", "mobile", "email", "address", "points", "totalAmount", "birthday",
                     "gender", "locations", "group", "updatedAt"}
    assert all(set(row) == expected_keys for row in rows)
    assert all(row["type"] in (1, 2, 3) and isinstance(row["updatedAt"], int) for row in rows)
    assert {row["type"] for row in rows} == {1, 2, 3}


def test_large_population_serves_any_page_quickly_with_flat_memory(start_nhanh, make_client):
    server = start_nhanh(customers=200_000, seed=11)
    client = make_client(server)
    tracemalloc.start()
    try:
        started = time.monotonic()
        first, _ = client.list_customers()
        near_end, cursor = client.list_customers(next_cursor={"id": customer_id(199_949)})
        last, end = client.list_customers(next_cursor={"id": customer_id(199_997)})
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first[0]["id"] == customer_id(0)
    assert [row["id"] for row in near_end] == [customer_id(i) for i in range(199_950, 200_000)]
    assert cursor is None  # exactly the last 50 customers: nothing after them
    assert [row["id"] for row in last] == [customer_id(199_998), customer_id(199_999)] and end is None
    assert elapsed < 2.0
    assert peak < 20 * 2**20  # 200,000 materialized rows would take hundreds of MB


# --- check_response on hand-made answers ----------------------------------------------------------------
def fake_response(body, status: int = 200, content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = content_type
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.encoding = "utf-8"
    response.url = "https://pos.open.nhanh.vn/v3.0/customer/list?appId=1&businessId=2"
    return response


@pytest.fixture
def offline_client():
    client = NhanhClient("https://pos.open.nhanh.vn", app_id="1", business_id="2", access_token="t" * 128)
    yield client
    client.close()


def test_rate_limit_uses_unlocked_at(offline_client):
    unlocked_at = int(time.time()) + 5
    body = {"code": 0, "errorCode": "ERR_429", "message": "Your app exceeded the API Rate Limit",
            "data": {"lockedSeconds": 30, "unlockedAt": unlocked_at}}
    with pytest.raises(RateLimited) as caught:
        offline_client.check_response(fake_response(body))
    assert 3.5 < caught.value.retry_after <= 5
    assert caught.value.retryable


def test_rate_limit_falls_back_to_locked_seconds_and_reads_messages(offline_client):
    body = {"code": 0, "errorCode": "ERR_EXCEEDED_RATE_LIMIT", "messages": "slow down", "data": {"lockedSeconds": 7}}
    with pytest.raises(RateLimited, match="slow down") as caught:
        offline_client.check_response(fake_response(body))
    assert caught.value.retry_after == 7


@pytest.mark.parametrize(("response", "error", "text"), [
    (fake_response({"code": 0, "errorCode": "ERR_403", "messages": "not authorized"}), AuthRejected, "ERR_403"),
    (fake_response({"code": 0, "errorCode": "ERR_BUSINESS_NOT_ENABLE_API"}, status=403), AuthRejected,
     "Open API"),
    (fake_response({"code": 0, "errorCode": "ERR_INVALID_ACCESS_TOKEN"}, status=401), AuthRejected,
     "re-authorize"),
    (fake_response({"code": 0, "errorCode": "ERR_INVALID_FORM_FIELDS",
                    "messages": {"filters.type": "type must be 1, 2 or 3"}}), RequestRejected, "filters.type"),
    (fake_response({"code": 0, "errorCode": "ERR_INVALID_DATA", "messages": ["invalid data"]}), RequestRejected,
     "invalid data"),
    (fake_response({"code": 0, "errorCode": "ERR_INVALID_DEPOT_ID", "messages": "depot"}), UpstreamError,
     "ERR_INVALID_DEPOT_ID"),
    (fake_response({"code": 1}), BadPayload, "data"),
    (fake_response([1, 2]), BadPayload, "envelope"),
    (fake_response(b"<html>maintenance</html>", content_type="text/html"), BadPayload, "maintenance"),
    (fake_response(b"<html>Not Found</html>", status=404, content_type="text/html"), RequestRejected,
     "/v3.0/customer/list"),
    (fake_response(b"<html>502 Bad Gateway</html>", status=502, content_type="text/html"), UpstreamUnavailable,
     "502"),
])
def test_check_response_maps_errors_to_types(offline_client, response, error, text):
    with pytest.raises(error, match=text) as caught:
        offline_client.check_response(response)
    assert type(caught.value) is error


def test_check_response_returns_the_success_envelope(offline_client):
    body = {"code": 1, "data": [{"id": 7}], "paginator": {"next": {"id": 7}}}
    assert offline_client.check_response(fake_response(body)) == body


# --- documented variations: cursor shapes, ends, row shapes ---------------------------------------------
CURSOR_ENDS = ["null", "absent", "empty_array", "empty_object", "empty_string", "mixed"]


@pytest.mark.parametrize("shape", ["object", "array", "mixed"])
@pytest.mark.parametrize("end", CURSOR_ENDS)
def test_every_cursor_shape_and_end_pages_through_everything_once(start_nhanh, make_client, shape, end):
    server = start_nhanh(customers=730, seed=12, rate_limit=False)
    control(server.base_url, "nhanh", "faults", {"cursor_shape": shape, "cursor_end": end})
    pages = list(make_client(server).iter_customer_pages(size=100))
    assert [row["id"] for rows, _ in pages for row in rows] == [customer_id(i) for i in range(730)]
    cursors = [cursor for _, cursor in pages]
    assert cursors[-1] is None  # whichever empty form ended the list
    kinds = {type(cursor) for cursor in cursors[:-1]}
    assert kinds == {"object": {dict}, "array": {list}, "mixed": {dict, list}}[shape]
    # What came back is what the sandbox sent: passed back as is, so the next page followed on.
    assert all(cursor in ({"id": rows[-1]["id"]}, [rows[-1]["id"]]) for rows, cursor in pages[:-1])


@pytest.mark.parametrize("end", ["null", "absent", "empty_array", "empty_object", "empty_string"])
def test_an_empty_result_ends_with_any_empty_form(start_nhanh, make_client, end):
    server = start_nhanh(customers=50, seed=12, rate_limit=False)
    control(server.base_url, "nhanh", "faults", {"cursor_end": end})
    assert make_client(server).list_customers({"ids": [FIRST_ID + 1]}) == ([], None)


def test_array_cursor_checkpoint_resumes_exactly(start_nhanh, make_client):
    server = start_nhanh(customers=600, seed=13, rate_limit=False, nhanh_cursor="array")  # --nhanh-cursor
    everything = pulled_ids(make_client(server), {"type": 1}, size=50)
    pages = make_client(server).iter_customer_pages({"type": 1}, size=50)
    for _ in range(3):
        rows, checkpoint = next(pages)
    assert checkpoint == [rows[-1]["id"]]
    # A checkpoint is stored as JSON and read back before the resume.
    stored = json.loads(json.dumps(checkpoint))
    resumed = pulled_ids(make_client(server), {"type": 1}, start_cursor=stored, size=50)
    assert resumed == everything[150:]


def test_cursor_shape_changes_at_run_time_mid_pull(start_nhanh, make_client):
    server = start_nhanh(customers=400, seed=14, rate_limit=False)
    pages = make_client(server).iter_customer_pages(size=100)
    first = [next(pages), next(pages)]
    control(server.base_url, "nhanh", "faults", {"cursor_shape": "array", "cursor_end": "empty_object"})
    rest = list(pages)
    assert isinstance(first[-1][1], dict) and isinstance(rest[0][1], list)
    ids = [row["id"] for rows, _ in first + rest for row in rows]
    assert ids == [customer_id(i) for i in range(400)]


def test_bad_cursor_settings_are_refused_by_the_control_api(shared):
    with pytest.raises(requests.HTTPError):
        control(shared.base_url, "nhanh", "faults", {"cursor_shape": "tuple"})
    with pytest.raises(requests.HTTPError):
        control(shared.base_url, "nhanh", "faults", {"cursor_end": "zero"})
    assert control(shared.base_url, "nhanh", "status")["faults"]["cursor_shape"] == "object"


def test_extra_missing_and_string_fields_are_tolerated(start_nhanh, make_client):
    from customers.services.records import nhanh_customer

    server = start_nhanh(customers=300, seed=15, rate_limit=False)
    plain = {row["id"]: row for rows, _ in make_client(server).iter_customer_pages() for row in rows}
    control(server.base_url, "nhanh", "faults", {"extra_fields_rate": 1.0, "omit_optional_rate": 1.0,
                                                 "numbers_as_strings_rate": 1.0})
    varied = [row for rows, _ in make_client(server).iter_customer_pages() for row in rows]
    assert len(varied) == 300  # no failed page
    assert all(isinstance(row["id"], str) and "xUndocumented" in row for row in varied)
    assert all(set(plain[int(row["id"])]) - set(row) for row in varied)  # each lacks some optional field
    for row in varied:
        fields, _phones = nhanh_customer(row)  # parses: no MalformedRow
        expected, _ = nhanh_customer(plain[int(row["id"])])
        for name in ("nhanh_id", "customer_type", "mobile", "name", "upstream_updated_at"):
            assert fields[name] == expected[name]
        if "totalAmount" in row:
            assert fields["total_spent"] == expected["total_spent"]


def test_row_variations_are_stable_between_reads(start_nhanh, make_client):
    server = start_nhanh(customers=200, seed=15, rate_limit=False)
    control(server.base_url, "nhanh", "faults", {"extra_fields_rate": 0.5, "omit_optional_rate": 0.3,
                                                 "numbers_as_strings_rate": 0.4, "cursor_shape": "mixed"})
    first = list(make_client(server).iter_customer_pages(size=30))
    again = list(make_client(server).iter_customer_pages(size=30))
    assert first == again
    rows = [row for page, _ in first for row in page]
    assert 0 < sum(isinstance(row["id"], str) for row in rows) < 200
    assert 0 < sum("xUndocumented" in row for row in rows) < 200


def test_test_connection_reports_the_business_and_the_token_expiry(shared, make_client):
    client = make_client(shared, secret_key=SANDBOX_SECRET_KEY)
    message = client.test_connection()
    assert message.startswith(f"OK: Nhanh business {SANDBOX_BUSINESS_ID}")
    assert "token valid until" in message and SANDBOX_ACCESS_TOKEN not in message
    without_secret = make_client(shared).test_connection()
    assert without_secret.startswith("OK") and "secretKey" in without_secret
    with pytest.raises(AuthRejected, match="ERR_INVALID_ACCESS_TOKEN"):
        make_client(shared, access_token="wrong", secret_key=SANDBOX_SECRET_KEY).test_connection()
    with pytest.raises(RequestRejected, match="secretKey"):
        make_client(shared, secret_key="wrong").test_connection()
