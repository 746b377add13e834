"""A local Pancake (pages.fm) API over generated page customers, served by ``integrations.sandbox.server`` under
``/pancake`` (so a connection's base URL is ``http://127.0.0.1:8765/pancake`` where production has
``https://pages.fm``):

    GET  /pancake/api/public_api/v1/pages/{page_id}/page_customers   (page_access_token, since, until, …)
    POST /pancake/api/v1/pages/{page_id}/generate_page_access_token  (access_token = the user token)
    GET  /pancake/api/v1/pages                                       (access_token = the user token)

Test and script hooks (``/_sandbox/pancake/<action>``):

    GET  /_sandbox/pancake/customers?page_id=P   the full truth of page P: [{"psid", "updated_at"}] (UTC ISO with µs)
    POST /_sandbox/pancake/faults {"mutations_per_second": R}   live inserts and updates while pulls read
    POST /_sandbox/pancake/mutate {"page_id": P, "count": N}    N mutations now (deterministic tests)
    POST /_sandbox/pancake/touch {"page_id": P, "psid": S}      one customer updated now
    GET  /_sandbox/                                              status lists ``pages: [...]``

Customers live in memory per page, kept sorted by (updated_at, seq) so a window and a page are two bisects.
A mutation is an insert (a new chat partner) or an update (new name/phones, updated_at = now), which moves the
row to the front of ``order_by=updated_at`` — exactly what shifts rows between page numbers during a pull.

Choices where the fact sheet leaves behaviour open (marked unconfirmed there):
- ``since``/``until`` filter on the ``order_by`` field (what incremental clients assume), both ends inclusive.
- A missing ``since``/``until``/``page_number`` or a ``page_number`` < 1: 200 + ``success: false``,
  ``error_code: 100``. ``page_size`` above 100 is clamped to 100; the default is 100.
- Times: ISO 8601 in every shape seen in the wild — naive with 6 fraction digits (most rows, as real payloads),
  naive without fraction, ``Z`` with and without fraction, 9 fraction digits (RFC3339Nano), and a ``+07:00``
  offset; a naive time is UTC. ``gender`` is a string, sometimes a number; ``page_id`` is sometimes absent.
- Rate limit: 10 requests per second per page (no published number): HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ..sandbox.base import SandboxApp, SandboxRequest, SandboxResponse
from ..sandbox.population import JUNK_PHONES, STRIDE, Population, _rng, e164, render_phone

SANDBOX_USER_TOKEN = "sandbox-pancake-user-token-0123456789"  # noqa: S105 - the sandbox's public credential
FIRST_PAGE_ID = 105_000_000_000_001
PSID_BASE = 7_000_000_000_000_000
MAX_PAGE_SIZE = 100
ERROR_INVALID_TOKEN = 102
ERROR_TOKEN_RENEWED = 105
ERROR_BAD_PARAMS = 100  # our pick: the code for missing parameters is unconfirmed
ICT = timezone(timedelta(hours=7))
NHANH_SHARE = 0.6  # of a page's chat partners are shop customers in Nhanh
UNPARSEABLE_TIMES = ["24/08/2019 14:15", "", "không rõ", "2019-13-45T25:61:00"]

# Renders of a UTC time; the first ones are the fraction-less ones (only for whole seconds).
WHOLE_FORMATS = (
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S"),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
)
FRACTION_FORMATS = (
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f"),  # what real payloads mostly carry
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # RFC 3339 with µs
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",  # RFC3339Nano: 9 digits (sub-µs digits are noise)
    lambda t: t.astimezone(ICT).isoformat(timespec="microseconds"),  # with an offset, +07:00
)


def page_ids(count: int) -> list[str]:
    return [str(FIRST_PAGE_ID + k) for k in range(count)]


def initial_page_token(page_id: str) -> str:
    return f"sandbox-pancake-page-{page_id}-0"


def render_time(ts: float, style: int) -> str:
    t = datetime.fromtimestamp(ts, tz=UTC)
    formats = WHOLE_FORMATS + FRACTION_FORMATS if t.microsecond == 0 else FRACTION_FORMATS
    return formats[style % len(formats)](t)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class PageState:
    page_id: str
    index: int
    name: str
    rows: dict[str, dict] = field(default_factory=dict)  # psid → internal row (float times)
    order: list[tuple[float, int, str]] = field(default_factory=list)  # ascending (updated_at, seq, psid)
    tokens: list[str] = field(default_factory=list)  # every page token ever issued; the last one is valid
    next_seq: int = 0


class PancakeSandbox(SandboxApp):
    name = "pancake"
    request_limit = (10, 1.0)

    def __init__(self, options, population: Population | None = None):
        super().__init__(options, population or Population(seed=options.seed, nhanh_customers=options.customers))
        self.state_lock = threading.RLock()
        self.mutation_rng = random.Random(options.seed * 7 + 3)
        self.faults.mutations_per_second = float(getattr(options, "pancake_mutations_per_second", 0.0) or 0.0)
        self.pages: dict[str, PageState] = {}
        per_page = int(getattr(options, "pancake_customers", 500))
        for k, page_id in enumerate(page_ids(int(getattr(options, "pancake_pages", 2)))):
            page = PageState(page_id, k, f"FolkForm Page {k + 1}", tokens=[initial_page_token(page_id)])
            for c in range(per_page):
                self._add(page, self._generated(page, c))
            self.pages[page_id] = page
        self.mutations = 0
        self._mutator = threading.Thread(target=_mutate_forever, args=(weakref.ref(self),), daemon=True,
                                         name="pancake-sandbox-mutator")
        self._mutator.start()

    # --- the generated people ---------------------------------------------------------------------------
    def nhanh_index_of(self, page: int, c: int) -> int | None:
        """The Nhanh customer whose person chats as customer ``c`` of page ``page`` (None: not a shop customer)."""
        n = self.population.n_nhanh
        if not n or _rng(self.population.seed, "pancake:who", page * 1_000_003 + c).random() >= NHANH_SHARE:
            return None
        return (page * 104_729 + c * STRIDE) % n

    def person_number(self, page: int, c: int) -> int:
        i = self.nhanh_index_of(page, c)
        if i is not None:
            return self.population.nhanh_person_number(i)
        return self.population.n_nhanh + self.population.n_shopify + 1_000_000 * (page + 1) + c

    def phones_local(self, page: int, c: int) -> list[str]:
        """The 10-digit local mobiles behind what customer ``c`` typed (the generator's truth)."""
        r = _rng(self.population.seed, "pancake:phones", page * 1_000_003 + c)
        person = self.population.person(self.person_number(page, c))
        if person.primary is None or r.random() < 0.05:
            return []
        phones = [person.primary]
        if r.random() < 0.04 and self.population.n_nhanh:  # also typed a relative's number (a shop customer)
            other = self.population.person((self.person_number(page, c) + 1) % self.population.n_nhanh)
            if other.primary and other.primary != person.primary:
                phones.append(other.primary)
        return phones

    def phones_e164(self, page_id: str, psid: str) -> list[str]:
        return list(self.pages[page_id].rows[psid]["phones_e164"])

    def _generated(self, page: PageState, c: int) -> dict:
        pop = self.population
        r = _rng(pop.seed, "pancake:row", page.index * 1_000_003 + c)
        person = pop.person(self.person_number(page.index, c))
        anchor = pop.anchor.timestamp()
        age = r.uniform(0, 30 * 86400) if r.random() < 0.15 else r.uniform(30 * 86400, 730 * 86400)
        updated = float(int(anchor - age))
        if c % 3 == 0:
            updated += r.randint(1, 999_999) / 1e6
        inserted = float(int(updated - r.uniform(0, 200 * 86400)))
        locals_ = self.phones_local(page.index, c)
        typed = [render_phone(p, r) for p in locals_]
        if not locals_ and r.random() < 0.5:
            typed = [r.choice(JUNK_PHONES[1:])]
        return self._row(page, c, name=person.name, typed=typed, phones_e164=[e164(p) for p in locals_],
                         gender=person.gender, birthday=person.birthday if r.random() < 0.4 else None,
                         inserted=inserted, updated=updated, style=r.randint(0, 99))

    def _row(self, page: PageState, c: int, **values) -> dict:
        return {"psid": str(PSID_BASE + page.index * 10_000_000 + c), "c": c, "seq": page.next_seq,
                "id": str(uuid.UUID(int=(page.index << 64) | (c + 1))),
                "customer_id": str(uuid.UUID(int=(1 << 127) | (page.index << 64) | (c + 1))), **values}

    def _add(self, page: PageState, row: dict) -> None:
        row["seq"] = page.next_seq
        page.next_seq += 1
        page.rows[row["psid"]] = row
        bisect.insort(page.order, (row["updated"], row["seq"], row["psid"]))

    # --- mutations (under state_lock) -----------------------------------------------------------------------
    def mutate(self, page_id: str | None = None, count: int = 1) -> list[str]:
        """``count`` inserts or updates with updated_at = now; returns the psids touched."""
        touched = []
        with self.state_lock:
            for _ in range(count):
                page = self.pages[page_id] if page_id else self.mutation_rng.choice(list(self.pages.values()))
                if self.mutation_rng.random() < 0.3 or not page.rows:
                    row = self._generated(page, len(page.rows))
                    row["inserted"] = row["updated"] = time.time()
                    self._add(page, row)
                    touched.append(row["psid"])
                else:
                    psid = self.mutation_rng.choice(list(page.rows))
                    self.touch(page.page_id, psid)
                    touched.append(psid)
                self.mutations += 1
        return touched

    def touch(self, page_id: str, psid: str) -> dict:
        with self.state_lock:
            page = self.pages[page_id]
            row = page.rows[psid]
            key = (row["updated"], row["seq"], psid)
            page.order.pop(bisect.bisect_left(page.order, key))
            row["updated"] = max(time.time(), row["updated"] + 1e-6)
            row["name"] = row["name"].split(" (")[0] + f" ({self.mutation_rng.randint(1, 999)})"
            row["style"] = self.mutation_rng.randint(0, 99)
            bisect.insort(page.order, (row["updated"], row["seq"], psid))
            return {"psid": psid, "updated_at": _iso(row["updated"])}

    # --- requests -----------------------------------------------------------------------------------------
    def rate_limit_key(self, request: SandboxRequest) -> str | None:
        parts = request.path.strip("/").split("/")
        return f"page:{parts[5]}" if len(parts) > 5 and parts[:4] == ["api", "public_api", "v1", "pages"] else None

    def rate_limited_response(self, request, retry_after: float) -> SandboxResponse:
        return SandboxResponse(429, {"success": False, "message": "Too many requests"},
                               {"Retry-After": str(max(int(retry_after + 0.999), 1))})

    def server_error_response(self, request, status: int) -> SandboxResponse:
        # The status and body of Pancake's 5xx are unconfirmed: a proxy's HTML page half the time, JSON otherwise.
        if self.rng.random() < 0.5:
            return SandboxResponse(status, f"<html><body><h1>{status} Bad Gateway</h1></body></html>",
                                   content_type="text/html")
        return SandboxResponse(status, {"success": False, "message": "Internal server error"})

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        parts = request.path.strip("/").split("/")
        if parts[:4] == ["api", "public_api", "v1", "pages"] and len(parts) == 6 and parts[5] == "page_customers" \
                and request.method == "GET":
            return self.page_customers(parts[4], request)
        if parts[:3] == ["api", "v1", "pages"] and len(parts) == 5 and parts[4] == "generate_page_access_token" \
                and request.method == "POST":
            return self.generate_token(parts[3], request)
        if parts == ["api", "v1", "pages"] and request.method == "GET":
            return self.list_pages(request)
        return SandboxResponse(404, {"success": False, "message": "Not found"})

    @staticmethod
    def _failure(code: int, message: str) -> SandboxResponse:
        return SandboxResponse(200, {"success": False, "error_code": code, "message": message})

    def _user_ok(self, request) -> bool:
        return not self.faults.auth_reject and request.arg("access_token") == SANDBOX_USER_TOKEN

    def list_pages(self, request) -> SandboxResponse:
        if not self._user_ok(request):
            return self._failure(ERROR_INVALID_TOKEN, "Invalid access_token")
        pages = [{"id": p.page_id, "name": p.name, "platform": "facebook", "shop_id": 1, "settings": {}, "users": []}
                 for p in self.pages.values()]
        return SandboxResponse(200, {"success": True, "categorized": {
            "activated": pages, "activated_page_ids": [p["id"] for p in pages], "hidden": [], "inactivated": [],
            "nopermission": []}})

    def generate_token(self, page_id: str, request) -> SandboxResponse:
        if not self._user_ok(request):
            return self._failure(ERROR_INVALID_TOKEN, "Invalid access_token")
        with self.state_lock:
            page = self.pages.get(page_id)
            if page is None:
                return self._failure(ERROR_INVALID_TOKEN, "You are not an admin of this page")
            token = f"sandbox-pancake-page-{page_id}-{len(page.tokens)}-{uuid.uuid4().hex[:12]}"
            page.tokens.append(token)  # every earlier one now answers 105
        return SandboxResponse(200, {"success": True, "page_access_token": token})

    def page_customers(self, page_id: str, request) -> SandboxResponse:
        page = self.pages.get(page_id)
        token = request.arg("page_access_token")
        if page is None or not token or token not in page.tokens or self.faults.auth_reject:
            return self._failure(ERROR_INVALID_TOKEN, "Invalid access_token")
        if token != page.tokens[-1]:
            return self._failure(ERROR_TOKEN_RENEWED, "access_token renewed, please use the new one")
        try:
            since, until = int(request.arg("since")), int(request.arg("until"))
            number = int(request.arg("page_number"))
            size = int(request.arg("page_size") or MAX_PAGE_SIZE)
        except (TypeError, ValueError):
            return self._failure(ERROR_BAD_PARAMS, "since, until and page_number are required integers")
        if number < 1 or size < 1:
            return self._failure(ERROR_BAD_PARAMS, "page_number and page_size must be at least 1")
        size = min(size, MAX_PAGE_SIZE)
        order_by = request.arg("order_by") or "inserted_at"
        if order_by not in ("inserted_at", "updated_at"):
            return self._failure(ERROR_BAD_PARAMS, "order_by must be inserted_at or updated_at")
        with self.state_lock:  # one consistent snapshot per request, like one database query
            if order_by == "updated_at":
                lo = bisect.bisect_left(page.order, (since, -1, ""))
                hi = bisect.bisect_right(page.order, (until + 1e-7, -1, ""))
                window = page.order[lo:hi]
                chosen = [page.rows[psid] for _, _, psid in reversed(window[max(len(window) - number * size, 0):
                                                                               len(window) - (number - 1) * size])]
                total = len(window)
            else:
                rows = sorted((r for r in page.rows.values() if since <= r["inserted"] <= until),
                              key=lambda r: (r["inserted"], r["seq"]), reverse=True)
                chosen, total = rows[(number - 1) * size:number * size], len(rows)
            customers = [self._public(page, row) for row in chosen]
        return SandboxResponse(200, {"success": True, "total": total, "customers": customers})

    def _public(self, page: PageState, row: dict) -> dict:
        style = row["style"]
        out = {
            "id": row["id"], "customer_id": row["customer_id"], "psid": row["psid"], "page_id": page.page_id,
            "name": row["name"], "phone_numbers": list(row["typed"]),
            "gender": (["unknown", "male", "female"][row["gender"] % 3] if style % 5 else row["gender"]),
            "birthday": row["birthday"], "lives_in": "", "emails": [],
            "thread_id": None if style % 4 == 0 else f"{page.page_id}_{row['psid']}", "can_inbox": True,
            "inserted_at": render_time(row["inserted"], style // 7),
            "updated_at": render_time(row["updated"], style),
            "recent_orders": [], "tags": [],
            "notes": [] if style % 6 else [{"id": f"n{row['seq']}", "message": "khách hỏi size",
                                            "created_at": int(row["inserted"] * 1000), "removed_at": None,
                                            "updated_at": int(row["inserted"] * 1000), "images": [], "links": [],
                                            "order_id": None, "edit_history": []}],
        }
        if style % 9 == 0:
            del out["page_id"]  # one public client re-adds it: it is not always there
        if self.roll_malformed():
            out["updated_at"] = self.rng.choice(UNPARSEABLE_TIMES)
        return out

    # --- control ------------------------------------------------------------------------------------------
    def control(self, action: str, payload: dict) -> Any:
        if action == "customers":
            page = self._page_or_error(payload.get("page_id"))
            with self.state_lock:
                return [{"psid": psid, "updated_at": _iso(ts)} for ts, _, psid in reversed(page.order)]
        if action == "mutate":
            return self.mutate(payload.get("page_id") or None, int(payload.get("count", 1)))
        if action == "touch":
            page = self._page_or_error(payload.get("page_id"))
            return self.touch(page.page_id, str(payload.get("psid")))
        if action == "tokens":
            return {p.page_id: p.tokens[-1] for p in self.pages.values()}
        raise KeyError(action)

    def _page_or_error(self, page_id) -> PageState:
        page = self.pages.get(str(page_id))
        if page is None:
            raise ValueError(f"no sandbox page {page_id!r}; pages: {', '.join(self.pages)}")
        return page

    def status(self) -> dict:
        with self.state_lock:
            sizes = {p.page_id: len(p.rows) for p in self.pages.values()}
        return {**super().status(), "pages": list(self.pages), "customers": sizes, "mutations": self.mutations}


def _mutate_forever(ref: weakref.ref) -> None:
    """Apply ``faults.mutations_per_second`` while the sandbox lives (the thread holds no strong reference)."""
    next_at = time.monotonic()
    while True:
        app = ref()
        if app is None:
            return
        rate = float(app.faults.mutations_per_second or 0)
        if rate <= 0:
            del app
            time.sleep(0.05)
            next_at = time.monotonic()
            continue
        now = time.monotonic()
        if now >= next_at:
            due = min(int((now - next_at) * rate) + 1, 1000)
            app.mutate(count=due)
            next_at += due / rate
        del app
        time.sleep(max(min(next_at - time.monotonic(), 0.05), 0.001))
