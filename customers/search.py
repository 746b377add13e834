"""Admin search over 200,000+ customers per system that answers from indexes.

A search term is split into *phone runs* and *text chunks*; every part must match (like Django's own
search, where each word must match some field):

- A phone run (digits with the separators people type, at least 3 digits) is read with the normalizer
  auto-match uses (``customers.phones.normalize_phone``): a whole number in any format (``0912 345 678``,
  ``+84912345678``, ``84912345678``, ``912345678``, an old 11-digit ``01628 123 456``) is looked up exactly in
  the phone tables' ``e164``; a partial one as an E.164 prefix (``0912`` → ``LIKE '+84912%'``, served by the
  ``varchar_pattern_ops`` index Django builds next to ``e164``'s index) or, typed without 0/+84, as the last
  digits (``345678`` → ``reverse(e164) LIKE '876543%'``, served by the index of migration 0005). Digits
  are also an exact Nhanh / Shopify id. A phone run never becomes ``ILIKE '%…%'`` over the customer table.
- A text chunk is matched against one *search document* per customer (name both ways round and email),
  folded: lower-cased, accents removed, đ/Đ → d, so "Nguyen Van A", "nguyễn văn a" and "NGUYỄN" find
  "Nguyễn Văn A". On PostgreSQL the fold is ``shopbridge_fold()`` (an IMMUTABLE wrapper of ``unaccent``,
  created by migration 0005) and the documents have pg_trgm GIN indexes, so ``LIKE '%…%'`` is an index
  scan. Words shorter than 3 characters are glued to their neighbour ("Van A" stays one chunk) because a
  trigram index cannot look up one or two letters alone. SQLite gets the same fold as a Python function
  and scans, which is fine at its sizes.

Migration 0005 builds the indexes from frozen copies of the expressions below (``nhanh_document`` …);
tests/test_admin_speed.py checks on PostgreSQL that these queries are answered from those indexes, so a
change here that no longer matches them fails there.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import F, Func, Q, QuerySet, TextField, Value
from django.db.models.functions import Concat, Reverse

from jobs.bulk import among  # ids as one array parameter (AnyOf) or a subquery

from .phones import MOBILE_RENUMBERING_2018, normalize_phone

FOLD_FUNCTION = "shopbridge_fold"
MIN_CHUNK = 3  # pg_trgm extracts no trigram from fewer characters
MIN_PHONE_DIGITS = 3
# Matching ids up to this many are fetched first and the page filters on the list (a primary-key / foreign
# key index lookup): the planner cannot know how many customers share "0912", and guessing wrong makes it walk
# the whole list in display order probing each row. More matches than this are dense enough for that walk.
MATERIALIZE_IDS = 5000
EXACT_COUNT_BELOW = 10_000
_MAX_ID = 2**63 - 1

# --- the fold ---------------------------------------------------------------------------------------------
_D_STROKE = str.maketrans({"đ": "d", "Đ": "d"})


def fold(text: str) -> str:
    """Python twin of ``shopbridge_fold()``: lower case, no accents, đ → d."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_D_STROKE))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


class Fold(Func):
    """``shopbridge_fold(expr)``: PostgreSQL's from migration 0005; on SQLite, :func:`fold` registered on
    the connection the first time a query uses it."""

    function = FOLD_FUNCTION
    output_field = TextField()

    def as_sqlite(self, compiler, connection, **extra):
        connection.ensure_connection()
        raw = connection.connection
        if getattr(connection, "_shopbridge_fold_on", None) is not raw:  # once per (re)connection
            raw.create_function(FOLD_FUNCTION, 1, lambda s: None if s is None else fold(s), deterministic=True)
            connection._shopbridge_fold_on = raw
        return self.as_sql(compiler, connection, **extra)


# --- the search documents (also the index expressions of migration 0005) -----------------------------------
_SEP = Value(" | ")  # between fields, so a chunk cannot match across two of them


def nhanh_document():
    return Fold(Concat(F("name"), _SEP, F("email"), output_field=TextField()))


def shopify_document():
    # Vietnamese order (family name first) and the Western order Shopify's forms suggest.
    return Fold(Concat(F("last_name"), Value(" "), F("first_name"), _SEP, F("first_name"), Value(" "),
                       F("last_name"), _SEP, F("email"), output_field=TextField()))


def phone_suffix_key():
    """``reverse(e164)``: a suffix search becomes an indexable prefix search."""
    return Reverse("e164")


# --- parsing a term ------------------------------------------------------------------------------------------
_PHONE_TOKEN = re.compile(r"^[+\d().\-/]*\d[+\d().\-/]*$")
_SEPARATORS = re.compile(r"[\s().\-/]")


@dataclass(frozen=True)
class PhoneQuery:
    """What a run of digits can mean: an exact E.164, an E.164 prefix, the last digits, an id."""

    typed: str
    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    record_id: int | None = None


@dataclass(frozen=True)
class ParsedTerm:
    phones: tuple[PhoneQuery, ...]
    texts: tuple[str, ...]  # folded chunks

    @property
    def empty(self) -> bool:
        return not self.phones and not self.texts


def parse_term(term: str) -> ParsedTerm:
    """Split ``term`` into phone runs (consecutive numeric tokens, e.g. ``0912 345 678``) and text chunks."""
    phones: list[PhoneQuery] = []
    words: list[str] = []
    run: list[str] = []

    def close_run():
        if not run:
            return
        typed = " ".join(run)
        digits = sum(c.isdigit() for c in typed)
        if digits >= MIN_PHONE_DIGITS:
            phones.append(phone_query(typed))
        elif typed.isdigit():
            phones.append(PhoneQuery(typed, record_id=int(typed)))  # "2", "10": too short for a phone: an id
        else:
            words.extend(run)
        run.clear()

    for token in term.split():
        if _PHONE_TOKEN.match(token):
            run.append(token)
        else:
            close_run()
            words.append(token.strip("\"'"))
    close_run()
    return ParsedTerm(tuple(phones), tuple(_chunks([fold(w) for w in words if w])))


def _chunks(words: list[str]) -> list[str]:
    """Glue words shorter than MIN_CHUNK to the previous chunk (or the next one when first)."""
    chunks: list[str] = []
    pending = ""
    for word in words:
        if pending:
            word, pending = f"{pending} {word}", ""
        if len(word) >= MIN_CHUNK:
            chunks.append(word)
        elif chunks:
            chunks[-1] = f"{chunks[-1]} {word}"
        else:
            pending = word
    if pending:
        chunks.append(pending)  # the whole term is one short word: a plain scan, nothing to glue it to
    return chunks


def phone_query(typed: str) -> PhoneQuery:
    compact = _SEPARATORS.sub("", typed)
    exact = normalize_phone(typed)
    record_id = int(compact) if compact.isdigit() and int(compact) <= _MAX_ID else None
    if exact is not None:
        return PhoneQuery(typed, exact=exact, record_id=record_id)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if compact.startswith("+"):
        return PhoneQuery(typed, prefix=compact, record_id=record_id)
    if compact.startswith("0"):
        old = compact[:4]
        if old in MOBILE_RENUMBERING_2018 and len(compact) >= 4:
            return PhoneQuery(typed, prefix="+84" + MOBILE_RENUMBERING_2018[old][1:] + compact[4:])
        return PhoneQuery(typed, prefix="+84" + compact[1:])
    # Digits without 0 or +84: most often the last digits of a number ("345678"); "84…" may also be the
    # country code typed without "+".
    prefix = "+" + compact if compact.startswith("84") else None
    return PhoneQuery(typed, prefix=prefix, suffix=compact, record_id=record_id)


# --- querysets ------------------------------------------------------------------------------------------------
def _phone_condition(phone: PhoneQuery) -> Q | None:
    q = Q()
    if phone.exact:
        q |= Q(e164=phone.exact)
    if phone.prefix:
        q |= Q(e164__startswith=phone.prefix)
    return q or None


def _customer_ids_by_phone(customer_model, phone_model, id_field: str, phone: PhoneQuery) -> QuerySet:
    """Customer pks with a phone matching ``phone`` (one indexed lookup per meaning, UNIONed so that each
    keeps its index), plus the customer whose upstream id is those digits."""
    parts: list[QuerySet] = []
    condition = _phone_condition(phone)
    if condition is not None:
        parts.append(phone_model.objects.filter(condition).values_list("customer_id", flat=True))
    if phone.suffix:
        parts.append(phone_model.objects.alias(_rev=phone_suffix_key())
                     .filter(_rev__startswith=phone.suffix[::-1]).values_list("customer_id", flat=True))
    if phone.record_id is not None:
        parts.append(customer_model.objects.filter(**{id_field: phone.record_id}).values_list("pk", flat=True))
    if not parts:
        return customer_model.objects.none().values_list("pk", flat=True)
    first, *rest = [p.order_by() for p in parts]
    return first.union(*rest) if rest else first


def nhanh_ids(phone: PhoneQuery) -> QuerySet:
    from .models import NhanhCustomer, NhanhCustomerPhone

    return _customer_ids_by_phone(NhanhCustomer, NhanhCustomerPhone, "nhanh_id", phone)


def shopify_ids(phone: PhoneQuery) -> QuerySet:
    from .models import ShopifyCustomer, ShopifyCustomerPhone

    return _customer_ids_by_phone(ShopifyCustomer, ShopifyCustomerPhone, "shopify_id", phone)


def _text_filter(queryset: QuerySet, document, chunk: str) -> QuerySet:
    return queryset.alias(_search_doc=document).filter(_search_doc__contains=chunk)


def search_nhanh_customers(queryset: QuerySet, term: str) -> QuerySet:
    parsed = parse_term(term)
    for phone in parsed.phones:
        queryset = queryset.filter(among("pk", materialize(nhanh_ids(phone))))
    for chunk in parsed.texts:
        queryset = _text_filter(queryset, nhanh_document(), chunk)
    return queryset


def search_shopify_customers(queryset: QuerySet, term: str) -> QuerySet:
    parsed = parse_term(term)
    for phone in parsed.phones:
        queryset = queryset.filter(among("pk", materialize(shopify_ids(phone))))
    for chunk in parsed.texts:
        queryset = _text_filter(queryset, shopify_document(), chunk)
    return queryset


def search_mappings(queryset: QuerySet, term: str) -> QuerySet:
    """Mappings whose Nhanh customer or whose Shopify customer matches the whole ``term``. Each side is
    searched on its own indexes and its ids fetched first; when a side matches thousands of customers
    ("nguyen"), the page instead walks the mappings newest first and tests each row's joined customers,
    which finds a page of such common matches after a few hundred rows."""
    from .models import NhanhCustomer, ShopifyCustomer

    parsed = parse_term(term)
    nhanh = _matching_ids(NhanhCustomer, search_nhanh_customers, nhanh_ids, parsed, term)
    shopify = _matching_ids(ShopifyCustomer, search_shopify_customers, shopify_ids, parsed, term)
    if isinstance(nhanh, list) and isinstance(shopify, list):
        # One indexed lookup per side, UNIONed: "nhanh IN (…) OR shopify IN (…)" over the whole table is a
        # sequential scan of every mapping for the count (PostgreSQL cannot use two indexes for an OR of
        # two long lists it estimates poorly); each side alone probes its key's index.
        model = queryset.model
        by_side = (model.objects.filter(among("nhanh_customer_id", nhanh)).order_by().values("pk")
                   .union(model.objects.filter(among("shopify_customer_id", shopify)).order_by().values("pk")))
        return queryset.filter(pk__in=by_side)
    by_nhanh, by_shopify = Q(), Q()
    for phone in parsed.phones:
        by_nhanh &= Q(nhanh_customer_id__in=nhanh_ids(phone))
        by_shopify &= Q(shopify_customer_id__in=shopify_ids(phone))
    queryset = queryset.alias(_nhanh_doc=_joined(nhanh_document(), "nhanh_customer__"),
                              _shopify_doc=_joined(shopify_document(), "shopify_customer__"))
    for chunk in parsed.texts:
        by_nhanh &= Q(_nhanh_doc__contains=chunk)
        by_shopify &= Q(_shopify_doc__contains=chunk)
    queryset = queryset.filter(by_nhanh | by_shopify)
    # Counting these exactly would test every mapping's two customers; the page itself stops after 50.
    queryset.query.count_by_estimate = True  # kept by the clones the changelist makes (Query.clone copies it)
    return queryset


def _joined(expression, prefix: str):
    """``expression`` with its field references seen through the relation ``prefix``."""
    expression = expression.copy()
    expression.set_source_expressions([_joined(e, prefix) if not isinstance(e, F) else F(prefix + e.name)
                                       for e in expression.get_source_expressions()])
    return expression


def search_ambiguous_matches(queryset: QuerySet, term: str) -> QuerySet:
    """Ambiguous matches of the Nhanh customers matching ``term``."""
    from .models import NhanhCustomer

    nhanh = _matching_ids(NhanhCustomer, search_nhanh_customers, nhanh_ids, parse_term(term), term)
    return queryset.filter(among("nhanh_customer_id", nhanh))


def _matching_ids(model, search_customers, ids_by_phone, parsed: ParsedTerm, term: str) -> list | QuerySet:
    """Ids of the customers of ``model`` matching ``term``, materialized when few."""
    if len(parsed.phones) == 1 and not parsed.texts:  # the usual phone lookup: straight from the phone table
        return materialize(ids_by_phone(parsed.phones[0]))
    return materialize(search_customers(model.objects.order_by(), term).values_list("pk", flat=True),
                       estimate_first=bool(parsed.texts))


def materialize(ids: QuerySet, *, estimate_first: bool = False) -> list | QuerySet:
    """The ids themselves when there are at most MATERIALIZE_IDS of them (one indexed query), else the
    subquery. ``estimate_first``: ask the planner before fetching (worth it for trigram searches, whose
    estimates are close; phone prefixes are estimated poorly and are rarely that common)."""
    if (estimate_first and connections[ids.db].vendor == "postgresql"
            and _explain_rows(ids) > 2 * MATERIALIZE_IDS):
        return ids  # clearly many (trigram estimates are close): don't fetch thousands just to find out
    found = list(ids[:MATERIALIZE_IDS + 1])
    return found if len(found) <= MATERIALIZE_IDS else ids


# --- counting ---------------------------------------------------------------------------------------------------
class EstimatedCountPaginator(Paginator):
    """An exact count for small results; on PostgreSQL, the planner's estimate once it says ≥ 10,000 rows
    (COUNT(*) of 200,000 rows on every page view is wasted work, and nobody pages to the exact end)."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return queryset.count()
        estimate = planner_rows(queryset)
        if estimate >= EXACT_COUNT_BELOW or getattr(queryset.query, "count_by_estimate", False):
            return estimate
        # Bounded: when the planner underestimated a common match, counting stops at EXACT_COUNT_BELOW.
        return queryset.order_by()[:EXACT_COUNT_BELOW].count()


def planner_rows(queryset: QuerySet) -> int:
    """PostgreSQL's estimate of how many rows ``queryset`` returns (EXPLAIN, no execution)."""
    return _explain_rows(queryset.order_by().values("pk"))


def _explain_rows(queryset: QuerySet) -> int:
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. pk IN () after a phone nobody has
        return 0
    with connections[queryset.db].cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
