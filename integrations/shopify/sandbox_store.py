"""The Shopify sandbox's customers: generated on demand from the shared population, plus the sparse state
that mutations leave behind (changed and created customers, metafields).

Customer ``j`` (0 ≤ j < n_shopify) has legacy id ``7_000_000_000 + 11·j`` and is computed from
``(seed, j)`` when asked for, so a shop of 200,000 customers holds no per-customer memory until it is
sorted by a timestamp (one int per customer, built once) or searched by exact email/phone (one index,
built once). Customer dicts are never mutated: a change stores a new dict, so a page being served while a
mutation runs stays consistent.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from graphql import GraphQLError

from integrations.sandbox.population import FastRandom, Population, e164, render_phone

from .sandbox_search import compile_query, fold, phone_digits

BASE_ID = 7_000_000_000
ID_STEP = 11
ADDRESS_BASE_ID = 9_000_000_000
METAFIELD_BASE_ID = 30_000_000_000
CUSTOMER_GID = "gid://shopify/Customer/"
MAX_PAGE_SIZE = 250
MAX_METAFIELDS_PER_CALL = 25
KEY_SHIFT = 40  # timestamp sort keys are (seconds << 40) | legacy id: one int, ties broken by id
ID_MASK = (1 << KEY_SHIFT) - 1
CURSOR_VALUE = {"_id": "_id", "_updated": "updatedAt", "_created": "createdAt"}  # what a cursor carries
CREATION_SPAN = 3 * 365 * 86_400  # generated customers were created over the three years before the anchor

STATES = (("DISABLED", 0.62), ("ENABLED", 0.92), ("INVITED", 0.98), ("DECLINED", 1.0))  # cumulative
TAGS = ["vip", "wholesale", "newsletter", "zalo", "facebook", "khach-si", "khach-le", "khach-quen", "tra-gop"]
EMAIL_DOMAINS = ["example.com", "example.net", "example.org"]
NOTE_WITH_PHONE = ["SĐT khác: {phone}", "Gọi số {phone} nếu không nghe máy", "Liên hệ {phone}",
                   "sdt2 {phone}", "Giao hàng gọi trước: {phone}"]
PLAIN_NOTES = ["Khách quen", "Giao giờ hành chính", "Thích hàng mới về", "Hay đổi size"]
COUNTRY_NAMES = {"VN": "Vietnam", "US": "United States", "SG": "Singapore", "TH": "Thailand"}
MARKETING_STATES = ["NOT_SUBSCRIBED", "NOT_SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED"]

E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HANDLE_RE = re.compile(r"^[A-Za-z0-9_$:-]+$")
INTEGER_RE = re.compile(r"^[+-]?\d+$")


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()[:19] + "Z"  # isoformat: 3× faster than strftime


def customer_gid(legacy_id: int) -> str:
    return f"{CUSTOMER_GID}{legacy_id}"


def legacy_id_of(gid: str | None) -> int | None:
    if not gid or not gid.startswith(CUSTOMER_GID):
        return None
    tail = gid[len(CUSTOMER_GID):]
    return int(tail) if tail.isdigit() else None


def public_view(customer: dict) -> dict:
    """A customer without the sandbox's bookkeeping keys (those start with "_")."""
    return {k: v for k, v in customer.items() if not k.startswith("_")}


class _IdOrder(Sequence):
    """Legacy ids in ascending order without materializing them: generated ids, then created ones."""

    def __init__(self, generated: int, created: list[int]):
        self.generated, self.created = generated, created

    def __len__(self) -> int:
        return self.generated + len(self.created)

    def __getitem__(self, pos):
        if pos < self.generated:
            return BASE_ID + ID_STEP * pos
        return self.created[pos - self.generated]


# --- metafield validation ------------------------------------------------------------------------------
def _check_value(type_: str, value: str) -> str | None:
    """The userError text for a value that does not fit its metafield type, or None."""
    if type_ == "number_integer":
        if not INTEGER_RE.match(value) or not -(2**63) <= int(value) < 2**63:
            return "Value must be an integer."
    elif type_ == "number_decimal":
        try:
            Decimal(value)
        except InvalidOperation:
            return "Value must be a decimal."
    elif type_ == "single_line_text_field":
        if "\n" in value:
            return "Value must be a single line text string."
        if len(value) > 255:
            return "Value has a maximum length of 255."
    elif type_ == "boolean":
        if value not in ("true", "false"):
            return "Value must be true or false."
    elif type_ == "json":
        try:
            json.loads(value)
        except ValueError:
            return "Value must be valid JSON."
    return None


METAFIELD_TYPES = {"number_integer", "number_decimal", "single_line_text_field", "multi_line_text_field",
                   "boolean", "json"}


class CustomerStore:
    def __init__(self, population: Population, seed: int, *, malformed: Callable[[], bool] = lambda: False):
        self.population = population
        self.seed = seed
        self.generated_count = population.n_shopify
        self.malformed = malformed
        self.lock = threading.RLock()
        self.changed: dict[int, dict] = {}  # legacy id → current dict, for changed and created customers
        self.created_ids: list[int] = []
        self.next_id = BASE_ID + ID_STEP * self.generated_count
        self.metafields: dict[int, dict[tuple[str, str], dict]] = {}
        self.next_metafield_id = METAFIELD_BASE_ID
        self.metafields_written = 0
        self.injected_errors: dict[int, str] = {}  # owner legacy id → userError message
        self._sorted: dict[str, list[int]] = {}  # sort key → sorted keys, built on first use
        self._by_email: dict[str, int] | None = None
        self._by_phone: dict[str, int] | None = None
        anchor = int(population.anchor.timestamp())
        self._first_created = anchor - CREATION_SPAN
        self._generated = lru_cache(maxsize=8192)(self._generate)

    # --- generated customers ------------------------------------------------------------------------
    def _rng(self, stream: int, j: int) -> random.Random:
        return FastRandom(((self.seed * 1_000_003 + stream) << 40) ^ j)

    def _generated_updated(self, j: int) -> int:
        return int(self.population.updated_at("shopify", j).timestamp())

    def _generated_created(self, j: int, updated: int) -> int:
        # Ids grow with creation time, as in a real shop; nobody is updated before being created.
        step = CREATION_SPAN // max(self.generated_count, 1)
        return min(updated, self._first_created + j * step)

    def _email(self, j: int) -> str | None:
        person = self.population.person(self.population.shopify_person_number(j))
        r = self._rng(2, j)
        if r.random() < 0.06:  # some shoppers only ever gave a phone
            return None
        return f"{person.email_user}@{r.choice(EMAIL_DOMAINS)}"

    def _phone(self, j: int, layout: dict | None = None) -> str | None:
        local = (layout or self.population.shopify_phone_layout(j))["phone"]
        return e164(local) if local else None

    def _generate(self, j: int) -> dict:
        pop = self.population
        person = pop.person(pop.shopify_person_number(j))
        layout = pop.shopify_phone_layout(j)
        r = self._rng(1, j)
        legacy = BASE_ID + ID_STEP * j
        first_name, last_name = f"{person.middle} {person.given}", person.family
        email, phone = self._email(j), self._phone(j, layout)
        updated = self._generated_updated(j)
        created = self._generated_created(j, updated)
        roll = r.random()
        state = next(name for name, upto in STATES if roll < upto)
        tags = sorted(r.sample(TAGS, r.choice([0, 0, 1, 1, 2, 3])))
        orders = r.randint(1, 12) if r.random() < 0.8 else 0
        spent = int(person.total_spent * r.uniform(0.05, 0.5)) // 1000 * 1000 if orders else 0
        if layout["note_phone"]:
            written = render_phone(layout["note_phone"], r, note_name=r.choice(["chồng", "vợ", "mẹ", "con"]),
                                   in_prose=True)
            note = r.choice(NOTE_WITH_PHONE).format(phone=written)
        else:
            note = r.choice(PLAIN_NOTES) if r.random() < 0.2 else None
        address = None
        if layout["address_phone"] or r.random() < 0.85:
            city, province_code, zip_code = person.city
            address = {
                "id": f"gid://shopify/MailingAddress/{ADDRESS_BASE_ID + 13 * j}?model_name=CustomerAddress",
                "address1": f"{person.house} {person.street}",
                "address2": f"Phường {r.randint(1, 15)}" if r.random() < 0.4 else None,
                "city": city, "province": city, "provinceCode": province_code, "zip": zip_code,
                "country": "Vietnam", "countryCodeV2": "VN", "company": None,
                "firstName": first_name, "lastName": last_name, "name": f"{first_name} {last_name}",
                "phone": render_phone(layout["address_phone"], r) if layout["address_phone"] else None,
            }
        return self._assemble(
            legacy, first_name=first_name, last_name=last_name, email=email, phone=phone, note=note,
            state=state, tags=tags, orders=orders, spent=spent, created=created, updated=updated,
            address=address, verified=bool(email) and r.random() < 0.7, marketing=r.choice(MARKETING_STATES),
        )

    @staticmethod
    def _assemble(legacy: int, *, first_name, last_name, email, phone, note, state, tags, orders, spent,
                  created, updated, address, verified=False, marketing="NOT_SUBSCRIBED", locale="vi",
                  tax_exempt=False) -> dict:
        display = " ".join(p for p in (first_name, last_name) if p) or email or phone or ""
        return {
            "id": customer_gid(legacy), "legacyResourceId": str(legacy),
            "firstName": first_name, "lastName": last_name, "displayName": display, "note": note,
            "state": state, "tags": tags, "numberOfOrders": str(orders),
            "amountSpent": {"amount": f"{spent}.0", "currencyCode": "VND"},
            "createdAt": iso(created), "updatedAt": iso(updated),
            "locale": locale, "taxExempt": tax_exempt, "verifiedEmail": verified, "canDelete": orders == 0,
            "email": email, "phone": phone,
            "defaultEmailAddress": ({"emailAddress": email, "marketingState": marketing, "validFormat": True}
                                    if email else None),
            "defaultPhoneNumber": {"phoneNumber": phone} if phone else None,
            "defaultAddress": address, "addresses": [address] if address else [],
            "_id": legacy, "_updated": updated, "_created": created,
            "_text": fold(f"{display} {email or ''}"),
        }

    # --- lookups ------------------------------------------------------------------------------------
    def customer(self, legacy_id: int | None) -> dict | None:
        if legacy_id is None:
            return None
        changed = self.changed.get(legacy_id)
        if changed is not None:
            return changed
        j, rest = divmod(legacy_id - BASE_ID, ID_STEP)
        if rest == 0 and 0 <= j < self.generated_count:
            return self._generated(j)
        return None

    def customer_by_gid(self, gid: str | None) -> dict | None:
        return self.customer(legacy_id_of(gid))

    def count(self) -> int:
        return self.generated_count + len(self.created_ids)

    def all_ids(self) -> Iterator[int]:
        yield from _IdOrder(self.generated_count, self.created_ids)

    def metafield(self, legacy_id: int, namespace: str, key: str) -> dict | None:
        return self.metafields.get(legacy_id, {}).get((namespace, key))

    def metafields_of(self, legacy_id: int) -> list[dict]:
        return sorted(self.metafields.get(legacy_id, {}).values(), key=lambda m: m["id"])

    def _contact_index(self) -> tuple[dict[str, int], dict[str, int]]:
        """Exact email / phone → legacy id, built once (uniqueness checks, ``email:``/``phone:`` search)."""
        with self.lock:
            if self._by_email is None:
                by_email, by_phone = {}, {}
                for j in range(self.generated_count):
                    legacy = BASE_ID + ID_STEP * j
                    if legacy in self.changed:
                        continue
                    email, phone = self._email(j), self._phone(j)
                    if email:
                        by_email[fold(email)] = legacy
                    if phone:
                        by_phone[phone_digits(phone)] = legacy
                for legacy, customer in self.changed.items():
                    if customer["email"]:
                        by_email[fold(customer["email"])] = legacy
                    if customer["phone"]:
                        by_phone[phone_digits(customer["phone"])] = legacy
                self._by_email, self._by_phone = by_email, by_phone
            return self._by_email, self._by_phone

    # --- ordering -----------------------------------------------------------------------------------
    @staticmethod
    def sort_field(sort_key: str) -> str:
        # NAME, LOCATION and RELEVANCE are not modelled: they are served in id order.
        return {"UPDATED_AT": "_updated", "CREATED_AT": "_created"}.get(sort_key, "_id")

    def _order(self, field: str) -> Sequence[int]:
        if field == "_id":
            return _IdOrder(self.generated_count, self.created_ids)
        keys = self._sorted.get(field)
        if keys is None:
            with self.lock:
                keys = self._sorted.get(field)
                if keys is None:
                    keys = sorted(self._time_key(field, legacy) for legacy in self.all_ids())
                    self._sorted[field] = keys
        return keys

    def _time_key(self, field: str, legacy: int) -> int:
        customer = self.changed.get(legacy)
        if customer is not None:
            return (customer[field] << KEY_SHIFT) | legacy
        j = (legacy - BASE_ID) // ID_STEP
        updated = self._generated_updated(j)
        seconds = updated if field == "_updated" else self._generated_created(j, updated)
        return (seconds << KEY_SHIFT) | legacy

    @staticmethod
    def sort_key_of(customer: dict, field: str) -> int:
        return customer["_id"] if field == "_id" else (customer[field] << KEY_SHIFT) | customer["_id"]

    @staticmethod
    def _legacy_of_key(key: int, field: str) -> int:
        return key if field == "_id" else key & ID_MASK

    # --- cursors ------------------------------------------------------------------------------------
    @staticmethod
    def cursor(customer: dict, field: str) -> str:
        value = customer[CURSOR_VALUE[field]]
        raw = json.dumps({"last_id": customer["_id"], "last_value": value}, separators=(",", ":"))
        return base64.b64encode(raw.encode()).decode()

    @staticmethod
    def _cursor_key(cursor: str, field: str) -> int:
        try:
            decoded = json.loads(base64.b64decode(cursor, validate=True))
            legacy = int(decoded["last_id"])
            if field == "_id":
                return legacy
            seconds = int(datetime.fromisoformat(decoded["last_value"].replace("Z", "+00:00")).timestamp())
            return (seconds << KEY_SHIFT) | legacy
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GraphQLError("Invalid cursor for the current pagination sort.") from exc

    # --- paging -------------------------------------------------------------------------------------
    def page(self, *, first=None, after=None, last=None, before=None, reverse=False, sort_key="ID",
             query=None) -> tuple[dict, list[dict]]:
        """One page of the ``customers`` connection and the search warnings."""
        if first is None and last is None:
            raise GraphQLError("you must provide one of first or last")
        if first is not None and last is not None:
            raise GraphQLError("providing both first and last is not supported")
        size = first if first is not None else last
        if size < 0 or size > MAX_PAGE_SIZE:
            # Exact wording of Shopify's message is unconfirmed.
            raise GraphQLError(f"The page size must be between 0 and {MAX_PAGE_SIZE}; {size} was given.")
        field = self.sort_field(sort_key)
        search = _compiled(query)
        with self.lock:
            keys, low, high = self._candidates(field, search)
            ascending = (not reverse) == (last is None)  # the direction we walk the sorted keys in
            start = after if last is None else before
            start_key = self._cursor_key(start, field) if start else None
            found = self._walk(keys, low, high, start_key, ascending, search.predicate, field, size + 1)
            more = len(found) > size
            rows = found[:size]
            earlier = False
            if start_key is not None:
                earlier = bool(self._walk(keys, low, high, start_key, not ascending, search.predicate,
                                          field, 1, inclusive=True))
        if last is not None:
            rows.reverse()
        shown = [_corrupt(row) if self.malformed() else row for row in rows]
        has_next, has_previous = (more, earlier) if last is None else (earlier, more)
        return self._connection(rows, shown, field, has_next, has_previous), search.warnings

    def _candidates(self, field: str, search) -> tuple[Sequence[int], int, int]:
        """The sorted keys to walk and the [low, high) slice a query's top-level ranges confine it to."""
        if search.email is not None or search.phone is not None:
            by_email, by_phone = self._contact_index()
            ids = {by_email.get(search.email)} if search.email is not None else {by_phone.get(search.phone)}
            if search.email is not None and search.phone is not None:
                ids &= {by_phone.get(search.phone)}
            customers = [c for c in map(self.customer, ids) if c is not None]
            keys = sorted(self.sort_key_of(c, field) for c in customers)
            return keys, 0, len(keys)
        keys = self._order(field)
        bounds = search.bounds.get({"_updated": "updated_at", "_created": "created_at", "_id": "id"}[field])
        low, high = 0, len(keys)
        if bounds:
            lower, upper = bounds
            if field == "_id":
                low = bisect_left(keys, lower) if lower is not None else 0
                high = bisect_right(keys, upper) if upper is not None else len(keys)
            else:
                low = bisect_left(keys, lower << KEY_SHIFT) if lower is not None else 0
                high = bisect_left(keys, (upper + 1) << KEY_SHIFT) if upper is not None else len(keys)
        return keys, low, high

    def _walk(self, keys, low, high, start_key, ascending, predicate, field, limit, *, inclusive=False):
        """Up to ``limit`` matching customers from ``start_key`` (exclusive) on, in one direction."""
        if start_key is None:
            pos = low if ascending else high - 1
        elif ascending:
            pos = (bisect_left if inclusive else bisect_right)(keys, start_key, low, high)
        else:
            pos = (bisect_right if inclusive else bisect_left)(keys, start_key, low, high) - 1
        positions = range(pos, high) if ascending else range(pos, low - 1, -1)
        found = []
        for position in positions:
            customer = self.customer(self._legacy_of_key(keys[position], field))
            if customer is not None and (predicate is None or predicate(customer)):
                found.append(customer)
                if len(found) >= limit:
                    break
        return found

    def _connection(self, rows: list[dict], shown: list[dict], field: str, has_next: bool,
                    has_previous: bool) -> dict:
        """``shown`` are the rows as served (maybe corrupted by an injected fault); cursors come from the
        real rows so paging goes on correctly past a malformed one."""

        def edges(info, **_):  # built only when the query selects edges
            pairs = zip(rows, shown, strict=True)
            return [{"cursor": self.cursor(row, field), "node": node} for row, node in pairs]

        return {
            "nodes": shown,
            "edges": edges,
            "pageInfo": {
                "hasNextPage": has_next, "hasPreviousPage": has_previous,
                "startCursor": self.cursor(rows[0], field) if rows else None,
                "endCursor": self.cursor(rows[-1], field) if rows else None,
            },
        }

    def expected(self, query: str | None) -> list[int]:
        """Ground truth for tests: every matching legacy id, by a plain scan."""
        predicate = _compiled(query).predicate
        return [legacy for legacy in self.all_ids()
                if predicate is None or predicate(self.customer(legacy))]

    def count_matching(self, query: str | None) -> int:
        """``customersCount(query:)``: the same search the ``customers`` connection applies."""
        search = _compiled(query)
        if search.predicate is None and search.email is None and search.phone is None:
            with self.lock:
                keys, low, high = self._candidates("_id", search)
                return high - low
        with self.lock:
            keys, low, high = self._candidates("_id", search)
            return len(self._walk(keys, low, high, None, True, search.predicate, "_id", high - low + 1))

    # --- writes -------------------------------------------------------------------------------------
    def _store(self, legacy: int, new: dict) -> None:
        """Make ``new`` the customer's current dict, keeping the sorted indexes and contact index in step."""
        old = self.customer(legacy)
        for field, keys in self._sorted.items():
            if old is not None:
                old_key = self.sort_key_of(old, field)
                at = bisect_left(keys, old_key)
                if at < len(keys) and keys[at] == old_key:
                    del keys[at]
            insort(keys, self.sort_key_of(new, field))
        if self._by_email is not None:
            indexes = ((self._by_email, "email", fold), (self._by_phone, "phone", phone_digits))
            for index, name, normalize in indexes:
                if old is not None and old[name]:
                    index.pop(normalize(old[name]), None)
                if new[name]:
                    index[normalize(new[name])] = legacy
        self.changed[legacy] = new

    def _touch(self, legacy: int, now: int) -> None:
        customer = self.customer(legacy)
        self._store(legacy, {**customer, "updatedAt": iso(now), "_updated": now})

    def metafields_set(self, inputs: list[dict]) -> dict:
        """``metafieldsSet``: all or nothing; any userError leaves everything as it was."""
        if len(inputs) > MAX_METAFIELDS_PER_CALL:
            return {"metafields": None, "userErrors": [{
                "field": ["metafields"], "code": "LESS_THAN_OR_EQUAL_TO", "elementIndex": None,
                "message": f"Exceeded the maximum metafields input limit of {MAX_METAFIELDS_PER_CALL}.",
            }]}
        with self.lock:
            errors = []
            for index, item in enumerate(inputs):
                errors += self._metafield_errors(item, ["metafields", str(index)], index)
            if errors:
                return {"metafields": None, "userErrors": errors}
            now = int(time.time())
            written = [self._write_metafield(legacy_id_of(item["ownerId"]), item, now) for item in inputs]
            for legacy in {legacy_id_of(item["ownerId"]) for item in inputs}:
                self._touch(legacy, now)
        return {"metafields": written, "userErrors": []}

    def _metafield_errors(self, item: dict, path: list[str], index: int | None,
                          owner: int | None = None) -> list[dict]:
        def error(field, message, code):
            return {"field": [*path, field], "message": message, "code": code, "elementIndex": index}

        owner = owner if owner is not None else legacy_id_of(item.get("ownerId"))
        if "ownerId" in item and self.customer(owner) is None:
            return [error("ownerId", "Owner does not exist.", "INVALID")]  # wording unconfirmed
        if owner in self.injected_errors:
            return [error("ownerId", self.injected_errors[owner], "INVALID")]
        errors = []
        namespace, key, value = item.get("namespace") or "$app", item.get("key") or "", item.get("value")
        for name, text, low in (("namespace", namespace, 3), ("key", key, 2)):
            if len(text) < low:
                errors.append(error(name, f"{name.capitalize()} is too short (minimum is {low} characters)",
                                    "TOO_SHORT"))
            elif len(text) > 64:
                errors.append(error(name, f"{name.capitalize()} is too long (maximum is 64 characters)",
                                    "TOO_LONG"))
            elif not HANDLE_RE.match(text):
                errors.append(error(name, f"{name.capitalize()} contains one or more invalid characters.",
                                    "INVALID"))
        existing = self.metafield(owner, namespace, key) if owner is not None else None
        type_ = item.get("type") or (existing or {}).get("type")
        if value is None:
            errors.append(error("value", "Value can't be blank", "BLANK"))
        elif not type_:
            errors.append(error("type", "Type can't be blank", "BLANK"))
        elif type_ not in METAFIELD_TYPES:
            errors.append(error("type", f"Type {type_!r} is not a valid metafield type.", "INVALID_TYPE"))
        elif problem := _check_value(type_, value):
            errors.append(error("value", problem, "INVALID_VALUE"))
        return errors

    def _write_metafield(self, owner: int, item: dict, now: int) -> dict:
        namespace, key = item.get("namespace") or "$app", item["key"]
        owned = self.metafields.setdefault(owner, {})
        existing = owned.get((namespace, key))
        if existing is None:
            self.next_metafield_id += 1
        record = {
            "id": existing["id"] if existing else f"gid://shopify/Metafield/{self.next_metafield_id}",
            "namespace": namespace, "key": key, "value": item["value"],
            "type": item.get("type") or existing["type"], "ownerType": "CUSTOMER",
            "owner": lambda info, **_: self.customer(owner),
            "createdAt": existing["createdAt"] if existing else iso(now), "updatedAt": iso(now),
        }
        owned[(namespace, key)] = record
        self.metafields_written += 1
        return record

    def customer_create(self, data: dict) -> dict:
        with self.lock:
            errors = self._customer_errors(data, None)
            if errors:
                return {"customer": None, "userErrors": errors}
            legacy = self.next_id
            self.next_id += ID_STEP
            now = int(time.time())
            address = _address(data.get("addresses"), legacy, data)
            customer = self._assemble(
                legacy, first_name=data.get("firstName"), last_name=data.get("lastName"),
                email=data.get("email") or None, phone=data.get("phone") or None, note=data.get("note"),
                state="DISABLED", tags=sorted(set(data.get("tags") or [])), orders=0, spent=0, created=now,
                updated=now, address=address, locale=data.get("locale") or "vi",
                tax_exempt=bool(data.get("taxExempt")),
            )
            self.created_ids.append(legacy)
            self._store(legacy, customer)
            self._write_input_metafields(legacy, data, now)
            return {"customer": self.customer(legacy), "userErrors": []}

    def customer_update(self, data: dict) -> dict:
        with self.lock:
            legacy = legacy_id_of(data.get("id"))
            current = self.customer(legacy)
            if current is None:
                missing = {"field": ["id"], "message": "Customer does not exist"}
                return {"customer": None, "userErrors": [missing]}
            errors = self._customer_errors(data, current)
            if errors:
                return {"customer": None, "userErrors": errors}
            now = int(time.time())
            merged = {name: data.get(name, current[name]) for name in ("firstName", "lastName", "note")}
            email = (data["email"] or None) if "email" in data else current["email"]
            phone = (data["phone"] or None) if "phone" in data else current["phone"]
            address = current["defaultAddress"]
            if "addresses" in data:
                address = _address(data["addresses"], legacy, data)
            customer = self._assemble(
                legacy, first_name=merged["firstName"], last_name=merged["lastName"], email=email,
                phone=phone, note=merged["note"], state=current["state"],
                tags=sorted(set(data["tags"] or [])) if "tags" in data else current["tags"],
                orders=int(current["numberOfOrders"]), spent=int(Decimal(current["amountSpent"]["amount"])),
                created=current["_created"], updated=now, address=address,
                verified=current["verifiedEmail"] and email == current["email"],
                marketing=(current["defaultEmailAddress"] or {}).get("marketingState", "NOT_SUBSCRIBED"),
                locale=data.get("locale") or current["locale"],
                tax_exempt=data["taxExempt"] if data.get("taxExempt") is not None else current["taxExempt"],
            )
            self._store(legacy, customer)
            self._write_input_metafields(legacy, data, now)
            return {"customer": self.customer(legacy), "userErrors": []}

    def _customer_errors(self, data: dict, current: dict | None) -> list[dict]:
        errors = []
        by_email, by_phone = self._contact_index()
        own_id = current["_id"] if current else None

        def present(name):
            return data.get(name) if name in data else (current or {}).get(name)

        email, phone = data.get("email"), data.get("phone")
        if email:
            if not EMAIL_RE.match(email):
                errors.append({"field": ["email"], "message": "Email is invalid"})
            elif by_email.get(fold(email), own_id) != own_id:
                errors.append({"field": ["email"], "message": "Email has already been taken"})
        if phone:
            if not E164_RE.match(phone):
                errors.append({"field": ["phone"], "message": "Phone is invalid"})
            elif by_phone.get(phone_digits(phone), own_id) != own_id:
                errors.append({"field": ["phone"], "message": "Phone has already been taken"})
        for name, label in (("firstName", "First name"), ("lastName", "Last name"), ("email", "Email")):
            if len(data.get(name) or "") > 255:
                message = f"{label} is too long (maximum is 255 characters)"
                errors.append({"field": [name], "message": message})
        if not any(present(name) for name in ("firstName", "lastName", "email", "phone")):
            # Wording unconfirmed (REST says "Customer must have a name, phone number or email address").
            errors.append({"field": [], "message": "A name, phone number, or email address must be present"})
        for index, item in enumerate(data.get("metafields") or []):
            errors += [{"field": e["field"], "message": e["message"]} for e in
                       self._metafield_errors(item, ["metafields", str(index)], None, owner=own_id)]
        return errors

    def _write_input_metafields(self, legacy: int, data: dict, now: int) -> None:
        for item in data.get("metafields") or []:
            self._write_metafield(legacy, item, now)

    def inject_user_errors(self, owner_gids: list[str], message: str) -> None:
        self.injected_errors = {legacy_id_of(gid): message for gid in owner_gids if legacy_id_of(gid)}


def _address(addresses: list[dict] | None, legacy: int, data: dict) -> dict | None:
    if not addresses:
        return None
    given = addresses[0]
    first = given.get("firstName") or data.get("firstName")
    last = given.get("lastName") or data.get("lastName")
    country = given.get("countryCode")
    return {
        "id": f"gid://shopify/MailingAddress/{ADDRESS_BASE_ID + legacy}?model_name=CustomerAddress",
        "address1": given.get("address1"), "address2": given.get("address2"), "city": given.get("city"),
        "province": given.get("provinceCode"), "provinceCode": given.get("provinceCode"),
        "zip": given.get("zip"), "country": COUNTRY_NAMES.get(country, country), "countryCodeV2": country,
        "company": given.get("company"), "firstName": first, "lastName": last,
        "name": " ".join(p for p in (first, last) if p) or None, "phone": given.get("phone"),
    }


def _corrupt(customer: dict) -> dict:
    """An injected malformed row: the kind of damage a careless upstream export shows."""
    damage = customer["_id"] % 3
    if damage == 0:
        return {**customer, "updatedAt": "0000-00-00T00:00:00Z"}
    if damage == 1:
        return {**customer, "defaultPhoneNumber": {"phoneNumber": "n/a"}, "phone": "n/a"}
    return {**customer, "legacyResourceId": "not-a-number"}


_compiled = lru_cache(maxsize=256)(compile_query)
