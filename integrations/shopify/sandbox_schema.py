"""The subset of the Shopify Admin GraphQL schema the sandbox serves, and Shopify's calculated query cost.

Names and types follow the public Admin schema (2025-01 introspection plus the 2026-10 reference pages) so a
query that runs here runs against a real shop. Only the parts ShopBridge touches are modelled: the
``customers`` connection, ``customer``, ``customersCount``, ``shop``, bulk operations (``bulkOperationRunQuery``,
``bulkOperationCancel``, ``currentBulkOperation``, ``bulkOperation``, ``node``), the ``metafieldsSet`` /
``customerCreate`` / ``customerUpdate`` mutations, and the catalog (``CATALOG_SDL``: products, variants, inventory
items and levels, locations). Enums that are long lists in the real schema (CountryCode,
CurrencyCode) carry a subset.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    get_named_type,
    is_leaf_type,
)
from graphql.execution.values import VariableValues, get_argument_values

SDL = '''
"""An ISO-8601 date-time string in UTC, e.g. 2026-11-20T08:15:00Z."""
scalar DateTime
"""A decimal number serialized as a string, e.g. "123.40"."""
scalar Decimal
"""An unsigned 64-bit integer serialized as a string of digits."""
scalar UnsignedInt64
scalar URL

enum CustomerSortKeys { CREATED_AT ID LOCATION NAME RELEVANCE UPDATED_AT }
enum CustomerState { DECLINED DISABLED ENABLED INVITED }
enum CurrencyCode { EUR SGD THB USD VND }
enum CountryCode { AU CA CN DE FR GB JP KR SG TH US VN }
enum MetafieldOwnerType { CUSTOMER }
enum CustomerEmailAddressMarketingState { INVALID NOT_SUBSCRIBED PENDING SUBSCRIBED UNSUBSCRIBED }
enum MetafieldsSetUserErrorCode {
  APP_NOT_AUTHORIZED BLANK CAPABILITY_VIOLATION INCLUSION INTERNAL_ERROR INVALID INVALID_TYPE INVALID_VALUE
  LESS_THAN_OR_EQUAL_TO PRESENT STALE_OBJECT TAKEN TOO_LONG TOO_SHORT
}

interface Node { id: ID! }
interface LegacyInteroperability { legacyResourceId: UnsignedInt64! }
interface HasMetafields {
  metafield(namespace: String, key: String!): Metafield
  metafields(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
             namespace: String, keys: [String!]): MetafieldConnection!
}

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }

type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }

type CustomerEmailAddress {
  emailAddress: String!
  marketingState: CustomerEmailAddressMarketingState!
}

type CustomerPhoneNumber { phoneNumber: String! }

type MailingAddress implements Node {
  id: ID!
  address1: String
  address2: String
  city: String
  company: String
  country: String
  countryCodeV2: CountryCode
  firstName: String
  lastName: String
  name: String
  phone: String
  province: String
  provinceCode: String
  zip: String
}

type Metafield implements Node {
  id: ID!
  namespace: String!
  key: String!
  value: String!
  type: String!
  ownerType: MetafieldOwnerType!
  owner: HasMetafields!
  createdAt: DateTime!
  updatedAt: DateTime!
}

type MetafieldEdge { cursor: String! node: Metafield! }
type MetafieldConnection { edges: [MetafieldEdge!]! nodes: [Metafield!]! pageInfo: PageInfo! }

type Customer implements Node & LegacyInteroperability & HasMetafields {
  id: ID!
  legacyResourceId: UnsignedInt64!
  firstName: String
  lastName: String
  displayName: String!
  note: String
  state: CustomerState!
  tags: [String!]!
  numberOfOrders: UnsignedInt64!
  amountSpent: MoneyV2!
  createdAt: DateTime!
  updatedAt: DateTime!
  locale: String!
  taxExempt: Boolean!
  verifiedEmail: Boolean!
  canDelete: Boolean!
  email: String @deprecated(reason: "Use `defaultEmailAddress.emailAddress` instead.")
  phone: String @deprecated(reason: "Use `defaultPhoneNumber.phoneNumber` instead.")
  defaultEmailAddress: CustomerEmailAddress
  defaultPhoneNumber: CustomerPhoneNumber
  defaultAddress: MailingAddress
  addresses(first: Int): [MailingAddress!]!
  metafield(namespace: String, key: String!): Metafield
  metafields(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
             namespace: String, keys: [String!]): MetafieldConnection!
}

type CustomerEdge { cursor: String! node: Customer! }
type CustomerConnection { edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }

enum BulkOperationStatus { CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }
enum BulkOperationErrorCode { ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }
enum BulkOperationType { MUTATION QUERY }
enum BulkOperationUserErrorCode { INVALID OPERATION_IN_PROGRESS }
enum CountPrecision { AT_LEAST EXACT }

type BulkOperation implements Node {
  id: ID!
  status: BulkOperationStatus!
  errorCode: BulkOperationErrorCode
  type: BulkOperationType!
  objectCount: UnsignedInt64!
  rootObjectCount: UnsignedInt64!
  fileSize: UnsignedInt64
  url: URL
  partialDataUrl: URL
  query: String!
  createdAt: DateTime!
  completedAt: DateTime
}

type BulkOperationUserError { code: BulkOperationUserErrorCode field: [String!] message: String! }
type BulkOperationRunQueryPayload { bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]! }
type BulkOperationCancelPayload { bulkOperation: BulkOperation userErrors: [UserError!]! }

type Count { count: Int! precision: CountPrecision! }

type Shop implements Node { id: ID! name: String! myshopifyDomain: String! }

type Query {
  customers(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
            sortKey: CustomerSortKeys = ID, query: String): CustomerConnection!
  customer(id: ID!): Customer
  customersCount(query: String): Count
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
  "Added in 2026-01."
  bulkOperation(id: ID!): BulkOperation
  node(id: ID!): Node
  shop: Shop!
}

input MetafieldsSetInput {
  ownerId: ID!
  namespace: String
  key: String!
  value: String!
  type: String
  compareDigest: String
}

type MetafieldsSetUserError {
  field: [String!]
  message: String!
  code: MetafieldsSetUserErrorCode
  elementIndex: Int
}

type MetafieldsSetPayload { metafields: [Metafield!] userErrors: [MetafieldsSetUserError!]! }

input MailingAddressInput {
  address1: String
  address2: String
  city: String
  company: String
  countryCode: CountryCode
  firstName: String
  lastName: String
  phone: String
  provinceCode: String
  zip: String
}

input MetafieldInput { id: ID namespace: String key: String value: String type: String }

input CustomerInput {
  id: ID
  email: String
  phone: String
  firstName: String
  lastName: String
  note: String
  tags: [String!]
  locale: String
  taxExempt: Boolean
  addresses: [MailingAddressInput!]
  metafields: [MetafieldInput!]
}

type UserError { field: [String!] message: String! }

type CustomerCreatePayload { customer: Customer userErrors: [UserError!]! }
type CustomerUpdatePayload { customer: Customer userErrors: [UserError!]! }

type Mutation {
  metafieldsSet(metafields: [MetafieldsSetInput!]!): MetafieldsSetPayload
  customerCreate(input: CustomerInput!): CustomerCreatePayload
  customerUpdate(input: CustomerInput!): CustomerUpdatePayload
  bulkOperationRunQuery(query: String!): BulkOperationRunQueryPayload
  bulkOperationCancel(id: ID!): BulkOperationCancelPayload
}
'''

# The catalog (products, variants, inventory, locations): its own document, extending the roots.
CATALOG_SDL = '''
"""A monetary value as a decimal string, e.g. "150000.00"."""
scalar Money

enum ProductStatus { ACTIVE ARCHIVED DRAFT }
enum ProductSortKeys { CREATED_AT ID TITLE UPDATED_AT }
enum ProductVariantSortKeys { ID POSITION SKU TITLE }
enum LocationSortKeys { ID NAME }

type Product implements Node & LegacyInteroperability {
  id: ID!
  legacyResourceId: UnsignedInt64!
  title: String!
  handle: String!
  status: ProductStatus!
  vendor: String!
  productType: String!
  totalInventory: Int!
  createdAt: DateTime!
  updatedAt: DateTime!
  variants(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
           sortKey: ProductVariantSortKeys = POSITION): ProductVariantConnection!
  variantsCount: Count
}

type ProductEdge { cursor: String! node: Product! }
type ProductConnection { edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }

type ProductVariant implements Node & LegacyInteroperability {
  id: ID!
  legacyResourceId: UnsignedInt64!
  title: String!
  displayName: String!
  sku: String
  barcode: String
  price: Money!
  compareAtPrice: Money
  inventoryQuantity: Int
  inventoryItem: InventoryItem!
  product: Product!
  createdAt: DateTime!
  updatedAt: DateTime!
}

type ProductVariantEdge { cursor: String! node: ProductVariant! }
type ProductVariantConnection { edges: [ProductVariantEdge!]! nodes: [ProductVariant!]! pageInfo: PageInfo! }

type InventoryItem implements Node & LegacyInteroperability {
  id: ID!
  legacyResourceId: UnsignedInt64!
  sku: String
  tracked: Boolean!
  createdAt: DateTime!
  updatedAt: DateTime!
  inventoryLevels(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
                  query: String): InventoryLevelConnection!
  inventoryLevel(locationId: ID!): InventoryLevel
}

type InventoryQuantity implements Node { id: ID! name: String! quantity: Int! updatedAt: DateTime }

type InventoryLevel implements Node {
  id: ID!
  item: InventoryItem!
  location: Location!
  quantities(names: [String!]!): [InventoryQuantity!]!
  createdAt: DateTime!
  updatedAt: DateTime!
}

type InventoryLevelEdge { cursor: String! node: InventoryLevel! }
type InventoryLevelConnection { edges: [InventoryLevelEdge!]! nodes: [InventoryLevel!]! pageInfo: PageInfo! }

type Location implements Node & LegacyInteroperability {
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  isActive: Boolean!
  fulfillsOnlineOrders: Boolean!
  shipsInventory: Boolean!
  createdAt: DateTime!
  updatedAt: DateTime!
  inventoryLevel(inventoryItemId: ID!): InventoryLevel
}

type LocationEdge { cursor: String! node: Location! }
type LocationConnection { edges: [LocationEdge!]! nodes: [Location!]! pageInfo: PageInfo! }

extend type Query {
  products(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
           sortKey: ProductSortKeys = ID, query: String): ProductConnection!
  productVariants(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
                  sortKey: ProductVariantSortKeys = ID, query: String): ProductVariantConnection!
  locations(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
            sortKey: LocationSortKeys = NAME, query: String, includeLegacy: Boolean = false,
            includeInactive: Boolean = false): LocationConnection!
  product(id: ID!): Product
  productVariant(id: ID!): ProductVariant
  location(id: ID): Location
  inventoryItem(id: ID!): InventoryItem
  productsCount(query: String): Count
}
'''

MAX_QUERY_COST = 1000
MUTATION_COST = 10  # per top-level mutation field (api-evangelist digest of shopify.dev; unconfirmed)
CONNECTION_BASE_COST = 2


def make_schema() -> GraphQLSchema:
    from .sandbox_inventory import INVENTORY_SDL

    schema = build_schema(SDL + CATALOG_SDL + INVENTORY_SDL)
    # Customer is the only owner type modelled, so every HasMetafields value is a Customer.
    schema.type_map["HasMetafields"].resolve_type = lambda value, info, type_: "Customer"
    schema.type_map["Node"].resolve_type = lambda value, info, type_: value["id"].split("/")[3]  # gid://shopify/<Type>/<n>
    return schema


class CostModel:
    """Shopify's calculated query cost: scalars and enums 0, objects 1, connections 2 + size × the cost of one
    item, top-level mutation fields 10 (their selections are not charged).

    ``requested`` is the static worst case (size = ``first``/``last``); ``actual`` walks the response and
    charges connections for the items actually returned. ``pageInfo`` is free, ``edges``/``nodes`` charge
    their object once per item (selecting both charges the dearer of the two, not their sum).
    """

    def __init__(self, schema: GraphQLSchema, operation: OperationDefinitionNode,
                 fragments: dict[str, FragmentDefinitionNode], variables: VariableValues):
        self.schema = schema
        self.operation = operation
        self.fragments = fragments
        self.variables = variables

    def requested(self) -> int:
        return self._root_cost(None)

    def actual(self, data: dict | None) -> int:
        return self._root_cost(data or {})

    # --- walking ---------------------------------------------------------------------------------
    def _root_cost(self, data: dict | None) -> int:
        if self.operation.operation == OperationType.MUTATION:
            mutation_type = self.schema.mutation_type
            return MUTATION_COST * sum(1 for _ in self._fields(self.operation.selection_set, mutation_type))
        return self._selection_cost(self.schema.query_type, self.operation.selection_set, data)

    def _fields(self, selection_set: SelectionSetNode, parent_type):
        """(field node, type it is selected on) for a selection set, fragments flattened and narrowed to
        their type condition."""
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection, parent_type
                continue
            if isinstance(selection, FragmentSpreadNode):
                selection = self.fragments[selection.name.value]
            condition = selection.type_condition
            narrowed = self.schema.type_map[condition.name.value] if condition else parent_type
            yield from self._fields(selection.selection_set, narrowed)

    def _selection_cost(self, parent_type, selection_set: SelectionSetNode, data: dict | None) -> int:
        total = 0
        for node, selected_on in self._fields(selection_set, parent_type):
            name = node.name.value
            if name.startswith("__"):
                continue
            field_def = selected_on.fields[name]
            named = get_named_type(field_def.type)
            if is_leaf_type(named) or named.name == "PageInfo":
                continue
            value = _response_value(data, node)
            if named.name.endswith("Connection"):
                total += self._connection_cost(field_def, node, named, value, data is not None)
            else:
                # Object fields are charged whether or not they came back: the lookup happened.
                size = get_argument_values(field_def, node, self.variables).get("first") or 1
                total += size * (1 + self._item_cost(named, node, value))
        return total

    def _connection_cost(self, field_def, node: FieldNode, connection_type: GraphQLObjectType, value: Any,
                         measure: bool) -> int:
        if measure:
            items = value if isinstance(value, dict) else {}
            size = max((len(v) for v in items.values() if isinstance(v, list)), default=0)
        else:
            args = get_argument_values(field_def, node, self.variables)
            size = args.get("first") or args.get("last") or 0
        per_item = 0
        for child, _ in self._fields(node.selection_set, connection_type):
            name = child.name.value
            if name == "nodes":
                node_type = connection_type.fields["nodes"].type
                per_item = max(per_item, 1 + self._item_cost(node_type, child, None))
            elif name == "edges":
                edge_type = get_named_type(connection_type.fields["edges"].type)
                per_item = max(per_item, self._edge_cost(edge_type, child))
        return CONNECTION_BASE_COST + size * per_item

    def _edge_cost(self, edge_type: GraphQLObjectType, edges_node: FieldNode) -> int:
        node_type = edge_type.fields["node"].type
        return sum(1 + self._item_cost(node_type, child, None)
                   for child, _ in self._fields(edges_node.selection_set, edge_type)
                   if child.name.value == "node")

    def _item_cost(self, type_, node: FieldNode, value: Any) -> int:
        """Cost of the selections below one object (connections nested in items are charged statically)."""
        named = get_named_type(type_)
        if node.selection_set is None or is_leaf_type(named):
            return 0
        return self._selection_cost(named, node.selection_set, value if isinstance(value, dict) else None)


def _response_value(data: dict | None, node: FieldNode) -> Any:
    if data is None:
        return None
    key = node.alias.value if node.alias else node.name.value
    return data.get(key)
