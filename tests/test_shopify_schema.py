"""Our GraphQL against Shopify's published Admin schema (the 2025-01 introspection, the newest public copy),
plus an explicit list of the later additions we rely on. Every query and mutation the client and the bulk
source can send is validated against it, and the sandbox's schema is checked the same way: every type,
field, argument and enum value it serves exists there with the same type, so neither can drift into a
private dialect."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    build_client_schema,
    extend_schema,
    parse,
    validate,
)

from integrations.shopify import client as shopify
from integrations.shopify import inventory
from integrations.shopify.sandbox_schema import make_schema

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO.parent / "shared" / "upstreams" / "shopify-admin-2025-01.json.gz"


@dataclass(frozen=True)
class Addition:
    """Something newer than 2025-01 that we use: where it lives, since when, where Shopify says so."""

    type: str
    field: str
    version: str
    changelog: str
    sdl: str


LATER_ADDITIONS = [
    Addition("Customer", "defaultEmailAddress", "2025-04",
             "https://shopify.dev/changelog/adding-defaultemailaddress-field-to-customer",
             "extend type Customer { defaultEmailAddress: CustomerEmailAddress }"),
    Addition("Customer", "defaultPhoneNumber", "2025-04",
             "https://shopify.dev/changelog/adding-defaultphonenumber-field-to-customer",
             "extend type Customer { defaultPhoneNumber: CustomerPhoneNumber }"),
    Addition("QueryRoot", "bulkOperation", "2026-01",
             "https://shopify.dev/docs/api/admin-graphql/latest/queries/bulkOperation",
             "extend type QueryRoot { bulkOperation(id: ID!): BulkOperation }"),
    Addition("InventoryQuantityInput", "changeFromQuantity", "2026-01",
             "https://shopify.dev/changelog/compare-and-swap-redesign-for-inventory-set-quantities",
             "extend input InventoryQuantityInput { changeFromQuantity: Int }"),
    Addition("@idempotent", "key", "2026-01",
             "https://shopify.dev/changelog/making-idempotency-mandatory-for-inventory-adjustments-and-refund-mutations",
             "directive @idempotent(key: String!) on FIELD"),
    Addition("InventorySetQuantitiesUserErrorCode", "CHANGE_FROM_QUANTITY_STALE", "2026-01",
             "https://shopify.dev/changelog/compare-and-swap-redesign-for-inventory-set-quantities",
             "extend enum InventorySetQuantitiesUserErrorCode { CHANGE_FROM_QUANTITY_STALE }"),
]

# Documented for 2025-01 on shopify.dev but absent from the introspection copy: added the same way.
DOCUMENTED_NOT_IN_INTROSPECTION = [
    Addition("MetafieldsSetUserErrorCode", "INVALID", "2025-01",
             "https://shopify.dev/docs/api/admin-graphql/2025-01/enums/MetafieldsSetUserErrorCode",
             "extend enum MetafieldsSetUserErrorCode { INVALID }"),
]

# The sandbox names its roots as graphql-core does; Shopify's are QueryRoot and Mutation.
ROOT_NAMES = {"Query": "QueryRoot", "Mutation": "Mutation"}

needs_schema = pytest.mark.skipif(
    not PUBLISHED.exists(),
    reason=f"Shopify's published schema is not at {PUBLISHED} (../shared/upstreams/ from the repo root)")


@lru_cache(maxsize=1)
def published():
    with gzip.open(PUBLISHED) as f:
        # Shopify's own schema breaks a spec rule graphql-core checks (deprecated fields implementing an
        # interface field that is not): validate documents against it as it is.
        return build_client_schema(json.load(f)["data"], assume_valid=True)


@lru_cache(maxsize=1)
def published_with_additions():
    sdl = "\n".join(a.sdl for a in [*LATER_ADDITIONS, *DOCUMENTED_NOT_IN_INTROSPECTION])
    return extend_schema(published(), parse(sdl), assume_valid=True)


def client_documents() -> dict[str, str]:
    """Every document the client and the bulk source send (names for the failure message)."""
    custom = [("points", "loyalty", "points"), ("tier", "custom", "loyalty_tier")]
    docs = {
        "customers page": shopify.CUSTOMERS_QUERY % shopify.CUSTOMER_FIELDS,
        "customers page, caller's metafields": shopify.CUSTOMERS_QUERY % shopify.customer_fields(custom),
        "customers page, no metafields": shopify.CUSTOMERS_QUERY % shopify.customer_fields(()),
        "customersCount": shopify.CUSTOMERS_COUNT,
        "customer lookup": shopify.CUSTOMER_LOOKUP % shopify.CUSTOMER_FIELDS,
        "metafieldsSet": shopify.METAFIELDS_SET,
        "shop": shopify.SHOP_QUERY,
        "bulkOperationRunQuery": shopify.BULK_RUN_QUERY,
        "bulk operation by id (node)": shopify.BULK_OPERATION_BY_ID,
        "currentBulkOperation": shopify.CURRENT_BULK_OPERATION,
        "bulkOperationCancel": shopify.BULK_CANCEL,
        "inventorySetQuantities (@idempotent)": inventory.INVENTORY_SET_QUANTITIES,
        "inventory level read-back": inventory.INVENTORY_LEVEL,
        "productVariantsBulkUpdate": inventory.PRODUCT_VARIANTS_BULK_UPDATE,
        "bulk query, all customers": shopify.customers_bulk_query(),
        "bulk query, search + metafields": shopify.customers_bulk_query(
            "tag:vip AND updated_at:>='2026-11-01T00:00:00Z'", metafields=custom),
        "productVariants page": shopify.VARIANTS_QUERY,
        "locations": shopify.LOCATIONS_QUERY,
        "productsCount": shopify.PRODUCTS_COUNT,
        "bulk query, all products × variants × levels": shopify.products_bulk_query(),
        "bulk query, products matching a search": shopify.products_bulk_query("status:active"),
    }
    for field in ("customerCreate", "customerUpdate"):
        docs[field] = shopify.CUSTOMER_MUTATION % {"name": field[0].upper() + field[1:], "field": field,
                                                   "fields": shopify.CUSTOMER_FIELDS}
    return docs


@needs_schema
@pytest.mark.parametrize("name", sorted(client_documents()))
def test_every_client_document_is_valid_against_the_published_schema(name):
    errors = validate(published_with_additions(), parse(client_documents()[name]))
    assert [e.message for e in errors] == []


@needs_schema
def test_a_private_field_would_be_caught():
    errors = validate(published_with_additions(), parse("{ customers(first: 1) { nodes { shoeSize } } }"))
    assert errors and "shoeSize" in errors[0].message


@needs_schema
@pytest.mark.parametrize("addition", [*LATER_ADDITIONS, *DOCUMENTED_NOT_IN_INTROSPECTION],
                         ids=lambda a: f"{a.type}.{a.field}")
def test_each_addition_is_really_missing_from_the_2025_01_copy(addition):
    """The lists hold only what the copy lacks (anything else there would hide a typo in our documents)."""
    schema = published()
    later = addition in LATER_ADDITIONS
    assert (addition.version > "2025-01") == later and addition.changelog.startswith("https://shopify.dev/")
    if addition.type.startswith("@"):
        assert schema.get_directive(addition.type[1:]) is None
    elif isinstance(schema.type_map[addition.type], GraphQLEnumType):
        assert addition.field not in schema.type_map[addition.type].values
    else:
        assert addition.field not in schema.type_map[addition.type].fields


def _type_string(type_) -> str:
    text = str(type_)
    for ours, theirs in ROOT_NAMES.items():
        if text.strip("[]!") == ours:
            text = text.replace(ours, theirs)
    return text


@needs_schema
def test_the_sandbox_schema_is_a_subset_of_the_published_one():
    theirs = published_with_additions()
    ours = make_schema()
    problems = []
    for name, our_type in ours.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Float", "Boolean", "ID"):
            continue
        their_type = theirs.type_map.get(ROOT_NAMES.get(name, name))
        if their_type is None:
            problems.append(f"type {name} does not exist")
            continue
        if type(their_type) is not type(our_type):
            problems.append(f"{name} is a {type(our_type).__name__}, Shopify's a {type(their_type).__name__}")
            continue
        if isinstance(our_type, GraphQLEnumType):
            extra = set(our_type.values) - set(their_type.values)
            problems += [f"enum value {name}.{v} does not exist" for v in sorted(extra)]
        elif isinstance(our_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in our_type.fields.items():
                their_field = their_type.fields.get(field_name)
                if their_field is None:
                    problems.append(f"field {name}.{field_name} does not exist")
                    continue
                if _type_string(field.type) != _type_string(their_field.type):
                    problems.append(f"{name}.{field_name} is {field.type}, Shopify's is {their_field.type}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    their_arg = their_field.args.get(arg_name)
                    if their_arg is None:
                        problems.append(f"argument {name}.{field_name}({arg_name}:) does not exist")
                    elif str(arg.type) != str(their_arg.type):
                        problems.append(f"{name}.{field_name}({arg_name}:) is {arg.type}, Shopify's {their_arg.type}")
            if isinstance(our_type, GraphQLObjectType):
                missing = {i.name for i in our_type.interfaces} - {i.name for i in their_type.interfaces}
                problems += [f"{name} does not implement {i}" for i in sorted(missing)]
        else:
            assert isinstance(our_type, GraphQLScalarType | GraphQLUnionType)
    assert problems == [], "\n".join(problems)
