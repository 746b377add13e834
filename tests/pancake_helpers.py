"""Shared by the Pancake tests: connect the hub to a Pancake sandbox, run pulls, compare with the sandbox's truth."""

from __future__ import annotations

import requests

from integrations.models import Connection
from integrations.pancake import sandbox as pancake_sandbox
from jobs.models import BackgroundJob
from jobs.pull_specs import start_pull
from pancake.models import PancakeCustomer, PancakePage


def connect(server, *, rate: float = 1000, pages: list[str] | None = None) -> list[str]:
    """Point the Pancake connection at ``server`` and add its pages (with the sandbox's first tokens)."""
    Connection.objects.update_or_create(system="pancake", defaults={
        "base_url": server.url_for("pancake"), "requests_per_window": int(rate), "window_seconds": 1,
        "is_sandbox": True})
    ids = pages or list(server.apps["pancake"].pages)
    for page_id in ids:
        PancakePage.objects.update_or_create(page_id=page_id, defaults={
            "name": f"Page {page_id}", "page_access_token": pancake_sandbox.initial_page_token(page_id),
            "user_access_token": pancake_sandbox.SANDBOX_USER_TOKEN, "enabled": True})
    return ids


def pull(mode: str, page_id: str | None = None) -> BackgroundJob:
    started = start_pull("pancake", "customers", mode, filters={"page_id": page_id} if page_id else {})
    job = BackgroundJob.objects.get(pk=started.job.pk)
    return job


def truth(server, page_id: str) -> dict[str, str]:
    """psid → updated_at (UTC ISO, µs) from the sandbox's GET contract."""
    response = requests.get(f"{server.base_url}/_sandbox/pancake/customers", params={"page_id": page_id}, timeout=10)
    response.raise_for_status()
    return {row["psid"]: row["updated_at"] for row in response.json()["result"]}


def stored(page_id: str) -> dict[str, str]:
    rows = PancakeCustomer.objects.filter(page_id=page_id).values_list("psid", "upstream_updated_at")
    return {psid: t.isoformat(timespec="microseconds").replace("+00:00", "Z") for psid, t in rows}


def page_report(job: BackgroundJob, page_id: str) -> dict:
    return job.metadata["pancake_pages"][page_id]
