"""Shared by the benchmark commands: Django on PostgreSQL, a sandbox in its own process, a memory sampler."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/shopbridge_bench"


def setup_django(database_url: str | None = None) -> None:
    """Use PostgreSQL (DATABASE_URL, default a shopbridge_bench database), create it if needed, migrate."""
    url = database_url or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    if url.startswith("postgres"):
        import psycopg

        base, name = url.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def sandbox_process(*args: str):
    """``manage.py sandbox`` in its own process (its CPU and memory are not ours); yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "sandbox", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox did not start: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


class PeakMemory:
    """Samples this process's resident memory every 20 ms; ``peak_mb`` is the highest seen."""

    def __init__(self):
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def line(label: str, value: str) -> None:
    print(f"{label:48s} {value}")


# --- customers without HTTP (bench/automatch_customers, bench/sync_customers) ----------------------------
# A customer pull's node selection (integrations.shopify.client.customer_fields with the loyalty metafields),
# for shaping a sandbox store dict the way a pull receives it.
_SHOPIFY_NODE_KEYS = ("id", "legacyResourceId", "firstName", "lastName", "displayName", "note", "state", "tags",
                      "numberOfOrders", "amountSpent", "createdAt", "updatedAt", "defaultPhoneNumber")
_SHOPIFY_ADDRESS_KEYS = ("address1", "address2", "city", "province", "provinceCode", "countryCodeV2", "zip",
                         "phone")


def shopify_node(customer: dict) -> dict:
    """A Shopify sandbox store customer (``CustomerStore.customer(legacy_id)``) as a customer pull's ``customers``
    query node (base fields and the loyalty metafields), without running GraphQL (that costs ~0.15 ms a row)."""
    node = {k: customer[k] for k in _SHOPIFY_NODE_KEYS}
    email = customer["defaultEmailAddress"]
    node["defaultEmailAddress"] = {"emailAddress": email["emailAddress"]} if email else None
    address = customer["defaultAddress"]
    node["defaultAddress"] = {k: address[k] for k in _SHOPIFY_ADDRESS_KEYS} if address else None
    node["totalSpent"] = node["loyalty"] = None  # no metafields on generated customers
    return node


def build_sandbox_apps(customers: int, seed: int = 1) -> dict:
    """The Nhanh and Shopify sandbox apps in this process (the same people as ``manage.py sandbox
    --customers N --seed S``), for their row builders only."""
    from integrations.sandbox.base import SandboxOptions
    from integrations.sandbox.server import build_apps

    return build_apps(SandboxOptions(customers=customers, seed=seed, rate_limit=False), only=["nhanh", "shopify"])


def check_shopify_node_shape(apps: dict, count: int = 50) -> None:
    """Fail loudly if ``shopify_node`` no longer gives what the sandbox's GraphQL serves to the client."""
    from customers.services.sync import Loyalty
    from integrations.shopify.client import CUSTOMERS_QUERY, customer_fields

    sandbox = apps["shopify"]
    # What a customer pull selects: the base fields plus the loyalty metafields it reads back.
    fields = customer_fields(Loyalty.metafields_read())
    _status, payload = sandbox.execute(CUSTOMERS_QUERY % fields,
                                       {"first": count, "after": None, "query": None, "sortKey": "ID"}, None)
    served = payload["data"]["customers"]["nodes"]
    built = [shopify_node(sandbox.store.customer(int(n["legacyResourceId"]))) for n in served]
    if built != served:
        raise AssertionError("bench shopify_node() differs from the sandbox's GraphQL customers nodes")


def truncate(*models) -> None:
    """TRUNCATE … CASCADE (never ORM .delete() on big tables: it loads the rows to cascade them)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(m._meta.db_table for m in models)} CASCADE")


def load_customers(apps: dict, batch: int = 5000) -> dict[str, float]:
    """Empty the customer tables and load every Nhanh and Shopify sandbox customer through the real set-based
    upserts (``upsert_nhanh_customers`` / ``upsert_shopify_customers``: phones normalized into the phone
    tables), ``batch`` rows a transaction. Returns seconds per system."""
    from django.db import transaction

    from customers.models import NhanhCustomer, ShopifyCustomer
    from customers.services.pulls import upsert_nhanh_customers, upsert_shopify_customers
    from integrations.shopify.sandbox_store import BASE_ID, ID_STEP

    nhanh, shopify = apps["nhanh"], apps["shopify"]
    truncate(NhanhCustomer, ShopifyCustomer)
    builders = {
        "nhanh": (nhanh.population.n_nhanh, nhanh.customer, upsert_nhanh_customers),
        "shopify": (shopify.store.generated_count,
                    lambda j: shopify_node(shopify.store.customer(BASE_ID + ID_STEP * j)), upsert_shopify_customers),
    }
    seconds = {}
    for name, (count, build, upsert) in builders.items():
        t = time.perf_counter()
        for start in range(0, count, batch):
            rows = [build(i) for i in range(start, min(start + batch, count))]
            with transaction.atomic():
                result = upsert(rows)
            if result.failed:
                raise RuntimeError(f"{name}: {result.failed} rows failed: {result.errors[:3]}")
        seconds[name] = time.perf_counter() - t
    return seconds


def vacuum_analyze(*models) -> None:
    """VACUUM ANALYZE (outside a transaction: Django's connection is in autocommit here)."""
    from django.db import connection

    with connection.cursor() as cur:
        for model in models:
            cur.execute(f"VACUUM ANALYZE {model._meta.db_table}")
