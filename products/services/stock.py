"""What Shopify's stock should be: per active product mapping and per Shopify location fed by at least one
mapped Nhanh depot, the sum of Nhanh's ``available`` over the depots feeding that location, next to the level last
read from (or set in) Shopify.

The sum is taken first, then floored to an integer and a negative sum (oversold) sent as 0: Shopify's
``available`` is an integer and a shop does not sell below zero online. A depot with no stock row for the product
counts 0. One set-based query; ``desired_levels_sql`` gives it to callers that want to filter or join further
(e.g. only the levels that differ)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from ..models import NhanhDepot, NhanhStock, ProductMapping, ShopifyInventoryLevel, ShopifyLocation, ShopifyVariant


@dataclass(frozen=True)
class DesiredLevel:
    mapping_id: int
    nhanh_product_id: int  # our row id
    variant_id: int  # our row id
    variant_shopify_id: int
    inventory_item_id: int | None
    location_id: int  # Shopify location id
    available: int  # what Nhanh says this location should show
    shopify_available: int | None  # Shopify's level as last read or set (None: never read / not stocked there)

    @property
    def differs(self) -> bool:
        return self.available != self.shopify_available


def desired_levels_sql(where: str = "", params: list | None = None) -> tuple[str, list]:
    """The query behind ``desired_levels``; ``where`` adds conditions on ``m`` (the mapping), ``v`` (the variant)
    or ``loc`` (the location), e.g. ``"m.id IN (1, 2)"``. Columns in DesiredLevel's order."""
    floor = "FLOOR(SUM(COALESCE(st.available, 0)))" if connection.vendor == "postgresql" \
        else "SUM(COALESCE(st.available, 0))"
    extra = f" AND ({where})" if where else ""
    sql = f"""
SELECT m.id, m.nhanh_product_id, v.id, v.shopify_id, v.inventory_item_id, loc.shopify_id,
       CASE WHEN SUM(COALESCE(st.available, 0)) > 0 THEN CAST({floor} AS INTEGER) ELSE 0 END,
       lvl.available
FROM {ProductMapping._meta.db_table} m
JOIN {ShopifyVariant._meta.db_table} v ON v.id = m.shopify_variant_id
JOIN {NhanhDepot._meta.db_table} d ON d.location_id IS NOT NULL
JOIN {ShopifyLocation._meta.db_table} loc ON loc.id = d.location_id
LEFT JOIN {NhanhStock._meta.db_table} st ON st.product_id = m.nhanh_product_id AND st.depot_id = d.depot_id
LEFT JOIN {ShopifyInventoryLevel._meta.db_table} lvl ON lvl.variant_id = v.id AND lvl.location_id = loc.shopify_id
WHERE m.is_active = %s{extra}
GROUP BY m.id, m.nhanh_product_id, v.id, v.shopify_id, v.inventory_item_id, loc.shopify_id, lvl.available
ORDER BY m.id, loc.shopify_id"""
    return sql, [True, *(params or [])]


def desired_levels(*, mapping_ids=None, only_differing: bool = False) -> list[DesiredLevel]:
    """Every (active mapping, fed location) with Nhanh's summed available and Shopify's last level;
    ``mapping_ids`` narrows to those mappings, ``only_differing`` keeps the ones a sync would send."""
    where, params = "", []
    if mapping_ids is not None:
        ids = [int(i) for i in mapping_ids]
        if not ids:
            return []
        where, params = f"m.id IN ({', '.join(['%s'] * len(ids))})", ids
    sql, all_params = desired_levels_sql(where, params)
    with connection.cursor() as cur:
        cur.execute(sql, all_params)
        levels = [DesiredLevel(*row[:6], int(row[6]), None if row[7] is None else int(row[7]))
                  for row in cur.fetchall()]
    return [lvl for lvl in levels if lvl.differs] if only_differing else levels


def assign_depot_locations(depot_locations: dict[int, int | None]) -> int:
    """Point Nhanh depots (by Nhanh depot id) at Shopify locations (by Shopify location id; None: not synced),
    creating depots not seen yet. Returns how many depots were set. Raises ValueError for an unknown location."""
    wanted = {int(loc) for loc in depot_locations.values() if loc is not None}
    locations = dict(ShopifyLocation.objects.filter(shopify_id__in=wanted).values_list("shopify_id", "id"))
    missing = wanted - set(locations)
    if missing:
        raise ValueError(f"unknown Shopify location(s) {sorted(missing)}: pull Shopify products (and locations) first")
    for depot_id, location in depot_locations.items():
        target = locations[int(location)] if location is not None else None
        NhanhDepot.objects.update_or_create(depot_id=int(depot_id), defaults={"location_id": target})
    return len(depot_locations)


def install_depot_map(depots: list[tuple[int, str]], locations: list[tuple[int, str]],
                      depot_locations: dict[int, int]) -> list[str]:
    """Name depots and locations and map the depots (the demo does this for the sandbox's, before any pull:
    the pulls later fill in the rest of the locations' fields). Returns lines to print."""
    for shopify_id, name in locations:
        ShopifyLocation.objects.get_or_create(shopify_id=shopify_id, defaults={"name": name, "payload_hash": ""})
    for depot_id, name in depots:
        NhanhDepot.objects.update_or_create(depot_id=depot_id, defaults={"name": name})
    assign_depot_locations(depot_locations)
    names = dict(locations)
    return [f"Nhanh depot {depot_id} ({dict(depots).get(depot_id, '')}) → Shopify location {loc} ({names.get(loc, '')})"
            for depot_id, loc in depot_locations.items()]
