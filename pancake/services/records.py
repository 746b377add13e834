"""A Pancake page customer row → model fields and phone rows. A row that cannot be read raises MalformedRow."""

from __future__ import annotations

from customers.phones import extract_phones, normalize_phone
from integrations.pancake.client import parse_time
from jobs.ingest import MalformedRow, text, ymd_date

GENDERS = {"1": "male", "2": "female", "0": "unknown"}  # a number in one public type definition (unconfirmed)


def pancake_key(raw) -> str | None:
    if not isinstance(raw, dict):
        return None
    psid, page_id = raw.get("psid"), raw.get("page_id")
    if not isinstance(psid, (str, int)) or isinstance(psid, bool) or not str(psid).strip() or not page_id:
        return None
    return f"{page_id}:{str(psid).strip()}"


def _time(value, what: str, *, required: bool = False):
    if value in (None, "") and not required:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise MalformedRow(f"{what} is not a time Pancake sends: {str(value)[:40]!r}") from None


def phones_of(numbers) -> list[str]:
    """E.164 phones behind what was typed: each value as one number, else every number written in it."""
    found: list[str] = []
    for value in numbers if isinstance(numbers, list) else [numbers]:
        if not isinstance(value, str):
            continue
        one = normalize_phone(value)
        for e164 in [one] if one else extract_phones(value):
            if e164 not in found:
                found.append(e164)
    return found


def pancake_customer(raw: dict) -> tuple[dict, list[dict]]:
    if not isinstance(raw, dict):
        raise MalformedRow(f"row is not an object: {str(raw)[:60]!r}")
    key = pancake_key(raw)
    if key is None:
        raise MalformedRow("psid is missing")
    numbers = raw.get("phone_numbers") or []
    if not isinstance(numbers, list):
        numbers = [numbers]
    gender = raw.get("gender")
    gender = GENDERS.get(str(gender), str(gender)) if gender not in (None, "") else ""
    fields = {
        "key": key,
        "page_id": str(raw["page_id"]),
        "psid": str(raw["psid"]).strip(),
        "pancake_id": text(raw.get("id"), 64),
        "name": text(raw.get("name"), 255),
        "phone_numbers": [str(n)[:64] for n in numbers if n not in (None, "")],
        "gender": gender[:16],
        "birthday": ymd_date(raw.get("birthday"), "birthday"),
        "upstream_inserted_at": _time(raw.get("inserted_at"), "inserted_at"),
        "upstream_updated_at": _time(raw.get("updated_at"), "updated_at", required=True),
    }
    return fields, [{"e164": e164} for e164 in phones_of(numbers)]
