"""Upstream rows → model fields. A row that cannot be read raises MalformedRow with the reason staff see."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from customers.models import PhoneSource
from customers.phones import extract_phones, normalize_phone


class MalformedRow(ValueError):
    pass


def payload_hash(raw: dict) -> str:
    return hashlib.md5(  # noqa: S324 - change detection, not security
        json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def _text(value, limit: int) -> str:
    if value is None:
        return ""
    return str(value).strip()[:limit]


def _int(value, what: str, *, required=False) -> int | None:
    if value in (None, ""):
        if required:
            raise MalformedRow(f"{what} is missing")
        return None
    if isinstance(value, bool):
        raise MalformedRow(f"{what} is not a number: {value!r}")
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        raise MalformedRow(f"{what} is not a number: {str(value)[:40]!r}") from None


def _unix(value, what: str) -> datetime | None:
    seconds = _int(value, what)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedRow(f"{what} is out of range: {seconds}") from None


def _ymd(value, what: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise MalformedRow(f"{what} is not a Y-m-d date: {str(value)[:40]!r}") from None


def _iso(value, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedRow(f"{what} is not an ISO 8601 time: {str(value)[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def int_key(value) -> int | None:
    """An upstream id as an int, or None when it is missing or not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def nhanh_key(raw) -> int | None:
    return int_key(raw.get("id")) if isinstance(raw, dict) else None


def shopify_key(node) -> int | None:
    if not isinstance(node, dict):
        return None
    return int_key(node.get("legacyResourceId") or str(node.get("id", "")).rsplit("/", 1)[-1])


def nhanh_customer(raw: dict) -> tuple[dict, list[tuple[str, str]]]:
    """(fields for NhanhCustomer, [(e164, source)]) from a v3 customer/list row."""
    if not isinstance(raw, dict):
        raise MalformedRow(f"row is not an object: {str(raw)[:60]!r}")
    nhanh_id = _int(raw.get("id"), "id", required=True)
    customer_type = _int(raw.get("type"), "type")
    if customer_type not in (None, 1, 2, 3):
        raise MalformedRow(f"type {customer_type} is not 1, 2 or 3")
    mobile = _text(raw.get("mobile"), 64)
    fields = {
        "nhanh_id": nhanh_id,
        "name": _text(raw.get("name"), 255),
        "mobile": mobile,
        "email": _text(raw.get("email"), 254),
        "customer_type": customer_type,
        "address": _text(raw.get("address"), 2000),
        "total_spent": _int(raw.get("totalAmount"), "totalAmount") or 0,
        "points": _int(raw.get("points"), "points"),
        "last_bought_date": _ymd(raw.get("lastBoughtDate"), "lastBoughtDate"),
        "upstream_updated_at": _unix(raw.get("updatedAt"), "updatedAt"),
    }
    phones = []
    if e164 := normalize_phone(mobile):
        phones.append((e164, PhoneSource.NHANH_MOBILE))
    return fields, phones


def shopify_customer(node: dict) -> tuple[dict, list[tuple[str, str]]]:
    """(fields for ShopifyCustomer, [(e164, source)]) from a customers query node."""
    if not isinstance(node, dict):
        raise MalformedRow(f"node is not an object: {str(node)[:60]!r}")
    legacy = node.get("legacyResourceId") or str(node.get("id", "")).rsplit("/", 1)[-1]
    shopify_id = _int(legacy, "legacyResourceId", required=True)
    phone = _text((node.get("defaultPhoneNumber") or {}).get("phoneNumber") or node.get("phone"), 64)
    address = node.get("defaultAddress") or {}
    address_phone = _text(address.get("phone"), 64)
    note = _text(node.get("note"), 5000)
    amount = (node.get("amountSpent") or {}).get("amount") or "0"
    try:
        amount_spent = Decimal(str(amount))
    except InvalidOperation:
        raise MalformedRow(f"amountSpent is not a number: {str(amount)[:40]!r}") from None
    tags = node.get("tags") or []
    if not isinstance(tags, list):
        raise MalformedRow("tags is not a list")
    fields = {
        "shopify_id": shopify_id,
        "first_name": _text(node.get("firstName"), 255),
        "last_name": _text(node.get("lastName"), 255),
        "email": _text((node.get("defaultEmailAddress") or {}).get("emailAddress") or node.get("email"), 254),
        "phone": phone,
        "address_phone": address_phone,
        "note": note,
        "state": _text(node.get("state"), 20),
        "tags": tags,
        "orders_count": _int(node.get("numberOfOrders"), "numberOfOrders") or 0,
        "amount_spent": amount_spent,
        "upstream_created_at": _iso(node.get("createdAt"), "createdAt"),
        "upstream_updated_at": _iso(node.get("updatedAt"), "updatedAt"),
    }
    phones: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(e164: str | None, source: str):
        if e164 and e164 not in seen:
            seen.add(e164)
            phones.append((e164, source))

    add(normalize_phone(phone), PhoneSource.SHOPIFY_PHONE)
    add(normalize_phone(address_phone), PhoneSource.SHOPIFY_ADDRESS)
    if address_phone and not normalize_phone(address_phone):
        for e164 in extract_phones(address_phone):
            add(e164, PhoneSource.SHOPIFY_ADDRESS)
    for e164 in extract_phones(note):
        add(e164, PhoneSource.SHOPIFY_NOTE)
    return fields, phones
