"""The products admin: no query per row on any list, SKU search that ignores case and stray spaces, manual match,
unmatch and auto-match through the admin, the depot → location map."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.models import BackgroundJob
from products.models import AmbiguousSku, NhanhDepot, ProductMapping, ShopifyLocation
from products.services.automatch import AUTO_MATCH_PRODUCTS, auto_match_products
from products.services.pulls import upsert_nhanh_products, upsert_shopify_catalog

pytestmark = pytest.mark.django_db

LOCATIONS = [{"id": f"gid://shopify/Location/{n}", "name": f"Store {n}", "isActive": True} for n in (701, 702)]


def nhanh_row(i: int, code: str) -> dict:
    return {"id": 1000 + i, "code": code, "name": f"Áo {i}", "status": 2, "prices": {"retail": 100000.0},
            "updatedAt": 1_760_000_000 + i,
            "inventory": {"depots": [{"id": 31010, "available": 5.0 + i, "remain": 6.0 + i},
                                     {"id": 31011, "available": -1.0, "remain": 0.0, "holding": 1.0}]}}


def shopify_row(i: int, sku: str) -> dict:
    return {"id": f"gid://shopify/Product/{500 + i}", "title": f"Shirt {i}", "status": "ACTIVE",
            CHILDREN: [{"id": f"gid://shopify/ProductVariant/{900 + i}", "sku": sku, "title": "M", "price": "100000.00",
                        "inventoryItem": {"id": f"gid://shopify/InventoryItem/{800 + i}"},
                        CHILDREN: [{"location": {"id": loc["id"]},
                                    "quantities": [{"name": "available", "quantity": i}]} for loc in LOCATIONS]}]}


CHILDREN = "__children"


def add(n: int, start: int = 0):
    upsert_nhanh_products([nhanh_row(i, f" SKU-{i:03d} ") for i in range(start, start + n)])
    upsert_shopify_catalog(LOCATIONS + [shopify_row(i, f"sku-{i:03d}") for i in range(start, start + n)]
                           + [shopify_row(100 + i, f"SKU-{i:03d}") for i in range(start, start + n) if i % 2])


CHANGELISTS = ["nhanhproduct", "shopifyproduct", "shopifyvariant", "shopifylocation", "nhanhdepot",
               "productmapping", "ambiguoussku"]


def _count(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(url, params or {})
    assert page.status_code == 200, page.content[:300]
    return len(ctx.captured_queries)


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelist_queries_do_not_grow_with_rows(staff_client, name):
    url = reverse(f"admin:products_{name}_changelist")
    add(2)
    auto_match_products()
    _count(staff_client, url)
    two = _count(staff_client, url)
    add(6, start=2)
    auto_match_products()
    assert _count(staff_client, url) == two, name


def test_sku_search_ignores_case_and_spaces(staff_client):
    add(4)
    auto_match_products()
    for name in ("nhanhproduct", "shopifyvariant", "productmapping"):
        html = staff_client.get(reverse(f"admin:products_{name}_changelist"), {"q": "  sku-002 "}).content.decode()
        assert "SKU-002" in html or "sku-002" in html, name
        assert "SKU-003" not in html and "sku-003" not in html, name


def test_lists_show_stock_per_depot_and_per_location(staff_client):
    add(3)
    html = staff_client.get(reverse("admin:products_nhanhproduct_changelist")).content.decode()
    assert "31010: 7" in html and "31011: -1" in html
    html = staff_client.get(reverse("admin:products_shopifyvariant_changelist")).content.decode()
    assert "701: 2" in html and "702: 2" in html


def test_match_unmatch_and_automatch_through_the_admin(staff_client):
    add(4)
    # SKU-001 and SKU-003 exist twice on Shopify: ambiguous; 000 and 002 match.
    response = staff_client.post(reverse("admin:products_productmapping_automatch"))
    assert response.status_code == 302
    assert BackgroundJob.objects.filter(type=AUTO_MATCH_PRODUCTS).exists()
    auto_match_products()
    assert ProductMapping.objects.filter(is_active=True).count() == 2
    assert set(AmbiguousSku.objects.values_list("sku_key", flat=True)) == {"sku-001", "sku-003"}
    html = staff_client.get(reverse("admin:products_ambiguoussku_changelist")).content.decode()
    assert "Shirt 101" in html or "SKU-001" in html
    # Staff decide an ambiguous one by hand.
    response = staff_client.post(reverse("admin:products_productmapping_match"),
                                 {"nhanh_id": 1001, "shopify_id": 901}, follow=True)
    assert response.status_code == 200
    assert ProductMapping.objects.get(nhanh_product__nhanh_id=1001).shopify_variant.shopify_id == 901
    mapping = ProductMapping.objects.get(nhanh_product__nhanh_id=1000)
    staff_client.post(reverse("admin:products_productmapping_changelist"),
                      {"action": "unmatch_selected", "_selected_action": [mapping.pk]})
    mapping.refresh_from_db()
    assert not mapping.is_active
    # Dry run writes nothing.
    before = ProductMapping.objects.count()
    response = staff_client.post(reverse("admin:products_productmapping_dry_run"), follow=True)
    assert "Nothing was written" in response.content.decode() and ProductMapping.objects.count() == before


def test_depots_map_to_pulled_locations(staff_client):
    add(1)
    depot = NhanhDepot.objects.get(depot_id=31010)
    location = ShopifyLocation.objects.get(shopify_id=701)
    url = reverse("admin:products_nhanhdepot_changelist")
    depots = list(NhanhDepot.objects.order_by("depot_id"))
    data = {"form-TOTAL_FORMS": len(depots), "form-INITIAL_FORMS": len(depots), "_save": "Save"}
    for i, d in enumerate(depots):
        data.update({f"form-{i}-id": d.pk, f"form-{i}-name": f"Kho {d.depot_id}",
                     f"form-{i}-location": location.pk if d == depot else ""})
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.content[:500]
    depot.refresh_from_db()
    assert depot.location == location and depot.name == "Kho 31010"


def test_change_pages_render(staff_client):
    from products.models import NhanhProduct, ShopifyProduct, ShopifyVariant

    add(4)
    auto_match_products()
    objects = [NhanhProduct.objects.first(), ShopifyProduct.objects.first(), ShopifyVariant.objects.first(),
               ShopifyLocation.objects.first(), NhanhDepot.objects.first(), ProductMapping.objects.first(),
               AmbiguousSku.objects.first()]
    for obj in objects:
        url = reverse(f"admin:products_{obj._meta.model_name}_change", args=[obj.pk])
        response = staff_client.get(url)
        assert response.status_code == 200, (url, response.content[:300])
    html = staff_client.get(reverse("admin:products_ambiguoussku_change", args=[objects[-1].pk])).content.decode()
    assert "/admin/products/shopifyvariant/" in html and "/admin/products/nhanhproduct/" in html


def test_roles_pick_up_the_product_permissions():
    from django.contrib.auth.models import Group

    def perms(name):
        return {f"{p.content_type.app_label}.{p.codename}"
                for p in Group.objects.get(name=name).permissions.select_related("content_type")}

    viewer, operator, manager = perms("viewer"), perms("operator"), perms("manager")
    assert {"products.view_nhanhproduct", "products.view_productmapping", "products.view_ambiguoussku"} <= viewer
    assert {"products.run_product_automatch", "products.sync_products"} <= operator - viewer
    assert {"products.add_productmapping", "products.change_productmapping", "products.change_nhanhdepot"} <= \
        manager - operator
