"""The Shopify sandbox's stock and price writes, applied to its catalog (``sandbox_catalog``) so a later pull shows
them: ``inventorySetQuantities`` and ``productVariantsBulkUpdate`` as the 2026-10 API documents them
(shared/upstreams/shopify.md §8–9). (The read side, ``inventoryItem { inventoryLevel(locationId:) }`` included, is
the catalog's.)

``inventorySetQuantities``:
- needs ``@idempotent(key:)`` (2026-04 and later; on older versions it is optional). The same key with the same
  variables replays the first result without applying anything again; the same key with other variables, or while
  the first request with that key is still being applied, is refused with a top-level error (codes
  ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH`` / ``IDEMPOTENCY_CONCURRENT_REQUEST``: Shopify's "implementing
  idempotency" page names such errors; the exact codes are unconfirmed here);
- every quantity needs ``changeFromQuantity`` (2026-04 and later): the value the caller expects, or an explicit
  null to skip the check; a mismatch is the user error ``CHANGE_FROM_QUANTITY_STALE``;
- all or nothing: any user error (unknown item or location, negative or huge quantity, a name other than
  ``available``/``on_hand``, an unknown reason, a duplicated item × location, an injected error) and nothing is
  applied; the errors name the quantity (``field: ["input", "quantities", "<i>", …]``);
- since 2026-10 any location accepts stock (no ``ITEM_NOT_STOCKED_AT_LOCATION``): a level that does not exist yet
  counts as 0 for the compare-and-swap.

``productVariantsBulkUpdate``: one product, every variant must be its own (``MUST_BE_FOR_THIS_PRODUCT``), prices
not negative; with ``allowPartialUpdates: false`` (the default) nothing is applied when one variant is refused.

The catalog (``sandbox_catalog.ShopifyCatalog``) used: ``lock``, ``by_item``, ``locations``, ``level``,
``set_level``, ``variant``, ``variants``, ``variant_view`` and ``set_variant_prices``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from decimal import Decimal, InvalidOperation

from graphql import GraphQLError
from graphql.execution.values import get_directive_values

QUANTITY_NAMES = ("available", "on_hand")
# The documented reasons (shopify.dev "inventory states" page; the full list is unconfirmed).
REASONS = ("correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
           "movement_received", "movement_canceled", "other", "promotion", "quality_control", "received",
           "reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock",
           "shrinkage")
MAX_QUANTITY = 1_000_000_000
MANDATORY_FROM = "2026-04"  # @idempotent and changeFromQuantity required from this version on
IDEMPOTENT_MUTATIONS = ("inventorySetQuantities",)


def _gid_id(gid, kind: str) -> int | None:
    prefix = f"gid://shopify/{kind}/"
    if not isinstance(gid, str) or not gid.startswith(prefix) or not gid[len(prefix):].isdigit():
        return None
    return int(gid[len(prefix):])


def _user_error(code: str | None, field: list[str], message: str) -> dict:
    return {"code": code, "field": field, "message": message}


class InventoryWrites:
    """Stateful stock/price mutations over one sandbox catalog. Thread-safe (the catalog's lock guards the
    compare-and-swap and the write together; idempotency keys have their own)."""

    def __init__(self, catalog):
        self.catalog = catalog
        self._keys: dict[str, tuple[str, dict | None]] = {}  # key → (fingerprint, first result; None: running)
        self._keys_lock = threading.Lock()
        self._groups = 0
        self.applied = 0  # levels changed
        self.calls_applied = 0
        self.replays = 0
        self.stale = 0
        self.injected: dict[int, dict] = {}  # inventory item id → a user error to answer for it

    # --- inventorySetQuantities -----------------------------------------------------------------------
    def set_quantities(self, info, input: dict) -> dict:
        version = getattr(info.context, "version", "") or ""
        key = self._idempotency_key(info)
        if key is None:
            if version >= MANDATORY_FROM:
                raise GraphQLError("The @idempotent directive is required for this mutation.",
                                   extensions={"code": "BAD_REQUEST"})
            return self._apply(input, version)
        fingerprint = hashlib.sha256(json.dumps(info.variable_values, sort_keys=True, default=str)
                                     .encode()).hexdigest()
        with self._keys_lock:
            known = self._keys.get(key)
            if known is not None:
                first_fingerprint, result = known
                if first_fingerprint != fingerprint:
                    raise GraphQLError("This idempotency key was already used with different parameters.",
                                       extensions={"code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"})
                if result is None:
                    raise GraphQLError("A request with this idempotency key is still being processed.",
                                       extensions={"code": "IDEMPOTENCY_CONCURRENT_REQUEST"})
                self.replays += 1
                return result
            self._keys[key] = (fingerprint, None)
        try:
            result = self._apply(input, version)
        except BaseException:
            with self._keys_lock:
                self._keys.pop(key, None)
            raise
        with self._keys_lock:
            self._keys[key] = (fingerprint, result)
        return result

    @staticmethod
    def _idempotency_key(info) -> str | None:
        schema_directive = info.schema.get_directive("idempotent")
        if schema_directive is None:
            return None
        for node in info.field_nodes:
            values = get_directive_values(schema_directive, node, info.variable_values)
            if values and values.get("key"):
                return str(values["key"])
        return None

    def _apply(self, input: dict, version: str) -> dict:
        errors: list[dict] = []
        name, reason = input.get("name"), input.get("reason")
        if name not in QUANTITY_NAMES:
            errors.append(_user_error("INVALID_NAME", ["input", "name"],
                                      f"The quantity name must be one of: {', '.join(QUANTITY_NAMES)}."))
        if reason not in REASONS:
            errors.append(_user_error("INVALID_REASON", ["input", "reason"], "The specified reason is invalid."))
        uri = input.get("referenceDocumentUri")
        if uri is not None and (":" not in uri or " " in uri):
            errors.append(_user_error("INVALID_REFERENCE_DOCUMENT", ["input", "referenceDocumentUri"],
                                      "The specified reference document is invalid."))
        quantities = input.get("quantities") or []
        catalog = self.catalog
        with catalog.lock:
            seen: set[tuple[int, int]] = set()
            planned: list[tuple[int, int, int, int]] = []  # item, location, before, after
            for i, q in enumerate(quantities):
                at = ["input", "quantities", str(i)]
                item = _gid_id(q.get("inventoryItemId"), "InventoryItem")
                location = _gid_id(q.get("locationId"), "Location")
                if item is None or item not in catalog.by_item:
                    errors.append(_user_error("INVALID_INVENTORY_ITEM", [*at, "inventoryItemId"],
                                              "The specified inventory item could not be found."))
                    continue
                if location is None or location not in catalog.locations:
                    errors.append(_user_error("INVALID_LOCATION", [*at, "locationId"],
                                              "The specified location could not be found."))
                    continue
                if (item, location) in seen:
                    errors.append(_user_error("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", at,
                                              "The combination of inventoryItemId and locationId must be unique."))
                    continue
                seen.add((item, location))
                quantity = q.get("quantity")
                if quantity < 0:
                    errors.append(_user_error("INVALID_QUANTITY_NEGATIVE", [*at, "quantity"],
                                              "The quantity can't be negative."))
                    continue
                if abs(quantity) > MAX_QUANTITY:
                    errors.append(_user_error("INVALID_QUANTITY_TOO_HIGH" if quantity > 0
                                              else "INVALID_QUANTITY_TOO_LOW", [*at, "quantity"],
                                              "The quantity is out of range."))
                    continue
                if item in self.injected:
                    errors.append({**self.injected[item], "field": [*at, "inventoryItemId"]})
                    continue
                before = catalog.level(item, location)
                before = 0 if before is None else before
                if "changeFromQuantity" not in q:
                    if version >= MANDATORY_FROM:
                        errors.append(_user_error(None, [*at, "changeFromQuantity"],
                                                  "changeFromQuantity is required: pass the quantity you expect, "
                                                  "or null to skip the check."))
                        continue
                elif q["changeFromQuantity"] is not None and q["changeFromQuantity"] != before:
                    self.stale += 1
                    errors.append(_user_error("CHANGE_FROM_QUANTITY_STALE", [*at, "changeFromQuantity"],
                                              "The changeFromQuantity is stale: the quantity has changed since "
                                              "it was read."))
                    continue
                planned.append((item, location, before, quantity))
            if errors:
                return {"inventoryAdjustmentGroup": None, "userErrors": errors}
            for item, location, _before, after in planned:
                catalog.set_level(item, location, after)
            self._groups += 1
            self.calls_applied += 1
            self.applied += len(planned)
            group = self._groups
        return {"inventoryAdjustmentGroup": {
            "id": f"gid://shopify/InventoryAdjustmentGroup/{group}", "reason": reason,
            "referenceDocumentUri": uri, "createdAt": "2026-12-05T00:00:00Z",
            "changes": [{"name": name, "delta": after - before, "quantityAfterChange": after}
                        for _item, _location, before, after in planned if after != before],
        }, "userErrors": []}

    # --- productVariantsBulkUpdate ------------------------------------------------------------------------
    def bulk_update_variants(self, product_gid: str, variants: list[dict], allow_partial: bool = False) -> dict:
        product = _gid_id(product_gid, "Product")
        errors: list[dict] = []
        planned = []
        with self.catalog.lock:
            for i, v in enumerate(variants):
                at = ["variants", str(i)]
                variant_id = _gid_id(v.get("id"), "ProductVariant")
                if v.get("id") is None:
                    errors.append(_user_error("PRODUCT_VARIANT_ID_MISSING", [*at, "id"],
                                              "Product variant is missing ID attribute."))
                    continue
                current = self.catalog.variant(variant_id) if variant_id is not None else None
                if current is None:
                    errors.append(_user_error("PRODUCT_VARIANT_DOES_NOT_EXIST", [*at, "id"],
                                              "Product variant does not exist"))
                    continue
                if current.get("product_id") != product:
                    errors.append(_user_error("MUST_BE_FOR_THIS_PRODUCT", [*at, "id"],
                                              "Product variant does not belong to this product"))
                    continue
                price = _decimal(v.get("price")) if "price" in v else current.get("price")
                compare_at = _decimal(v.get("compareAtPrice")) if "compareAtPrice" in v \
                    else current.get("compare_at")
                if price is None or Decimal(price) < 0 or (compare_at is not None and Decimal(compare_at) < 0):
                    errors.append(_user_error("NEGATIVE_PRICE_VALUE", [*at, "price"],
                                              "Price must be greater than or equal to 0"))
                    continue
                planned.append((variant_id, price, compare_at))
            if product is None or (errors and not planned and not variants):
                return {"product": None, "productVariants": None, "userErrors": [
                    _user_error("PRODUCT_DOES_NOT_EXIST", ["productId"], "Product does not exist")]}
            if errors and not allow_partial:
                return {"product": None, "productVariants": None, "userErrors": errors}
            for variant_id, price, compare_at in planned:
                self.catalog.set_variant_prices(variant_id, Decimal(price),
                                                None if compare_at is None else Decimal(compare_at))
            updated = [self.catalog.variant_view(self.catalog.variants[variant_id]) for variant_id, _, _ in planned]
        return {"productVariants": updated, "userErrors": errors}


INVENTORY_SDL = '''
"""Added in 2026-01; required at runtime on inventory mutations from 2026-04."""
directive @idempotent(key: String!) on FIELD

enum InventorySetQuantitiesUserErrorCode {
  INVALID_INVENTORY_ITEM INVALID_LOCATION INVALID_QUANTITY_NEGATIVE INVALID_REASON INVALID_REFERENCE_DOCUMENT
  INVALID_QUANTITY_TOO_HIGH INVALID_QUANTITY_TOO_LOW INVALID_NAME NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR
  NON_MUTABLE_INVENTORY_ITEM CHANGE_FROM_QUANTITY_STALE
}
enum ProductVariantsBulkUpdateUserErrorCode {
  INVALID_INPUT PRODUCT_DOES_NOT_EXIST PRODUCT_VARIANT_ID_MISSING PRODUCT_VARIANT_DOES_NOT_EXIST
  MUST_BE_FOR_THIS_PRODUCT NEGATIVE_PRICE_VALUE GREATER_THAN_OR_EQUAL_TO
}

input InventoryQuantityInput { inventoryItemId: ID! locationId: ID! quantity: Int! changeFromQuantity: Int }
input InventorySetQuantitiesInput {
  reason: String!
  name: String!
  referenceDocumentUri: String
  quantities: [InventoryQuantityInput!]!
}
type InventoryChange { delta: Int! name: String! quantityAfterChange: Int }
type InventoryAdjustmentGroup implements Node {
  id: ID!
  reason: String!
  referenceDocumentUri: String
  createdAt: DateTime!
  changes: [InventoryChange!]!
}
type InventorySetQuantitiesUserError { code: InventorySetQuantitiesUserErrorCode field: [String!] message: String! }
type InventorySetQuantitiesPayload {
  inventoryAdjustmentGroup: InventoryAdjustmentGroup
  userErrors: [InventorySetQuantitiesUserError!]!
}

input ProductVariantsBulkInput { id: ID price: Money compareAtPrice: Money barcode: String }
type ProductVariantsBulkUpdateUserError {
  code: ProductVariantsBulkUpdateUserErrorCode
  field: [String!]
  message: String!
}
type ProductVariantsBulkUpdatePayload {
  product: Product
  productVariants: [ProductVariant!]
  userErrors: [ProductVariantsBulkUpdateUserError!]!
}

extend type Mutation {
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
  productVariantsBulkUpdate(productId: ID!, variants: [ProductVariantsBulkInput!]!,
                            allowPartialUpdates: Boolean = false): ProductVariantsBulkUpdatePayload
}
'''


def install(schema) -> None:
    """Resolvers of the mutations above; ``info.context.app.inventory`` is the sandbox's InventoryWrites."""
    mutation = schema.mutation_type.fields
    mutation["inventorySetQuantities"].resolve = lambda root, info, input: info.context.app.inventory \
        .set_quantities(info, input)
    mutation["productVariantsBulkUpdate"].resolve = lambda root, info, productId, variants, \
        allowPartialUpdates=False, **_: info.context.app.inventory.bulk_update_variants(
            productId, variants, allowPartialUpdates or False)


def _decimal(value) -> str | None:
    if value is None:
        return None
    try:
        return f"{Decimal(str(value)):.2f}"
    except InvalidOperation:
        return "-1"  # refused as a negative/invalid price
