"""Shopify bulk query operations over real HTTP: the sandbox runs them for real, the client and
ShopifyBulkSource follow, download, ingest and resume them."""

from __future__ import annotations

import json
import threading
import time

import pytest

from integrations.errors import RequestRejected
from integrations.sandbox.server import control
from integrations.shopify.bulk import CHILDREN, JsonlResult, ShopifyBulkSource
from integrations.shopify.client import (
    BulkOperationFailed,
    BulkOperationInProgress,
    ShopifyClient,
    customers_bulk_query,
)
from integrations.shopify.sandbox import SANDBOX_ACCESS_TOKEN

FAST = {"backoff_base": 0.01, "backoff_max": 0.1}
LIGHT_BULK = "{ customers { edges { node { id legacyResourceId updatedAt } } } }"


def start(sandbox_factory, customers=600, rows_per_second=0.0, seed=5):
    return sandbox_factory(customers=customers, seed=seed, rate_limit=False, only=["shopify"],
                           shopify_bulk_rows_per_second=rows_per_second)


def make_client(server, **kw) -> ShopifyClient:
    return ShopifyClient(server.url_for("shopify"), access_token=SANDBOX_ACCESS_TOKEN, **{**FAST, **kw})


def hook(server, action, payload=None):
    return control(server.base_url, "shopify", action, payload)["result"]


def source(client, query=None, **kw) -> ShopifyBulkSource:
    return ShopifyBulkSource.customers(client, query, **{"page_size": 100, "poll_seconds": 0.05,
                                                         "in_progress_wait": 0.1, **kw})


def ids_of(rows) -> list[int]:
    return [int(row["legacyResourceId"]) for row in rows]


def wait_for_status(client, gid, statuses, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation = client.bulk_operation(gid)
        if operation["status"] in statuses:
            return operation
        time.sleep(0.02)
    raise AssertionError(f"{gid} never reached {statuses}")


# --- the sandbox's operations, through the client -----------------------------------------------------
def test_an_operation_runs_created_running_completed_with_a_growing_object_count(sandbox_factory):
    server = start(sandbox_factory, customers=400, rows_per_second=200)  # 2 s: several polls even under load
    client = make_client(server)
    started = client.bulk_run_query(LIGHT_BULK)
    assert started["status"] == "CREATED" and started["id"].startswith("gid://shopify/BulkOperation/")
    seen, counts = set(), []
    while True:
        operation = client.bulk_operation(started["id"])
        seen.add(operation["status"])
        counts.append(int(operation["objectCount"]))
        if operation["status"] == "COMPLETED":
            break
        time.sleep(0.05)
    assert {"RUNNING", "COMPLETED"} <= seen  # (CREATED lasts 0.1 s: the mutation's answer showed it)
    assert counts == sorted(counts) and len(set(counts)) > 2  # it grew while Shopify worked
    assert operation["objectCount"] == operation["rootObjectCount"] == "400"
    assert int(operation["fileSize"]) > 0 and operation["url"] and operation["partialDataUrl"] is None
    assert client.current_bulk_operation()["id"] == started["id"]
    # bulkOperation(id:) (2026-01+) answers like node(id:)
    same = client.graphql("query($id: ID!) { bulkOperation(id: $id) { id status } }", {"id": started["id"]})
    assert same["bulkOperation"] == {"id": started["id"], "status": "COMPLETED"}


def test_customers_count_follows_the_search(sandbox_factory):
    server = start(sandbox_factory, customers=500)
    client = make_client(server)
    assert client.customers_count() == (500, "EXACT")
    for query in ("state:ENABLED", "tag:vip OR tag:zalo", f"email:{_an_email(client)}"):
        assert client.customers_count(query) == (len(hook(server, "expected", {"query": query})), "EXACT")


def _an_email(client) -> str:
    return client.graphql('{ customers(first: 1, query: "email:*") { nodes { email } } }')["customers"][
        "nodes"][0]["email"]


def test_invalid_bulk_queries_are_refused_with_user_errors(sandbox_factory):
    server = start(sandbox_factory, customers=50)
    client = make_client(server)
    with pytest.raises(RequestRejected, match="at least one connection"):
        client.bulk_run_query('{ customer(id: "gid://shopify/Customer/7000000000") { id firstName } }')
    with pytest.raises(RequestRejected, match="Cannot query field"):
        client.bulk_run_query("{ customers { edges { node { shoeSize } } } }")
    with pytest.raises(RequestRejected, match="must select the 'id' field"):
        client.bulk_run_query("{ customers { edges { node { firstName metafields { edges { node { key } } } } } } }")
    assert hook(server, "stats")["bulk_operations_started"] == 0


def test_the_concurrency_limit_of_the_version_is_enforced_and_waited_out(sandbox_factory):
    server = start(sandbox_factory, customers=300, rows_per_second=600)  # each operation takes ~0.5 s
    client = make_client(server)
    running = [client.bulk_run_query(LIGHT_BULK)["id"] for _ in range(5)]  # 2026-10: five at once
    with pytest.raises(BulkOperationInProgress, match="already in progress"):
        client.bulk_run_query(LIGHT_BULK)
    sixth = client.start_bulk_query(LIGHT_BULK, wait_seconds=0.1)  # waits until one has finished
    assert sixth["id"] not in running
    done = [wait_for_status(client, gid, {"COMPLETED"}) for gid in [*running, sixth["id"]]]
    assert all(op["objectCount"] == "300" for op in done)


def test_cancel_stops_an_operation(sandbox_factory):
    server = start(sandbox_factory, customers=2000, rows_per_second=500)
    client = make_client(server)
    gid = client.bulk_run_query(LIGHT_BULK)["id"]
    wait_for_status(client, gid, {"RUNNING"})
    operation, errors = client.bulk_cancel(gid)
    assert errors == [] and operation["status"] in ("CANCELING", "CANCELED")
    final = wait_for_status(client, gid, {"CANCELED"})
    assert int(final["objectCount"]) < 2000 and final["url"] is None
    _, errors = client.bulk_cancel(gid)
    assert errors and "canceled" in errors[0]["message"]


# --- ShopifyBulkSource ------------------------------------------------------------------------------
def test_a_bulk_pull_yields_progress_then_every_customer_once(sandbox_factory):
    server = start(sandbox_factory, customers=700, rows_per_second=1400)
    client = make_client(server)
    query = "state:ENABLED OR tag:vip"
    expected = hook(server, "expected", {"query": query})
    pages = list(source(client, query, metafields=[("tier", "custom", "loyalty_tier")]).pages(None))
    waiting = [p for p in pages if not p.rows]
    rows = [row for p in pages for row in p.rows]
    assert sorted(ids_of(rows)) == expected and len(rows) == len(set(ids_of(rows)))
    assert {p.progress["stage"] for p in waiting} >= {"RUNNING"}
    counts = [p.progress["object_count"] for p in waiting]
    assert counts == sorted(counts) and all(p.progress["path"] == "bulk" for p in pages)
    assert all(p.total == len(expected) for p in pages)
    bulk_id = waiting[0].cursor_after["bulk_id"]
    assert all(p.cursor_after == {"bulk_id": bulk_id, "line": 0} for p in waiting)
    data = [p for p in pages if p.rows]
    assert [p.cursor_after for p in data[:-1]] == [{"bulk_id": bulk_id, "line": 100 * (n + 1)}
                                                   for n in range(len(data) - 1)]
    assert data[-1].cursor_after is None and pages[-1] is data[-1]
    # the caller's metafields are read under the caller's alias; the rows look like paged nodes
    assert "tier" in rows[0] and "totalSpent" not in rows[0]
    assert rows[0]["id"] == f"gid://shopify/Customer/{rows[0]['legacyResourceId']}"
    assert hook(server, "stats")["bulk_operations_started"] == 1


def test_resume_mid_ingest_continues_at_the_line_after_the_last_page(sandbox_factory):
    server = start(sandbox_factory, customers=650)
    client = make_client(server)
    first_run = source(client).pages(None)
    done, cursor = [], None
    for page in first_run:
        done += ids_of(page.rows)
        cursor = page.cursor_after
        if len(done) >= 300:
            break
    first_run.close()  # the worker is killed here
    assert cursor["line"] == 300
    rest = [row for page in source(make_client(server)).pages(cursor) for row in page.rows]
    assert not set(ids_of(rest)) & set(done)
    assert sorted(done + ids_of(rest)) == hook(server, "expected", {"query": None})
    assert hook(server, "stats")["bulk_operations_started"] == 1  # the same operation's file


def test_a_pull_killed_while_shopify_works_re_attaches_to_its_operation(sandbox_factory):
    server = start(sandbox_factory, customers=800, rows_per_second=800)
    client = make_client(server)
    first_run = source(client).pages(None)
    page = next(page for page in first_run if page.progress["stage"] == "RUNNING")
    first_run.close()
    cursor = page.cursor_after
    assert cursor["line"] == 0 and cursor["bulk_id"]
    pages = list(source(make_client(server)).pages(cursor))
    rows = [row for p in pages for row in p.rows]
    assert sorted(ids_of(rows)) == hook(server, "expected", {"query": None}) and len(rows) == 800
    assert hook(server, "stats")["bulk_operations_started"] == 1
    assert {p.cursor_after["bulk_id"] for p in pages if p.cursor_after} == {cursor["bulk_id"]}


def test_another_bulk_query_in_progress_is_waited_out(sandbox_factory):
    server = start(sandbox_factory, customers=300, rows_per_second=1000)
    client = make_client(server)
    others = [client.bulk_run_query(LIGHT_BULK)["id"] for _ in range(5)]
    rows = [row for page in source(client).pages(None) for row in page.rows]
    assert sorted(ids_of(rows)) == hook(server, "expected", {"query": None})
    assert all(client.bulk_operation(gid)["status"] == "COMPLETED" for gid in others)


def test_failed_with_partial_data_ingests_what_exists_and_says_so(sandbox_factory):
    server = start(sandbox_factory, customers=900, rows_per_second=3000)
    hook(server, "bulk", {"fail": {"error_code": "TIMEOUT", "after_objects": 400, "partial": True}})
    pages = list(source(make_client(server)).pages(None))
    rows = [row for p in pages for row in p.rows]
    every = hook(server, "expected", {"query": None})
    assert 400 <= len(rows) < 900 and set(ids_of(rows)) <= set(every) and len(set(ids_of(rows))) == len(rows)
    last = pages[-1]
    assert last.cursor_after is None
    assert last.progress["partial"] is True and last.progress["stage"] == "FAILED"
    assert last.progress["error_code"] == "TIMEOUT"


def test_failed_without_data_fails_the_pull_and_a_resume_runs_it_again(sandbox_factory):
    server = start(sandbox_factory, customers=300)
    hook(server, "bulk", {"fail": {"error_code": "INTERNAL_SERVER_ERROR", "after_objects": 100}})
    cursor = None
    with pytest.raises(BulkOperationFailed, match="INTERNAL_SERVER_ERROR"):
        for page in source(make_client(server)).pages(None):
            cursor = page.cursor_after or cursor
    assert cursor and cursor["line"] == 0
    # The retry resumes from the checkpoint: that operation has nothing to read, so it runs again.
    rows = [row for page in source(make_client(server)).pages(cursor) for row in page.rows]
    assert sorted(ids_of(rows)) == hook(server, "expected", {"query": None})
    assert hook(server, "stats")["bulk_operations_started"] == 2


def test_an_expired_result_url_re_runs_the_operation(sandbox_factory):
    server = start(sandbox_factory, customers=500)
    client = make_client(server)
    first_run = source(client).pages(None)
    done, cursor = [], None
    for page in first_run:
        done += ids_of(page.rows)
        cursor = page.cursor_after
        if len(done) >= 200:
            break
    first_run.close()
    hook(server, "bulk_expire_results")  # a week later…
    again = source(make_client(server))
    pages = list(again.pages(cursor))
    rows = [row for p in pages for row in p.rows]
    assert len(again.started) == 1 and again.started[0] != cursor["bulk_id"]
    assert sorted(set(done) | set(ids_of(rows))) == hook(server, "expected", {"query": None})
    assert len(rows) == 500  # the new file is read from its first line: re-reads are upserts, no gap


def test_an_url_that_expires_before_the_download_re_runs_the_operation(sandbox_factory):
    server = start(sandbox_factory, customers=200)
    hook(server, "bulk", {"url_ttl_seconds": 0})  # every result URL is already expired when offered
    with pytest.raises(BulkOperationFailed, match="gave up"):
        list(source(make_client(server)).pages(None))
    assert hook(server, "stats")["bulk_operations_started"] == 4  # the first run and three re-runs
    hook(server, "bulk", {"url_ttl_seconds": 3600})
    rows = [row for page in source(make_client(server)).pages(None) for row in page.rows]
    assert len(rows) == 200


def test_nested_connection_lines_are_attached_to_their_parent(sandbox_factory):
    server = start(sandbox_factory, customers=300, rows_per_second=250)  # written 50 parents at a time
    client = make_client(server)
    owners = [n["id"] for n in client.graphql("{ customers(first: 250) { nodes { id } } }")["customers"]["nodes"]]
    owners = owners[::25]  # ten customers with two metafields each
    for gid in owners:
        client.metafields_set([
            {"ownerId": gid, "namespace": "custom", "key": "total_spent", "type": "number_integer", "value": "7"},
            {"ownerId": gid, "namespace": "custom", "key": "loyalty_tier", "type": "single_line_text_field",
             "value": "gold"}])
    bulk = "{ customers { edges { node { id legacyResourceId metafields { edges { node { id key value } } } } } } }"
    every = hook(server, "expected", {"query": None})

    def read(cursor=None, stop_after=None):
        rows, last_cursor = [], cursor
        pages = ShopifyBulkSource(client, bulk, page_size=40, poll_seconds=0.05).pages(cursor)
        for page in pages:
            rows += page.rows
            last_cursor = page.cursor_after
            if stop_after and len(rows) >= stop_after:
                pages.close()
                break
        return rows, last_cursor

    head, cursor = read(stop_after=120)
    tail, _ = read(cursor)
    rows = head + tail
    assert sorted(ids_of(rows)) == every and all("__parentId" not in row for row in rows)
    with_children = {row["id"]: row[CHILDREN] for row in rows if CHILDREN in row}
    assert sorted(with_children) == sorted(owners)
    for children in with_children.values():
        assert sorted(c["key"] for c in children) == ["loyalty_tier", "total_spent"]
        assert all(c["__parentId"] in owners for c in children)
    # The sandbox writes a page's children after the page's parents, so they were not all adjacent: the
    # resume at line 120 (past some children of earlier parents) still attached the right ones.
    assert cursor["line"] > 120


def test_products_and_variants_lines_in_any_order_from_any_line(tmp_path):
    """The JSONL reader on a products × variants file: children after their parent but not adjacent,
    a grandchild, and a cut last line (partial data)."""
    lines = [
        {"id": "gid://shopify/Product/1", "title": "Áo"},
        {"id": "gid://shopify/Product/2", "title": "Quần"},
        {"id": "gid://shopify/ProductVariant/11", "sku": "AO-S", "__parentId": "gid://shopify/Product/1"},
        {"id": "gid://shopify/Product/3", "title": "Mũ"},
        {"id": "gid://shopify/ProductVariant/21", "sku": "QU-M", "__parentId": "gid://shopify/Product/2"},
        {"id": "gid://shopify/ProductVariant/12", "sku": "AO-M", "__parentId": "gid://shopify/Product/1"},
        {"id": "gid://shopify/InventoryLevel/9", "available": 3, "__parentId": "gid://shopify/ProductVariant/12"},
    ]
    path = tmp_path / "result.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
                    + '{"id": "gid://shopify/Product/4", "tit')
    result = JsonlResult(path)
    objects = list(result.objects())
    assert [(after, obj["id"]) for after, obj in objects] == [
        (1, "gid://shopify/Product/1"), (2, "gid://shopify/Product/2"), (4, "gid://shopify/Product/3")]
    product_1 = objects[0][1]
    assert [v["sku"] for v in product_1[CHILDREN]] == ["AO-S", "AO-M"]
    assert product_1[CHILDREN][1][CHILDREN][0]["available"] == 3
    assert CHILDREN not in objects[2][1]
    assert result.truncated_last_line
    resumed = list(result.objects(start_line=2))  # from the line after product 2
    assert [obj["id"] for _, obj in resumed] == ["gid://shopify/Product/3"]
    after, product_2 = next(result.objects(start_line=1))
    assert (after, [v["sku"] for v in product_2[CHILDREN]]) == (2, ["QU-M"])
    result.close()


def test_bulk_query_documents_inline_the_search_and_metafields():
    text = customers_bulk_query('tag:"khách quen" AND updated_at:>=\'2026-11-01\'',
                                metafields=[("points", "loyalty", "points")])
    assert 'query: "tag:\\"kh\\u00e1ch quen\\" AND updated_at:>=\'2026-11-01\'"' in text
    assert 'points: metafield(namespace: "loyalty", key: "points") { value }' in text
    assert "sortKey: ID" in text


def test_progress_while_a_slow_operation_runs_in_a_thread(sandbox_factory):
    """The source is read from another thread in the pull engine (the prefetcher): nothing in it is tied to
    the thread that made it."""
    server = start(sandbox_factory, customers=300, rows_per_second=1500)
    got: list = []
    worker = threading.Thread(target=lambda: got.extend(source(make_client(server)).pages(None)))
    worker.start()
    worker.join(30)
    assert sum(len(p.rows) for p in got) == 300


def test_result_urls_are_signed_and_expire_like_cloud_storage_urls(sandbox_factory, tmp_path):
    from integrations.shopify.bulk import BulkResultExpired, download_jsonl

    server = start(sandbox_factory, customers=120)
    client = make_client(server)
    done = wait_for_status(client, client.bulk_run_query(LIGHT_BULK)["id"], {"COMPLETED"})
    path = download_jsonl(done["url"], tmp_path)
    assert path.stat().st_size == int(done["fileSize"]) and len(path.read_text().splitlines()) == 120
    with pytest.raises(BulkResultExpired, match="403"):
        download_jsonl(done["url"].replace("Signature=", "Signature=0"), tmp_path)
    hook(server, "bulk_expire_results")
    with pytest.raises(BulkResultExpired, match="ExpiredToken"):
        download_jsonl(done["url"], tmp_path)
    assert client.bulk_operation(done["id"])["status"] == "EXPIRED"


def test_an_operation_started_before_any_checkpoint_is_found_again(sandbox_factory):
    """Killed between starting the operation and checkpointing its id: the next run finds the app's running
    operation of the same query instead of starting a second one."""
    server = start(sandbox_factory, customers=500, rows_per_second=1000)
    client = make_client(server)
    orphan = client.bulk_run_query(customers_bulk_query())["id"]
    pages = list(source(client).pages(None))
    assert {p.cursor_after["bulk_id"] for p in pages if p.cursor_after} == {orphan}
    assert len([row for p in pages for row in p.rows]) == 500
    assert hook(server, "stats")["bulk_operations_started"] == 1
