"""Stock and price writes to Shopify: ``inventorySetQuantities`` with ``changeFromQuantity`` and ``@idempotent`` (as
2026-04 and later require), a level read-back for stale compare-and-swaps, and ``productVariantsBulkUpdate``.

Facts (shared/upstreams/shopify.md §8–9): every quantity carries ``changeFromQuantity`` (the value we expect Shopify
to hold, or an explicit ``null`` to skip the check); a mismatch is the user error ``CHANGE_FROM_QUANTITY_STALE``;
the mutation needs ``@idempotent(key:)`` — the same key with the same variables replays the first result, so a
request whose answer was lost is sent again with its key and nothing is applied twice. Input arrays hold at most
250 items. Prices go one product per call, all-or-nothing (``allowPartialUpdates: false``).

Functions take a ``ShopifyClient`` (pacing by the shared cost budget, token handling and typed errors are its own).
"""

from __future__ import annotations

import logging

from integrations.errors import UpstreamUnavailable

log = logging.getLogger(__name__)

MAX_QUANTITIES_PER_CALL = 250  # Shopify's cap on input arrays
MAX_VARIANTS_PER_CALL = 250
STOCK_NAME = "available"
STOCK_REASON = "correction"
SEND_ATTEMPTS = 4  # tries of one keyed request after a dropped connection, timeout or 5xx

INVENTORY_SET_QUANTITIES = """
mutation ShopBridgeSetStock($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { id reason referenceDocumentUri changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}
"""

INVENTORY_LEVEL = """
query ShopBridgeInventoryLevel($itemId: ID!, $locationId: ID!) {
  inventoryItem(id: $itemId) {
    id
    inventoryLevel(locationId: $locationId) { quantities(names: ["available"]) { name quantity } }
  }
}
"""

PRODUCT_VARIANTS_BULK_UPDATE = """
mutation ShopBridgeSetPrices($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants, allowPartialUpdates: false) {
    productVariants { id price compareAtPrice }
    userErrors { code field message }
  }
}
"""


def set_quantities(client, input: dict, idempotency_key: str, *, attempts: int = SEND_ATTEMPTS,
                   on_retry=None) -> tuple[dict | None, list[dict]]:
    """Send one ``inventorySetQuantities``: ``(inventoryAdjustmentGroup or None, userErrors)``.

    A timeout, 5xx or dropped connection may have come after Shopify applied the change, so the same request is
    sent again with the same key (Shopify replays the first result) up to ``attempts`` times; then the last
    error is raised (the caller keeps the request and its key for a later retry). Rate limits are waited out by
    the client. ``on_retry(exc)`` is told about each resend."""
    if len(input.get("quantities") or ()) > MAX_QUANTITIES_PER_CALL:
        raise ValueError(f"inventorySetQuantities takes at most {MAX_QUANTITIES_PER_CALL} quantities per call")
    variables = {"input": input, "idempotencyKey": idempotency_key}
    for attempt in range(1, attempts + 1):
        try:
            data = client.graphql(INVENTORY_SET_QUANTITIES, variables, retry_unavailable=False,
                                  estimated_cost=10)
            break
        except UpstreamUnavailable as exc:
            if attempt >= attempts:
                raise
            log.warning("shopify: inventorySetQuantities failed (%s); sending it again with the same key", exc)
            if on_retry:
                on_retry(exc)
            client.retries += 1
            client.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))
    payload = data.get("inventorySetQuantities") or {}
    return payload.get("inventoryAdjustmentGroup"), payload.get("userErrors") or []


def read_available(client, inventory_item_gid: str, location_gid: str) -> int | None:
    """Shopify's ``available`` of one item at one location now (None: not stocked there, or no such item)."""
    item = client.graphql(INVENTORY_LEVEL, {"itemId": inventory_item_gid, "locationId": location_gid},
                          estimated_cost=4).get("inventoryItem")
    level = (item or {}).get("inventoryLevel")
    for quantity in (level or {}).get("quantities") or ():
        if quantity.get("name") == STOCK_NAME:
            return quantity.get("quantity")
    return None


def update_variant_prices(client, product_gid: str, variants: list[dict]) -> tuple[list[dict], list[dict]]:
    """``productVariantsBulkUpdate`` of one product's variants (``[{id, price, compareAtPrice}]``), all or
    nothing: ``(productVariants, userErrors)``. Setting a price twice is harmless, so the client's usual retries
    apply."""
    if len(variants) > MAX_VARIANTS_PER_CALL:
        raise ValueError(f"productVariantsBulkUpdate takes at most {MAX_VARIANTS_PER_CALL} variants per call")
    data = client.graphql(PRODUCT_VARIANTS_BULK_UPDATE, {"productId": product_gid, "variants": variants},
                          estimated_cost=10)
    payload = data.get("productVariantsBulkUpdate") or {}
    return payload.get("productVariants") or [], payload.get("userErrors") or []
