"""The Nhanh sandbox's products (facts: shared/upstreams/nhanh.md §7a): the generated catalog plus the stock
changes made since (sales simulated through ``set_available``), behind one lock.

``POST /v3.0/product/list`` serves the documented v3 record (``inventory.depots`` an array with ``id``,
quantities as doubles), ``POST /v3.0/product/inventory`` the lighter ``{productId, barcode, name, prices,
inventory}``; both page by id with the customer list's paginator (``NhanhSandbox`` owns the cursor shapes).
A stock change never moves ``updatedAt`` (Nhanh: "stock changes do not bump updatedAt").
"""

from __future__ import annotations

import threading
from typing import Any

from integrations.sandbox.catalog_population import CatalogPopulation, NhanhItem

MAX_FILTER_IDS = 100
STATUSES = (1, 2, 3, 4)


class CatalogFormError(Exception):
    def __init__(self, messages: dict[str, str]):
        super().__init__(messages)
        self.messages = messages


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _qty(value: int | float) -> float:
    return float(value)


class NhanhCatalog:
    def __init__(self, population: CatalogPopulation):
        self.population = population
        self.lock = threading.RLock()
        self.items: list[NhanhItem] = population.nhanh  # ids ascending
        self.by_id: dict[int, NhanhItem] = {item.id: item for item in self.items}
        self.depot_ids = [depot_id for depot_id, _ in population.depots]
        self.children: dict[int, list[NhanhItem]] = {}
        for item in self.items:
            if item.parent_id is not None:
                self.children.setdefault(item.parent_id, []).append(item)
        self.stock_changes = 0

    # --- for the sync side and tests -------------------------------------------------------------------
    def set_available(self, product_id: int, depot_id: int, qty: int | float) -> dict:
        """A sale or a receipt: the product's ``available`` in the depot becomes ``qty`` (``remain`` moves with
        it, holding and shipping stay). ``updatedAt`` does not move, as in Nhanh. Returns the depot's record."""
        with self.lock:
            item = self.by_id.get(product_id)
            if item is None:
                raise KeyError(f"no Nhanh product {product_id}")
            if depot_id not in self.depot_ids:
                raise KeyError(f"no Nhanh depot {depot_id}")
            stock = item.stock.setdefault(depot_id, [0, 0, 0, 0, 0])
            stock[0] = int(qty) + stock[1] + stock[2]
            self.stock_changes += 1
            return self._depot_record(depot_id, stock)

    def available(self, product_id: int, depot_id: int) -> int | None:
        with self.lock:
            stock = self.by_id[product_id].stock.get(depot_id)
            return None if stock is None else CatalogPopulation.available(stock)

    def products_truth(self) -> list[dict]:
        """``GET /_sandbox/nhanh/products``: every product's code and available quantity per depot (a parent:
        the sum of its variants, as Nhanh reports it)."""
        with self.lock:
            return [{"id": item.id, "code": item.code,
                     "depots": {str(depot_id): CatalogPopulation.available(stock)
                                for depot_id, stock in sorted(self._stock_of(item).items())}}
                    for item in self.items]

    def product_record(self, product_id: int) -> dict | None:
        """The v3 product/list record (also what a productAdd/productUpdate webhook carries)."""
        with self.lock:
            item = self.by_id.get(product_id)
            return None if item is None else self._record(item)

    def inventory_record(self, product_id: int) -> dict | None:
        """One element of an inventoryChange webhook's ``data`` (v3): ``{id, code, …totals, depots[]}``."""
        with self.lock:
            item = self.by_id.get(product_id)
            if item is None:
                return None
            inventory = self._inventory(item)
            return {"id": item.id, "typeId": 1, "code": item.code,
                    **{k: v for k, v in inventory.items() if k != "depots"}, "depots": inventory["depots"]}

    # --- requests --------------------------------------------------------------------------------------
    def parse_filters(self, filters: dict, *, inventory: bool) -> dict:
        problems: dict[str, str] = {}
        ids = filters.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(_is_int(i) for i in ids)):
            problems["ids"] = "ids must be a list of integers"
        elif ids is not None and len(ids) > MAX_FILTER_IDS:
            problems["ids"] = f"ids accepts at most {MAX_FILTER_IDS} ids"
        status = filters.get("status")
        if status is not None and (not isinstance(status, list) or not all(s in STATUSES for s in status)):
            problems["status"] = "status must be a list of 1, 2, 3, 4"
        for name in ("updatedAtFrom", "updatedAtTo"):
            if filters.get(name) is not None and not _is_int(filters[name]):
                problems[name] = f"{name} must be a unix timestamp in seconds"
        name = filters.get("name")
        if name is not None and not isinstance(name, str):
            problems["name"] = "name must be a string"
        parent = filters.get("parentId")
        if parent is not None and not _is_int(parent):
            problems["parentId"] = "parentId must be an integer"
        depot_ids = filters.get("depotIds") if inventory else None
        if depot_ids is not None and (not isinstance(depot_ids, list) or not all(_is_int(d) for d in depot_ids)):
            problems["depotIds"] = "depotIds must be a list of integers"
        if problems:
            raise CatalogFormError({f"filters.{k}": v for k, v in problems.items()})
        return {"ids": set(ids) if ids is not None else None, "status": set(status) if status else None,
                "from": filters.get("updatedAtFrom"), "to": filters.get("updatedAtTo"),
                "name": name.casefold() if name else None, "parent": parent,
                "depots": set(depot_ids) if depot_ids is not None else None}

    @staticmethod
    def _matches(item: NhanhItem, f: dict) -> bool:
        if f["ids"] is not None and item.id not in f["ids"]:
            return False
        if f["status"] is not None and item.status not in f["status"]:
            return False
        if f["from"] is not None and item.updated_at < f["from"]:
            return False
        if f["to"] is not None and item.updated_at > f["to"]:
            return False
        if f["name"] and not any(f["name"] in text.casefold() for text in (item.name, item.code, item.barcode)):
            return False
        parent = f["parent"]
        if parent is not None:
            # parentId: an id = that parent's children; -1 standalone, -2 parents, 1 children, 2 parents +
            # standalone, 3 children + standalone (nhanh.md §7a).
            has_children = item.parent_id is None and not item.sellable
            standalone = item.parent_id is None and item.sellable
            child = item.parent_id is not None
            wanted = {-1: standalone, -2: has_children, 1: child, 2: has_children or standalone,
                      3: child or standalone}.get(parent)
            if wanted is None:
                return item.parent_id == parent
            return wanted
        return True

    def page(self, filters: dict, size: int, after_id: int | None, *, descending: bool = False,
             inventory: bool = False) -> tuple[list[dict], bool]:
        """(rows, more): up to ``size`` matching products after the cursor id, in id order."""
        f = self.parse_filters(filters, inventory=inventory)
        with self.lock:
            items = reversed(self.items) if descending else self.items
            rows: list[dict] = []
            more = False
            for item in items:
                if after_id is not None and (item.id >= after_id if descending else item.id <= after_id):
                    continue
                if not self._matches(item, f):
                    continue
                if len(rows) == size:
                    more = True
                    break
                rows.append(self._inventory_row(item, f["depots"]) if inventory else self._record(item))
        return rows, more

    # --- records ---------------------------------------------------------------------------------------
    @staticmethod
    def _depot_record(depot_id: int, stock: list[int]) -> dict:
        remain, holding, shipping, damaged, transfering = stock
        return {"id": depot_id, "remain": _qty(remain), "shipping": _qty(shipping), "damaged": _qty(damaged),
                "holding": _qty(holding), "transfering": _qty(transfering),
                "available": _qty(CatalogPopulation.available(stock)),
                "warranty": {"remain": 0.0, "holding": 0.0}}

    def _stock_of(self, item: NhanhItem) -> dict[int, list[int]]:
        if item.sellable:
            return item.stock
        # A parent reports the sum of its variants.
        total: dict[int, list[int]] = {}
        for child in self.children.get(item.id, ()):
            for depot_id, stock in child.stock.items():
                acc = total.setdefault(depot_id, [0, 0, 0, 0, 0])
                for i, value in enumerate(stock):
                    acc[i] += value
        return total

    def _inventory(self, item: NhanhItem, depots: set[int] | None = None) -> dict:
        stock = {d: s for d, s in sorted(self._stock_of(item).items()) if depots is None or d in depots}
        sums = [sum(s[i] for s in stock.values()) for i in range(5)]
        totals = self._depot_record(0, sums)
        del totals["id"]
        return {**totals, "depots": [self._depot_record(d, s) for d, s in stock.items()]}

    def _record(self, item: NhanhItem) -> dict:
        return {
            "id": item.id, "parentId": item.parent_id, "code": item.code, "barcode": item.barcode,
            "name": item.name, "otherName": "", "status": item.status, "type": 1, "categoryId": 1200 + item.id % 7,
            "internalCategoryId": None, "brandId": 40 + item.id % 3, "priceVatMode": 1, "importPriceVatMode": 1,
            "prices": {"retail": _qty(item.retail), "retailVat": 0.0, "import": _qty(item.retail * 6 // 10),
                       "importVat": 0.0, "old": _qty(item.old), "wholesale": _qty(item.wholesale),
                       "avgCost": _qty(item.retail * 6 // 10)},
            "images": {"avatar": "", "others": []}, "countryName": "Việt Nam",
            "createdAt": item.created_at, "updatedAt": item.updated_at,
            "inventory": self._inventory(item),
        }

    def _inventory_row(self, item: NhanhItem, depots: set[int] | None) -> dict:
        return {"productId": item.id, "barcode": item.barcode, "name": item.name,
                "prices": {"retail": _qty(item.retail), "wholesale": _qty(item.wholesale),
                           "import": _qty(item.retail * 6 // 10), "avgCost": _qty(item.retail * 6 // 10)},
                "inventory": self._inventory(item, depots)}
