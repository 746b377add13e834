"""The sandbox runner (routing, rate limiter, latency, faults, control API) and the base HTTP client's
retries against it, over real HTTP on loopback. No database needed."""

import time

import pytest
import requests

from integrations.errors import AuthRejected, RateLimited, RequestRejected, UpstreamUnavailable
from integrations.http import BaseClient
from integrations.sandbox.base import SandboxApp, SandboxResponse
from integrations.sandbox.population import Population
from integrations.sandbox.server import control


class EchoSandbox(SandboxApp):
    """Answers with what it got; 3 requests per second per token; rows maybe malformed."""

    name = "echo"
    request_limit = (3, 1.0)

    def rate_limit_key(self, request):
        return request.header("X-Token", "anonymous")

    def handle(self, request):
        if request.header("X-Token") == "bad":
            return SandboxResponse(401, {"errors": "bad token"})
        rows = [{"id": i} if not self.roll_malformed() else {"id": "oops"} for i in range(20)]
        return SandboxResponse(200, {"path": request.path, "query": request.query, "rows": rows})

    def control(self, action, payload):
        if action == "ping":
            return {"pong": payload}
        raise KeyError(action)


@pytest.fixture
def echo(sandbox_factory):
    server = sandbox_factory(only=["echo"], extra={"echo": EchoSandbox})
    return server


def client_for(server, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return BaseClient(server.url_for("echo"), **kw)


def test_routes_by_prefix_and_answers_404_elsewhere(echo):
    r = requests.get(echo.url_for("echo") + "/v1/things?x=1", headers={"X-Token": "a"}, timeout=5)
    assert r.status_code == 200 and r.json()["path"] == "/v1/things" and r.json()["query"] == {"x": ["1"]}
    assert requests.get(echo.base_url + "/nowhere/x", timeout=5).status_code == 404
    status = requests.get(echo.base_url + "/_sandbox/", timeout=5).json()
    assert status["echo"]["requests_served"] == 1


def test_rate_limit_answers_429_with_retry_after_per_key(echo):
    url = echo.url_for("echo") + "/x"
    codes = [requests.get(url, headers={"X-Token": "a"}, timeout=5).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = requests.get(url, headers={"X-Token": "a"}, timeout=5)
    assert 0 <= float(limited.headers["Retry-After"]) <= 1
    assert requests.get(url, headers={"X-Token": "b"}, timeout=5).status_code == 200  # other key unaffected
    control(echo.base_url, "echo", "faults", {"rate_limit_enabled": False})
    assert all(requests.get(url, headers={"X-Token": "a"}, timeout=5).ok for _ in range(5))


def test_faults_are_injected_and_changed_at_run_time(echo):
    url = echo.url_for("echo") + "/x"
    control(echo.base_url, "echo", "faults", {"server_error_next": 2, "rate_limit_enabled": False})
    assert [requests.get(url, timeout=5).status_code for _ in range(3)] == [503, 503, 200]
    control(echo.base_url, "echo", "faults", {"latency_ms": 150})
    t = time.monotonic()
    requests.get(url, timeout=5)
    assert time.monotonic() - t >= 0.15
    control(echo.base_url, "echo", "faults", {"latency_ms": 0, "timeout_next": 1, "timeout_seconds": 1.0})
    with pytest.raises(requests.Timeout):
        requests.get(url, timeout=0.3)
    control(echo.base_url, "echo", "faults", {"malformed_rate": 1.0})
    assert all(row["id"] == "oops" for row in requests.get(url, timeout=5).json()["rows"])
    with pytest.raises(requests.HTTPError):
        control(echo.base_url, "echo", "faults", {"no_such_fault": 1})
    assert control(echo.base_url, "echo", "ping", {"a": 1}) == {"result": {"pong": {"a": 1}}}


@pytest.mark.parametrize("body", [
    {"latency_ms": "x"}, {"latency_ms": 1.5}, {"latency_ms": -1}, {"server_error_next": True},
    {"timeout_seconds": "1"}, {"malformed_rate": 2}, {"mutations_per_second": "x"},
    {"rate_limit_enabled": "no"}, {"server_error_status": 200}, [1], 5,
])
def test_fault_settings_of_the_wrong_type_or_range_are_refused_and_nothing_changes(echo, body):
    before = requests.get(f"{echo.base_url}/_sandbox/echo", timeout=5).json()["faults"]
    response = requests.post(f"{echo.base_url}/_sandbox/echo/faults", json=body, timeout=5)
    assert response.status_code == 400 and response.json()["error"]
    assert requests.get(f"{echo.base_url}/_sandbox/echo", timeout=5).json()["faults"] == before


def test_a_control_body_that_is_not_json_is_a_400(echo):
    response = requests.post(f"{echo.base_url}/_sandbox/echo/faults", data=b"{latency", timeout=5)
    assert response.status_code == 400 and response.json() == {"error": "the body is not valid JSON"}


def test_client_retries_5xx_timeouts_and_429_honouring_retry_after(echo):
    c = client_for(echo, read_timeout=0.3)
    c.session.headers["X-Token"] = "t"
    control(echo.base_url, "echo", "faults", {"server_error_next": 3, "timeout_next": 1, "timeout_seconds": 0.6})
    assert c.call("GET", "/x")["path"] == "/x"
    assert c.retries == 4
    # 3 per second: the 4th..6th calls get 429 with Retry-After and wait for the window instead of failing.
    c2 = client_for(echo)
    c2.session.headers["X-Token"] = "u"
    t = time.monotonic()
    for _ in range(6):
        c2.call("GET", "/x")
    assert time.monotonic() - t >= 0.9 and c2.retries >= 1


def test_client_gives_up_with_a_typed_error_when_retries_run_out(echo):
    control(echo.base_url, "echo", "faults", {"server_error_next": 10, "rate_limit_enabled": False})
    c = client_for(echo, max_attempts=3)
    with pytest.raises(UpstreamUnavailable, match="server error HTTP 503"):
        c.call("GET", "/x")
    assert c.retries == 2
    control(echo.base_url, "echo", "faults", {"server_error_next": 0, "rate_limit_next": 5})
    with pytest.raises(RateLimited):
        client_for(echo, max_attempts=2).call("GET", "/x")


def test_client_does_not_retry_rejected_credentials_or_bad_requests(echo):
    c = client_for(echo)
    c.session.headers["X-Token"] = "bad"
    with pytest.raises(AuthRejected):
        c.call("GET", "/x")
    assert c.retries == 0
    with pytest.raises(RequestRejected):
        BaseClient(echo.base_url).call("GET", "/nowhere")


def test_connection_refused_is_upstream_unavailable():
    c = BaseClient("http://127.0.0.1:9", max_attempts=2, backoff_base=0.01, backoff_max=0.02)
    with pytest.raises(UpstreamUnavailable, match="cannot connect"):
        c.call("GET", "/x")


def test_population_is_deterministic_and_links_the_same_people():
    a, b = Population(seed=5, nhanh_customers=1000), Population(seed=5, nhanh_customers=1000)
    assert a.person(17) == b.person(17) and a.shopify_phone_layout(3) == b.shopify_phone_layout(3)
    assert Population(seed=6, nhanh_customers=1000).person(17) != a.person(17)
    # Shopify's overlapping customers are distinct Nhanh people, and the inverse map agrees.
    people = [a.shopify_person_number(j) for j in range(a.n_overlap)]
    assert len(set(people)) == a.n_overlap
    for j in range(0, a.n_overlap, 37):
        assert a.shopify_twin_of_nhanh(a.shopify_person_number(j)) == j
    # Primary phones are unique per person.
    phones = [a.person(p).primary for p in range(2000) if a.person(p).primary]
    assert len(phones) == len(set(phones))


def test_status_counts_requests_served_and_rate_limited_for_every_sandbox(sandbox_factory):
    from integrations.nhanh.sandbox import SANDBOX_ACCESS_TOKEN, SANDBOX_APP_ID, SANDBOX_BUSINESS_ID

    server = sandbox_factory(customers=50, seed=2, extra={"echo": EchoSandbox})
    status = requests.get(server.base_url + "/_sandbox/", timeout=5).json()
    assert {"nhanh", "shopify", "echo"} <= set(status)
    assert all(s["requests_served"] == 0 and s["rate_limited"] == 0 for s in status.values())
    echo_url = server.url_for("echo") + "/x"
    [requests.get(echo_url, headers={"X-Token": "a"}, timeout=5) for _ in range(5)]  # 3 per second: 2 refused
    control(server.base_url, "echo", "faults", {"server_error_next": 1})
    assert requests.get(echo_url, headers={"X-Token": "b"}, timeout=5).status_code == 503  # not a rate refusal
    # Nhanh: refused by its window, then by the lock (a call while locked, which extends it).
    server.apps["nhanh"].limiter.limit = 2
    nhanh_url = server.url_for("nhanh") + "/v3.0/customer/list"
    answers = [requests.post(nhanh_url, params={"appId": SANDBOX_APP_ID, "businessId": SANDBOX_BUSINESS_ID},
                             headers={"Authorization": SANDBOX_ACCESS_TOKEN}, json={}, timeout=5).json()
               for _ in range(4)]
    assert [a["code"] for a in answers] == [1, 1, 0, 0]
    status = requests.get(server.base_url + "/_sandbox/", timeout=5).json()
    assert (status["echo"]["requests_served"], status["echo"]["rate_limited"]) == (6, 2)
    assert (status["nhanh"]["requests_served"], status["nhanh"]["rate_limited"]) == (4, 2)
    assert status["shopify"]["requests_served"] == 0 and status["shopify"]["rate_limited"] == 0
    assert control(server.base_url, "nhanh", "status")["rate_limited"] == 2


def test_nhanh_cursor_option_is_checked_by_the_sandbox_command():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="nhanh-cursor"):
        call_command("sandbox", "--nhanh-cursor", "tuple")
