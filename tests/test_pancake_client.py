"""The Pancake client against its sandbox over real HTTP: time formats, token regeneration, 429s, retries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.errors import AuthRejected, UpstreamUnavailable
from integrations.pancake import sandbox as pancake_sandbox
from integrations.pancake.client import AdaptiveRateLimiter, PancakeClient, TokenRejected, parse_time
from integrations.sandbox.server import control


class MemoryAuth:
    """A PageAuth holding the token in memory (the pull's StoredPageAuth keeps it in the database)."""

    def __init__(self, client, page_id, token, user_token=pancake_sandbox.SANDBOX_USER_TOKEN):
        self.client, self.page_id, self.current, self.user_token = client, page_id, token, user_token
        self.renewals = 0

    def token(self):
        return self.current

    def renew(self, rejected):
        if self.current != rejected:
            return self.current
        self.current = self.client.generate_page_token(self.page_id, self.user_token)
        self.renewals += 1
        return self.current


@pytest.fixture
def server(sandbox_factory):
    return sandbox_factory(customers=300, seed=5, only=["pancake"], pancake_pages=2, pancake_customers=250,
                           rate_limit=False)


def client_for_sandbox(server, **kw) -> PancakeClient:
    return PancakeClient(server.url_for("pancake"), requests_per_second=kw.pop("rate", 500), backoff_base=0.01,
                         backoff_max=0.05, **kw)


@pytest.mark.parametrize("text, expected", [
    ("2019-08-24T14:15:22.000000", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),  # the seed's form
    ("2019-08-24T14:15:22", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),
    ("2019-08-24T14:15:22Z", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),  # RFC 3339
    ("2019-08-24T14:15:22.123456789Z", datetime(2019, 8, 24, 14, 15, 22, 123456, tzinfo=UTC)),  # RFC3339Nano
    ("2019-08-24T21:15:22.5+07:00", datetime(2019, 8, 24, 14, 15, 22, 500000, tzinfo=UTC)),
    ("2019-08-24T21:15:22+0700", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),
    ("2019-08-24 14:15:22.25", datetime(2019, 8, 24, 14, 15, 22, 250000, tzinfo=UTC)),
])
def test_every_time_format_is_read_as_utc(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["24/08/2019 14:15", "", None, "không rõ", "2019-13-45T25:61:00", 1566656122])
def test_an_unparseable_time_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_the_sandbox_sends_every_format_and_the_client_reads_them_all(server):
    page_id = list(server.apps["pancake"].pages)[0]
    client = client_for_sandbox(server)
    auth = MemoryAuth(client, page_id, pancake_sandbox.initial_page_token(page_id))
    seen, shapes = {}, set()
    for number in (1, 2, 3):
        answer = client.page_customers(auth, page_number=number, since=0, until=2_000_000_000)
        for row in answer["customers"]:
            text = row["updated_at"]
            shapes.add(("Z" if text.endswith("Z") else "+" if "+" in text[10:] else "naive",
                        len(text.split(".")[1].rstrip("Z").split("+")[0]) if "." in text else 0))
            seen[row["psid"]] = parse_time(text)
    assert answer["total"] == 250
    assert {("naive", 6), ("naive", 0), ("Z", 0), ("Z", 6), ("Z", 9), ("+", 6)} <= shapes
    truth = {r["psid"]: r["updated_at"] for r in control(server.base_url, "pancake", "customers",
                                                         {"page_id": page_id})["result"]}
    assert {p: t.isoformat(timespec="microseconds").replace("+00:00", "Z") for p, t in seen.items()} == truth


def test_a_renewed_page_token_is_regenerated_from_the_user_token(server):
    page_id = list(server.apps["pancake"].pages)[0]
    client = client_for_sandbox(server)
    old = pancake_sandbox.initial_page_token(page_id)
    newer = client.generate_page_token(page_id, pancake_sandbox.SANDBOX_USER_TOKEN)  # the old one answers 105 now
    assert newer != old
    auth = MemoryAuth(client, page_id, old)
    answer = client.page_customers(auth, page_number=1, since=0, until=2_000_000_000)
    assert len(answer["customers"]) == 100 and auth.renewals == 1
    assert auth.current not in (old, newer)  # generating it invalidated ``newer`` in turn
    with pytest.raises(TokenRejected, match="renewed"):  # the one generated before is dead: 105
        client.call("GET", f"/api/public_api/v1/pages/{page_id}/page_customers",
                    params={"page_access_token": newer, "page_number": 1, "since": 0, "until": 1})


def test_a_refused_user_token_is_a_clear_auth_error(server):
    page_id = list(server.apps["pancake"].pages)[0]
    client = client_for_sandbox(server)
    with pytest.raises(AuthRejected, match="user access token"):
        client.generate_page_token(page_id, "not-a-token")
    with pytest.raises(AuthRejected):
        client.page_customers(MemoryAuth(client, page_id, "stale", user_token="nope"), page_number=1, since=0,
                              until=1)


def test_a_429_storm_is_ridden_out_and_slows_the_rate(server):
    page_id = list(server.apps["pancake"].pages)[0]
    client = client_for_sandbox(server, rate=50)
    control(server.base_url, "pancake", "faults", {"rate_limit_next": 4})
    answer = client.page_customers(MemoryAuth(client, page_id, pancake_sandbox.initial_page_token(page_id)),
                                   page_number=1, since=0, until=2_000_000_000)
    assert len(answer["customers"]) == 100
    assert client.limiter.slowdowns == 4 and client.limiter.rate < 50 / 8
    assert client.retries == 4


def test_five_retries_then_the_error(server):
    page_id = list(server.apps["pancake"].pages)[0]
    client = client_for_sandbox(server)
    control(server.base_url, "pancake", "faults", {"server_error_next": 6})
    with pytest.raises(UpstreamUnavailable):
        client.page_customers(MemoryAuth(client, page_id, pancake_sandbox.initial_page_token(page_id)),
                              page_number=1, since=0, until=2_000_000_000)
    assert client.retries == 5
    control(server.base_url, "pancake", "faults", {"server_error_next": 5})  # 5 failures, the 6th try answers
    assert client.page_customers(MemoryAuth(client, page_id, pancake_sandbox.initial_page_token(page_id)),
                                 page_number=1, since=0, until=2_000_000_000)["total"] == 250


def test_the_adaptive_limiter_halves_on_429_and_recovers_after_successes():
    clock = [0.0]
    slept = []
    limiter = AdaptiveRateLimiter(8.0, min_rate=0.5, increase_after=3, step=0.25,
                                  sleep=lambda s: (slept.append(s), clock.__setitem__(0, clock[0] + s)),
                                  clock=lambda: clock[0])
    limiter.wait()
    limiter.wait()
    assert slept == [pytest.approx(1 / 8)]
    for _ in range(5):
        limiter.throttled()
    assert limiter.rate == 0.5  # floor
    for _ in range(3):
        limiter.succeeded()
    assert limiter.rate == 2.5  # +25 % of the maximum after 3 successes
    for _ in range(30):
        limiter.succeeded()
    assert limiter.rate == 8.0  # never above the configured rate


def test_bad_parameters_and_page_size_are_handled_by_the_sandbox_as_documented(server):
    import requests

    page_id = list(server.apps["pancake"].pages)[0]
    url = f"{server.url_for('pancake')}/api/public_api/v1/pages/{page_id}/page_customers"
    token = pancake_sandbox.initial_page_token(page_id)
    missing = requests.get(url, params={"page_access_token": token, "page_number": 1}, timeout=5).json()
    assert missing["success"] is False and missing["error_code"] == 100
    clamped = requests.get(url, params={"page_access_token": token, "page_number": 1, "page_size": 500,
                                        "since": 0, "until": 2_000_000_000, "order_by": "updated_at"}, timeout=5)
    assert len(clamped.json()["customers"]) == 100
    unknown = requests.get(url, params={"page_access_token": "nope", "page_number": 1, "since": 0, "until": 1},
                           timeout=5).json()
    assert unknown["error_code"] == 102
    status = requests.get(f"{server.base_url}/_sandbox/", timeout=5).json()["pancake"]
    assert status["pages"] == list(server.apps["pancake"].pages)
