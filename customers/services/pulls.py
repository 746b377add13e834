"""Customer pulls from Nhanh and Shopify, declared on the pull framework (jobs.pull_specs): the six pull types of
the spec are modes of two specs.

| mode (system)      | progress id                        | runs        |
|--------------------|------------------------------------|-------------|
| limit (nhanh)      | nhanh_customers_limit              | in the call (the next 5,000 rows each time) |
| new (nhanh)        | nhanh_customers_new                | in the call (since the last success; first: 24 h) |
| all (nhanh)        | nhanh_customers                    | background  |
| filtered (nhanh)   | nhanh_customers_<hash(filters)>    | background  |
| all (shopify)      | shopify_customers                  | background  |
| query (shopify)    | shopify_customers_<hash(query)>    | background  |
"""

from __future__ import annotations

from collections.abc import Iterator

from django import forms
from django.conf import settings
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from integrations.clients import client_for
from integrations.shopify.bulk import ShopifyBulkSource
from jobs.errors import PullInputError
from jobs.ingest import ChildTable, RecordUpsert
from jobs.pull_specs import (
    Capped,
    FilterField,
    Incremental,
    PullMode,
    PullSpec,
    SourceRequest,
    parse_date,
    parse_text,
    register_pull_spec,
)
from jobs.pulls import Page
from jobs.widgets import LocalDateInput

from ..job_types import CustomerJobType
from ..models import CustomerType, NhanhCustomer, NhanhCustomerPhone, ShopifyCustomer, ShopifyCustomerPhone
from . import records
from .sync import Loyalty


# --- sources ------------------------------------------------------------------------------------------
class NhanhCustomerSource:
    def __init__(self, client, filters: dict, *, start=None):
        # ``start``: where a fresh run begins (the capped pull continues from its mark); a resumed run
        # passes its checkpoint cursor to pages() instead.
        self.client, self.filters, self.start = client, filters, start

    def pages(self, cursor) -> Iterator[Page]:
        position = cursor if cursor is not None else self.start
        for rows, next_cursor in self.client.iter_customer_pages(self.filters, start_cursor=position):
            yield Page(rows, next_cursor)


class ShopifyCustomerSource:
    """Paged: the customers query, page by page within Shopify's cost budget (~14 customers/s on a Standard
    plan). Small windows (a search for what changed today) are quicker this way than a bulk operation."""

    def __init__(self, client, query: str | None, metafields=()):
        self.client, self.query, self.metafields = client, query or None, metafields

    def pages(self, cursor) -> Iterator[Page]:
        # Sorted by ID: stable while customers change mid-pull (UPDATED_AT order would shift under us).
        first = True
        for nodes, end_cursor, has_next in self.client.iter_customer_pages(self.query, after=cursor,
                                                                           metafields=self.metafields):
            yield Page(nodes, end_cursor if has_next else None, progress={"path": "paged"} if first else None)
            first = False


def nhanh_source(request: SourceRequest) -> NhanhCustomerSource:
    filters = dict(request.filters)
    if request.window:  # new/updated: Nhanh's own updatedAt filters (Unix seconds)
        since, until = request.window
        filters = {"updatedAtFrom": int(since.timestamp()), "updatedAtTo": int(until.timestamp())}
    return NhanhCustomerSource(request.client, filters, start=request.start)


def shopify_source(request: SourceRequest):
    """A bulk operation unless the request asks for paged (its default: no cost budget, ≥ 10× faster)."""
    query, metafields = request.filters.get("query"), Loyalty.metafields_read()
    if request.filters.get("via", "bulk") == "paged":
        return ShopifyCustomerSource(request.client, query, metafields)
    return ShopifyBulkSource.customers(request.client, query, metafields=metafields,
                                       poll_seconds=settings.SHOPBRIDGE["SHOPIFY_BULK_POLL_SECONDS"])


# --- upserts ------------------------------------------------------------------------------------------
upsert_nhanh_customers = RecordUpsert(model=NhanhCustomer, key="nhanh_id", key_of=records.nhanh_key,
                                      parse=records.nhanh_customer,
                                      children=ChildTable(NhanhCustomerPhone, "customer_id"))
upsert_shopify_customers = RecordUpsert(model=ShopifyCustomer, key="shopify_id", key_of=records.shopify_key,
                                        parse=records.shopify_customer,
                                        children=ChildTable(ShopifyCustomerPhone, "customer_id"))


# --- filters ------------------------------------------------------------------------------------------
def _customer_type(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        customer_type = int(value)
    except (TypeError, ValueError):
        raise PullInputError(gettext("customer type must be 1, 2 or 3, not %(value)r") % {"value": value}) from None
    if customer_type not in (1, 2, 3) or isinstance(value, bool):
        raise PullInputError(gettext("customer type must be 1 (retail), 2 (wholesale) or 3 (agent)"))
    return customer_type


def _validate_nhanh(_mode: str, filters: dict) -> None:
    if filters.get("lastBoughtDateFrom", "") > filters.get("lastBoughtDateTo", "9999"):
        raise PullInputError(gettext("'last bought from' is after 'last bought to'"))


NHANH_FILTERS = (
    FilterField("type", _customer_type, form_name="customer_type", cli_flag="--type",
                help="Nhanh customer type: 1 retail, 2 wholesale, 3 agent",
                form_field=lambda: forms.TypedChoiceField(
                    choices=[("", _("any"))] + list(CustomerType.choices), required=False, coerce=int,
                    empty_value=None, label=_("Customer type"),
                    help_text=_("Filters apply to “With filters” only; each set of filters is a pull of its own."))),
    FilterField("lastBoughtDateFrom", parse_date("last bought from"), form_name="last_bought_from",
                cli_flag="--from", help="Nhanh: last bought from (YYYY-MM-DD)",
                form_field=lambda: forms.DateField(required=False, label=_("Last bought from"), widget=LocalDateInput)),
    FilterField("lastBoughtDateTo", parse_date("last bought to"), form_name="last_bought_to",
                cli_flag="--to", help="Nhanh: last bought to (YYYY-MM-DD)",
                form_field=lambda: forms.DateField(required=False, label=_("Last bought to"), widget=LocalDateInput)),
)
def _via(value) -> str | None:
    if value in (None, ""):
        return None
    if value not in ("bulk", "paged"):
        raise PullInputError(gettext("via must be bulk or paged, not %(value)r") % {"value": value})
    return value


SHOPIFY_FILTERS = (
    FilterField("via", _via, cli_flag="--via", identity=False,
                help="Shopify: bulk (a bulk operation, the default) or paged (the customers query)",
                form_field=lambda: forms.ChoiceField(
                    choices=[("", _("Bulk operation (default: fastest for many customers)")),
                             ("paged", _("Paged query (small searches)"))], required=False, label=_("How"),
                    help_text=_("Both pull the same customers; a bulk pull shows Shopify's stage while it works."))),
    FilterField("query", parse_text("the Shopify search query"), cli_flag="--query", help="Shopify search query",
                form_field=lambda: forms.CharField(
                    required=False, max_length=500, widget=forms.TextInput(attrs={"size": 60}), label=_("Query"),
                    help_text=_("Shopify search syntax, e.g. <code>state:ENABLED</code>, "
                                "<code>updated_at:&gt;='2026-11-01T00:00:00Z'</code>, <code>tag:vip</code>."))),
)


def _record_api_cost(ctx, client) -> None:
    ctx.set_metadata(api_cost=getattr(client, "cost_spent", None))


def register() -> None:
    register_pull_spec(PullSpec(
        system="nhanh", kind="customers", system_label="Nhanh", job_type=CustomerJobType.PULL_NHANH_CUSTOMERS,
        label=_("Pull Nhanh customers"),
        modes=(
            PullMode("limit", format_lazy(_("Pull {limit}: the next {limit} customers, wait for the result"),
                                          limit=settings.SHOPBRIDGE["PULL_LIMIT_SYNC"]),
                     synchronous=True, capped=Capped("PULL_LIMIT_SYNC")),
            PullMode("new", _("New / updated since the last pull (first time: last 24 h), wait for the result"),
                     synchronous=True, incremental=Incremental()),
            PullMode("all", _("All customers, in the background")),
            PullMode("filtered", _("With filters, in the background"),
                     filters=("type", "lastBoughtDateFrom", "lastBoughtDateTo"),
                     requires_filter=_("a filtered pull needs at least one filter (type or last-bought dates)")),
        ),
        filters=NHANH_FILTERS, validate=_validate_nhanh, default_mode="all",
        client=lambda: client_for("nhanh"), source=nhanh_source, upsert=upsert_nhanh_customers,
    ))
    register_pull_spec(PullSpec(
        system="shopify", kind="customers", system_label="Shopify", job_type=CustomerJobType.PULL_SHOPIFY_CUSTOMERS,
        label=_("Pull Shopify customers"),
        modes=(
            PullMode("all", _("All customers, in the background"), filters=("via",)),
            PullMode("query", _("Customers matching a Shopify search query, in the background"),
                     filters=("query", "via"),
                     requires_filter=_("a Shopify query pull needs a search query, e.g. state:ENABLED")),
        ),
        filters=SHOPIFY_FILTERS, default_mode="all",
        client=lambda: client_for("shopify"), source=shopify_source, upsert=upsert_shopify_customers,
        after_run=_record_api_cost,
    ))
