"""The Nhanh sandbox sends webhooks like Nhanh does (shared/upstreams/nhanh.md §8, v3): ``POST url`` with the JSON
envelope ``{"event", "businessId", "data"}`` and the app's verify token as the ``Authorization`` header.

``POST /_sandbox/nhanh/webhooks`` with ``{"url", "token" (default: the sandbox app's), "event": "inventoryChange"
(default) | "productAdd" |
"productUpdate" | "productDelete", "product_ids": [...], "changes": [{"product_id", "depot_id", "available"}],
"separate": false, "repeat": 1}`` first applies ``changes`` to the catalog (a sale or receipt in a depot), then
sends: one delivery carrying every product (inventoryChange batches them; ``separate``: one delivery each, as do
productAdd/productUpdate, whose ``data`` is one product), each sent ``repeat`` times (Nhanh's retries, or a replay).
Returns what the receiver answered to each.
"""

from __future__ import annotations

import json
import time

import requests

EVENTS = ("inventoryChange", "productAdd", "productUpdate", "productDelete")


def send(sandbox, payload: dict) -> list[dict]:
    from .sandbox import SANDBOX_WEBHOOK_VERIFY_TOKEN

    url = payload.get("url")
    token = payload.get("token", SANDBOX_WEBHOOK_VERIFY_TOKEN)
    event = payload.get("event") or "inventoryChange"
    if not url or event not in EVENTS:
        raise ValueError(f"webhooks needs a url and an event among {', '.join(EVENTS)}")
    catalog = sandbox.catalog
    touched = [int(i) for i in payload.get("product_ids") or ()]
    for change in payload.get("changes") or ():
        catalog.set_available(int(change["product_id"]), int(change["depot_id"]), change["available"])
        touched.append(int(change["product_id"]))
    ids = list(dict.fromkeys(touched))
    if event == "productDelete":
        bodies = [ids] if not payload.get("separate") else [[i] for i in ids]
    else:
        record = catalog.inventory_record if event == "inventoryChange" else catalog.product_record
        records = [r for r in (record(i) for i in ids) if r is not None]
        if event == "inventoryChange" and not payload.get("separate"):
            bodies = [records]
        else:
            bodies = records if event != "inventoryChange" else [[r] for r in records]
    answers = []
    with requests.Session() as session:
        for data in bodies:
            body = json.dumps({"event": event, "businessId": int(sandbox.business_id()), "data": data},
                              ensure_ascii=False).encode()
            for _ in range(max(int(payload.get("repeat") or 1), 1)):
                started = time.perf_counter()
                try:
                    response = session.post(url, data=body, timeout=float(payload.get("timeout") or 10),
                                            headers={"Authorization": token, "Content-Type": "application/json"})
                    answers.append({"status": response.status_code, "body": response.text[:500],
                                    "ms": round((time.perf_counter() - started) * 1000, 1)})
                except requests.RequestException as exc:
                    answers.append({"status": None, "error": str(exc)[:300]})
    return answers
