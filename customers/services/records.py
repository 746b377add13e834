"""Nhanh and Shopify customer rows → model fields and phone rows. A row that cannot be read raises MalformedRow
(jobs.ingest) with the reason staff see."""

from __future__ import annotations

from customers.models import PhoneSource
from customers.phones import extract_phones, normalize_phone
from jobs.ingest import MalformedRow, decimal, int_key, integer, iso_time, text, unix_time


def nhanh_key(raw) -> int | None:
    return int_key(raw.get("id")) if isinstance(raw, dict) else None


def shopify_key(node) -> int | None:
    if not isinstance(node, dict):
        return None
    return int_key(node.get("legacyResourceId") or str(node.get("id", "")).rsplit("/", 1)[-1])


def nhanh_customer(raw: dict) -> tuple[dict, list[dict]]:
    """(fields for NhanhCustomer, [{"e164", "source"}]) from a v3 customer/list row."""
    if not isinstance(raw, dict):
        raise MalformedRow(f"row is not an object: {str(raw)[:60]!r}")
    nhanh_id = integer(raw.get("id"), "id", required=True)
    customer_type = integer(raw.get("type"), "type")
    if customer_type not in (None, 1, 2, 3):
        raise MalformedRow(f"type {customer_type} is not 1, 2 or 3")
    mobile = text(raw.get("mobile"), 64)
    fields = {
        "nhanh_id": nhanh_id,
        "name": text(raw.get("name"), 255),
        "mobile": mobile,
        "email": text(raw.get("email"), 254),
        "customer_type": customer_type,
        "address": text(raw.get("address"), 2000),
        "total_spent": integer(raw.get("totalAmount"), "totalAmount") or 0,
        "points": integer(raw.get("points"), "points"),
        "upstream_updated_at": unix_time(raw.get("updatedAt"), "updatedAt"),
    }
    phones = []
    if e164 := normalize_phone(mobile):
        phones.append({"e164": e164, "source": PhoneSource.NHANH_MOBILE})
    return fields, phones


def shopify_customer(node: dict) -> tuple[dict, list[dict]]:
    """(fields for ShopifyCustomer, [{"e164", "source"}]) from a customers query node."""
    if not isinstance(node, dict):
        raise MalformedRow(f"node is not an object: {str(node)[:60]!r}")
    legacy = node.get("legacyResourceId") or str(node.get("id", "")).rsplit("/", 1)[-1]
    shopify_id = integer(legacy, "legacyResourceId", required=True)
    phone = text((node.get("defaultPhoneNumber") or {}).get("phoneNumber") or node.get("phone"), 64)
    address = node.get("defaultAddress") or {}
    address_phone = text(address.get("phone"), 64)
    note = text(node.get("note"), 5000)
    amount_spent = decimal((node.get("amountSpent") or {}).get("amount"), "amountSpent")
    tags = node.get("tags") or []
    if not isinstance(tags, list):
        raise MalformedRow("tags is not a list")
    fields = {
        "shopify_id": shopify_id,
        "first_name": text(node.get("firstName"), 255),
        "last_name": text(node.get("lastName"), 255),
        "email": text((node.get("defaultEmailAddress") or {}).get("emailAddress") or node.get("email"), 254),
        "phone": phone,
        "address_phone": address_phone,
        "note": note,
        "state": text(node.get("state"), 20),
        "tags": tags,
        "orders_count": integer(node.get("numberOfOrders"), "numberOfOrders") or 0,
        "amount_spent": amount_spent,
        "upstream_created_at": iso_time(node.get("createdAt"), "createdAt"),
        "upstream_updated_at": iso_time(node.get("updatedAt"), "updatedAt"),
    }
    phones: list[dict] = []
    seen: set[str] = set()

    def add(e164: str | None, source: str):
        if e164 and e164 not in seen:
            seen.add(e164)
            phones.append({"e164": e164, "source": source})

    add(normalize_phone(phone), PhoneSource.SHOPIFY_PHONE)
    add(normalize_phone(address_phone), PhoneSource.SHOPIFY_ADDRESS)
    if address_phone and not normalize_phone(address_phone):
        for e164 in extract_phones(address_phone):
            add(e164, PhoneSource.SHOPIFY_ADDRESS)
    for e164 in extract_phones(note):
        add(e164, PhoneSource.SHOPIFY_NOTE)
    return fields, phones
