"""A generated product catalog that the Nhanh and the Shopify sandboxes both serve, and its ground truth.

Goods are *articles*: article ``g`` is either one standalone Nhanh product or a Nhanh parent with 1–3 variants
(sizes). Each sellable Nhanh product (a standalone one or a variant) has a canonical SKU key such as
``sp00012-m``; the parent's own code (``sp00012``) is never sold online. Most articles are also sold on Shopify:
one Shopify product per article, one variant per sellable Nhanh product, the SKU written with other case or stray
spaces. Planted on purpose, all deterministic from the seed:

- Nhanh products with a blank code ("" or only spaces) and Shopify variants with a blank SKU;
- a Nhanh product registered twice (a second product with the same code, other case/spaces);
- a Shopify SKU used by two variants (a "combo" product repeating a variant's SKU);
- goods only in Nhanh, and Shopify-only goods (``sh…`` SKUs).

``truth()`` says what an auto-match over the normalized SKU (trimmed, case-folded) must find when nothing is
mapped yet: pairs unique on both sides, SKUs shared by several products on at least one side (and present on
both), and the blank ones. It is computed from the canonical keys the generator chose, never by normalizing the
rendered strings, so a matcher that normalizes wrongly disagrees with it.

Depots and locations are fixed: four Nhanh depots and three Shopify locations; ``DEFAULT_DEPOT_LOCATIONS`` is the
map the demo installs (every location fed, one by two depots).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .population import FastRandom

DEPOTS = [(31010, "Kho Hà Nội - Cầu Giấy"), (31011, "Kho Hà Nội - Hoàn Kiếm"), (31012, "Kho TP HCM - Quận 1"),
          (31013, "Kho Đà Nẵng")]
LOCATIONS = [(71_000_000_001, "Cửa hàng Hà Nội"), (71_000_000_002, "Cửa hàng Sài Gòn"),
             (71_000_000_003, "Kho online Đà Nẵng")]
DEFAULT_DEPOT_LOCATIONS = {31010: 71_000_000_001, 31011: 71_000_000_001, 31012: 71_000_000_002,
                           31013: 71_000_000_003}

NHANH_FIRST_ID = 5_000_000
NHANH_ID_STEP = 3
SHOPIFY_PRODUCT_BASE = 8_100_000_000
SHOPIFY_VARIANT_BASE = 44_200_000_000
INVENTORY_ITEM_BASE = 46_300_000_000
SIZES = ["s", "m", "l", "xl"]
KINDS = ["Áo thun", "Áo sơ mi", "Quần jean", "Váy", "Giày thể thao", "Túi xách", "Mũ lưỡi trai", "Khăn lụa",
         "Áo khoác", "Dép"]
COLORS = ["đen", "trắng", "đỏ", "xanh navy", "be", "xám", "hồng"]

# Shares of sellable Nhanh products (the rest are Nhanh-only goods).
ON_SHOPIFY = 0.70
BLANK_NHANH = 0.04
DUPLICATE_NHANH = 0.03  # a second Nhanh product with the same code
DUPLICATE_SHOPIFY = 0.03  # a second Shopify variant with the same SKU
SHOPIFY_ONLY = 0.15  # Shopify-only variants, as a share of the sellable Nhanh products
BLANK_SHOPIFY = 0.03


def _rng(seed: int, stream: str, i: int) -> FastRandom:
    sid = zlib.crc32(stream.encode()) & 0xFF_FFFF
    return FastRandom((seed << 56) ^ (sid << 32) ^ i)


def render_sku(key: str, rng) -> str:
    """The canonical key written the way people type SKUs: mostly upper case, sometimes lower or mixed, with
    stray spaces around it now and then (never inside: a space inside is another SKU)."""
    roll = rng.random()
    text = key.upper() if roll < 0.6 else key if roll < 0.75 else key[:1].upper() + key[1:]
    spaces = rng.random()
    if spaces < 0.08:
        text = " " + text
    elif spaces < 0.16:
        text = text + "  "
    elif spaces < 0.20:
        text = "\t" + text + " "
    return text


@dataclass
class NhanhItem:
    id: int
    parent_id: int | None
    code: str  # as served
    key: str  # canonical SKU key ("" = blank)
    name: str
    barcode: str
    status: int
    retail: int
    wholesale: int
    old: int
    updated_at: int
    created_at: int
    sellable: bool
    # depot id → [remain, holding, shipping, damaged, transfering]; available = remain - holding - shipping
    stock: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class ShopifyVariantItem:
    id: int
    product_id: int
    inventory_item_id: int
    title: str
    sku: str  # as served
    key: str
    barcode: str
    price: int
    compare_at: int | None
    updated_at: int
    created_at: int
    levels: dict[int, int] = field(default_factory=dict)  # location id → available


@dataclass
class ShopifyProductItem:
    id: int
    title: str
    handle: str
    status: str
    updated_at: int
    created_at: int
    variant_ids: list[int] = field(default_factory=list)


@dataclass
class CatalogTruth:
    matched: dict[int, int]  # Nhanh id → Shopify variant id
    ambiguous: dict[str, tuple[list[int], list[int]]]  # key → (Nhanh ids, Shopify variant ids)
    blank_nhanh: list[int]
    blank_shopify: list[int]


class CatalogPopulation:
    """The generated catalog (built once, eagerly: a few hundred bytes per product)."""

    def __init__(self, *, seed: int = 1, products: int = 300, anchor: datetime | None = None):
        self.seed = seed
        self.target = max(int(products), 0)
        self.anchor = anchor or datetime.now(UTC).replace(second=0, microsecond=0)
        self.depots = list(DEPOTS)
        self.locations = list(LOCATIONS)
        self.nhanh: list[NhanhItem] = []
        self.shopify_products: list[ShopifyProductItem] = []
        self.shopify_variants: list[ShopifyVariantItem] = []
        self._build()

    # --- generation ---------------------------------------------------------------------------------
    def _time(self, stream: str, i: int) -> tuple[int, int]:
        """(updated, created) unix seconds: ~2 % changed in the last 24 h, the rest up to two years ago."""
        r = _rng(self.seed, stream + ":t", i)
        hours = r.random() * 24 if r.random() < 0.02 else 24 + r.random() * 24 * 730
        updated = self.anchor - timedelta(hours=hours)
        created = updated - timedelta(days=r.randint(0, 400))
        return int(updated.timestamp()), int(created.timestamp())

    def _nhanh_id(self) -> int:
        return NHANH_FIRST_ID + NHANH_ID_STEP * len(self.nhanh)

    def _add_nhanh(self, *, parent_id, code, key, name, sellable, r) -> NhanhItem:
        index = len(self.nhanh)
        updated, created = self._time("nhanh-product", index)
        retail = r.randint(5, 200) * 10_000
        item = NhanhItem(
            id=self._nhanh_id(), parent_id=parent_id, code=code, key=key, name=name,
            barcode=f"893{(self.seed * 7919 + index) % 10**10:010d}" if r.random() < 0.7 else "",
            status=2 if r.random() < 0.9 else r.choice([1, 3, 4]), retail=retail, wholesale=retail * 8 // 10,
            old=retail + r.randint(0, 5) * 10_000 if r.random() < 0.3 else 0, updated_at=updated, created_at=created,
            sellable=sellable,
        )
        if sellable:
            for depot_id, _ in self.depots:
                if r.random() < 0.8:
                    remain = r.randint(0, 40)
                    holding = r.randint(0, 3) if r.random() < 0.3 else 0
                    if r.random() < 0.03:  # oversold: more held than in stock → negative available
                        holding = remain + r.randint(1, 3)
                    shipping = r.randint(0, 2) if r.random() < 0.1 else 0
                    item.stock[depot_id] = [remain, holding, shipping, r.randint(0, 1) if r.random() < .05 else 0, 0]
        self.nhanh.append(item)
        return item

    def _add_shopify_product(self, title: str, r) -> ShopifyProductItem:
        index = len(self.shopify_products)
        updated, created = self._time("shopify-product", index)
        product = ShopifyProductItem(
            id=SHOPIFY_PRODUCT_BASE + 7 * index, title=title,
            handle=f"{title.lower().replace(' ', '-')}-{index}".encode("ascii", "ignore").decode(),
            status="ACTIVE" if r.random() < 0.9 else r.choice(["DRAFT", "ARCHIVED"]), updated_at=updated,
            created_at=created)
        self.shopify_products.append(product)
        return product

    def _add_shopify_variant(self, product: ShopifyProductItem, *, sku: str, key: str, title: str, price: int,
                             r) -> ShopifyVariantItem:
        index = len(self.shopify_variants)
        updated, created = self._time("shopify-variant", index)
        variant = ShopifyVariantItem(
            id=SHOPIFY_VARIANT_BASE + 13 * index, product_id=product.id,
            inventory_item_id=INVENTORY_ITEM_BASE + 17 * index, title=title, sku=sku, key=key,
            barcode=f"200{index:010d}" if r.random() < 0.4 else "", price=price,
            compare_at=price + r.randint(1, 10) * 10_000 if r.random() < 0.25 else None,
            updated_at=max(updated, product.created_at), created_at=product.created_at)
        for location_id, _ in self.locations:
            if r.random() < 0.9:
                variant.levels[location_id] = r.randint(0, 40)
        product.variant_ids.append(variant.id)
        self.shopify_variants.append(variant)
        return variant

    def _build(self) -> None:
        g = 0
        shopify_dup_queue: list[tuple[str, int]] = []
        while len(self.nhanh) < self.target:
            r = _rng(self.seed, "article", g)
            kind, color = r.choice(KINDS), r.choice(COLORS)
            base = f"sp{g:05d}"
            title = f"{kind} {color} {base.upper()}"
            n_variants = r.choice([0, 0, 0, 1, 2, 3, 3])
            room = self.target - len(self.nhanh)
            if n_variants and room < n_variants + 1:
                n_variants = 0
            sellable: list[tuple[NhanhItem, str]] = []  # (item, variant title)
            if n_variants == 0:
                sellable.append((self._nhanh_sellable(base, title, None, r), "Default Title"))
            else:
                parent = self._add_nhanh(parent_id=None, code=render_sku(base, r), key=base, name=title,
                                         sellable=False, r=r)
                for size in SIZES[:n_variants]:
                    item = self._nhanh_sellable(f"{base}-{size}", f"{title} - {size.upper()}", parent.id, r)
                    sellable.append((item, size.upper()))
            # The Shopify side of this article.
            online = [(item, vt) for item, vt in sellable if item.key and r.random() < ON_SHOPIFY]
            if online:
                product = self._add_shopify_product(title, r)
                for item, variant_title in online:
                    price = item.retail if r.random() < 0.8 else item.retail + r.randint(-2, 5) * 10_000
                    self._add_shopify_variant(product, sku=render_sku(item.key, r), key=item.key,
                                              title=variant_title, price=max(price, 10_000), r=r)
                    if r.random() < DUPLICATE_SHOPIFY / ON_SHOPIFY:
                        shopify_dup_queue.append((item.key, price))
                if r.random() < BLANK_SHOPIFY * 3:
                    self._add_shopify_variant(product, sku=r.choice(["", " "]), key="", title="Gift wrap",
                                              price=20_000, r=r)
            g += 1
        # Combos repeating a variant's SKU (Shopify duplicates), and Shopify-only goods.
        for n, (key, price) in enumerate(shopify_dup_queue):
            r = _rng(self.seed, "shopify-dup", n)
            product = self._add_shopify_product(f"Combo {key.upper()}", r)
            self._add_shopify_variant(product, sku=render_sku(key, r), key=key, title="Default Title", price=price,
                                      r=r)
        sellable_count = sum(1 for item in self.nhanh if item.sellable)
        for n in range(int(sellable_count * SHOPIFY_ONLY)):
            r = _rng(self.seed, "shopify-only", n)
            key = f"sh{n:05d}"
            product = self._add_shopify_product(f"{r.choice(KINDS)} online {key.upper()}", r)
            blank = r.random() < BLANK_SHOPIFY
            self._add_shopify_variant(product, sku="" if blank else render_sku(key, r), key="" if blank else key,
                                      title="Default Title", price=r.randint(5, 200) * 10_000, r=r)

    def _nhanh_sellable(self, key: str, name: str, parent_id: int | None, r) -> NhanhItem:
        roll = r.random()
        if roll < BLANK_NHANH:
            return self._add_nhanh(parent_id=parent_id, code=r.choice(["", "  "]), key="", name=name, sellable=True,
                                   r=r)
        item = self._add_nhanh(parent_id=parent_id, code=render_sku(key, r), key=key, name=name, sellable=True,
                               r=r)
        if roll < BLANK_NHANH + DUPLICATE_NHANH and len(self.nhanh) < self.target:
            # The same goods entered a second time (another standalone product, same SKU).
            self._add_nhanh(parent_id=None, code=render_sku(key, r), key=key, name=f"{name} (nhập trùng)",
                            sellable=True, r=r)
        return item

    # --- truth --------------------------------------------------------------------------------------
    def truth(self) -> CatalogTruth:
        nhanh_by_key: dict[str, list[int]] = {}
        shopify_by_key: dict[str, list[int]] = {}
        blank_nhanh = [item.id for item in self.nhanh if not item.key]
        blank_shopify = [v.id for v in self.shopify_variants if not v.key]
        for item in self.nhanh:
            if item.key:
                nhanh_by_key.setdefault(item.key, []).append(item.id)
        for variant in self.shopify_variants:
            if variant.key:
                shopify_by_key.setdefault(variant.key, []).append(variant.id)
        matched, ambiguous = {}, {}
        for key in nhanh_by_key.keys() & shopify_by_key.keys():
            nhanh_ids, shopify_ids = nhanh_by_key[key], shopify_by_key[key]
            if len(nhanh_ids) == 1 and len(shopify_ids) == 1:
                matched[nhanh_ids[0]] = shopify_ids[0]
            else:
                ambiguous[key] = (sorted(nhanh_ids), sorted(shopify_ids))
        return CatalogTruth(matched, ambiguous, blank_nhanh, blank_shopify)

    @staticmethod
    def available(stock: list[int]) -> int:
        remain, holding, shipping = stock[0], stock[1], stock[2]
        return remain - holding - shipping
