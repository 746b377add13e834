"""Shopify's search syntax for the sandbox's ``customers(query:)``: parse once, compile to a predicate over
the sandbox's customer dicts, and tell the pager which id / timestamp range the query is confined to.

Grammar (shopify.dev "search syntax"): terms separated by whitespace, implicit AND, ``AND`` / ``OR`` /
``NOT`` connectives, ``-`` negation, parentheses, ``field:value`` with comparators ``:>`` ``:>=`` ``:<``
``:<=``, single or double quotes, ``field:*`` = has any value, ``value*`` = prefix. Precedence
NOT > AND > OR (the usual one; shopify.dev does not state it). A bare date on a date field matches that
whole UTC day (a real shop uses its own time zone). Unknown fields and unreadable values are dropped with a
warning, as Shopify does (``extensions.search[].warnings``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from integrations.sandbox.population import ASCII

Customer = dict
Predicate = Callable[[Customer], bool]

COMPARATORS = (">=", "<=", ">", "<")
FIELD_RE = re.compile(r"^([a-z_]+):(.*)$", re.S)
DAY = 86_400


def fold(text: str) -> str:
    """Case- and accent-insensitive form, so "nguyen" finds "Nguyễn"."""
    return text.casefold().translate(ASCII)


def phone_digits(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return "84" + digits[1:] if digits.startswith("0") else digits


# --- parsing -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    field: str | None  # None = free text
    op: str  # ":", ">", ">=", "<", "<="
    value: str


@dataclass(frozen=True)
class Not:
    child: object


@dataclass(frozen=True)
class And:
    children: tuple


@dataclass(frozen=True)
class Or:
    children: tuple


def _tokens(query: str) -> list[str]:
    """Split into "(", ")" and terms; quotes may open anywhere in a term (``updated_at:>='2026-…'``)."""
    tokens, i, n = [], 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(ch)
            i += 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in "()":
                if query[i] in "'\"":
                    close = query.find(query[i], i + 1)
                    i = n if close < 0 else close + 1
                else:
                    i += 1
            tokens.append(query[start:i])
    return tokens


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _term(token: str) -> object:
    negated = token.startswith("-") and len(token) > 1
    body = token[1:] if negated else token
    match = FIELD_RE.match(body)
    if match:
        name, rest = match.groups()
        op = next((c for c in COMPARATORS if rest.startswith(c)), "")
        term = Term(name, op or ":", _unquote(rest[len(op):]))
    else:
        term = Term(None, ":", _unquote(body))
    return Not(term) if negated else term


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        self.pos += 1
        return self.tokens[self.pos - 1]

    def parse_or(self):
        children = [self.parse_and()]
        while self.peek() == "OR":
            self.take()
            children.append(self.parse_and())
        children = [c for c in children if c is not None]
        return children[0] if len(children) == 1 else (Or(tuple(children)) if children else None)

    def parse_and(self):
        children = []
        while (word := self.peek()) not in (None, ")", "OR"):
            if word == "AND":
                self.take()
                continue
            children.append(self.parse_unary())
        children = [c for c in children if c is not None]
        return children[0] if len(children) == 1 else (And(tuple(children)) if children else None)

    def parse_unary(self):
        word = self.take()
        if word == "NOT":
            child = self.parse_unary() if self.peek() not in (None, ")") else None
            return Not(child) if child is not None else None
        if word == "(":
            inner = self.parse_or()
            if self.peek() == ")":
                self.take()
            return inner
        return _term(word)


def parse(query: str | None):
    """The query as a tree of Term / Not / And / Or, or None for an empty query."""
    if not query or not query.strip():
        return None
    parser = _Parser(_tokens(query))
    tree = parser.parse_or()
    while parser.peek() is not None:  # a stray ")" ends a group early: keep reading what follows
        parser.take()
        rest = parser.parse_or()
        tree = rest if tree is None else (tree if rest is None else And((tree, rest)))
    return tree


# --- compiling -----------------------------------------------------------------------------------------
@dataclass
class CompiledQuery:
    predicate: Predicate | None  # None = every customer matches
    # Inclusive ranges the matches are confined to (None = open), from top-level AND terms only.
    bounds: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    email: str | None = None  # a top-level exact ``email:`` term, for an index lookup
    phone: str | None = None  # same for ``phone:`` (digits, 84… form)
    warnings: list[dict] = field(default_factory=list)


def _interval(op: str, low: int, high: int) -> tuple[int | None, int | None]:
    """The integers a comparator admits when the value itself spans [low, high]."""
    return {":": (low, high), ">": (high + 1, None), ">=": (low, None), "<": (None, low - 1),
            "<=": (None, high)}[op]


def _time_span(value: str) -> tuple[int, int] | None:
    value = value.strip()
    try:
        if len(value) == 10:
            start = int(datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC).timestamp())
            return start, start + DAY - 1
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = moment.timestamp()
    return math.ceil(seconds), math.floor(seconds)


def _number_span(value: str) -> tuple[int, int] | None:
    value = value.rsplit("/", 1)[-1]  # id:gid://shopify/Customer/123 works too
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return math.ceil(number), math.floor(number)


def _money_amount(customer: Customer) -> Decimal:
    return Decimal(customer["amountSpent"]["amount"])


# field → (kind, value of a customer). Kinds: "range" (int/time compare), "text" (case-insensitive equal,
# prefix with a trailing *), "tags" (any tag equal), "phone".
RANGE_FIELDS: dict[str, tuple[Callable[[str], tuple[int, int] | None], Callable[[Customer], object]]] = {
    "updated_at": (_time_span, lambda c: c["_updated"]),
    "created_at": (_time_span, lambda c: c["_created"]),
    "id": (_number_span, lambda c: c["_id"]),
    "orders_count": (_number_span, lambda c: int(c["numberOfOrders"])),
    "total_spent": (_number_span, _money_amount),
}
TEXT_FIELDS: dict[str, Callable[[Customer], str | None]] = {
    "email": lambda c: c["email"],
    "state": lambda c: c["state"],
    "first_name": lambda c: c["firstName"],
    "last_name": lambda c: c["lastName"],
    "city": lambda c: (c["defaultAddress"] or {}).get("city"),
    "country": lambda c: (c["defaultAddress"] or {}).get("countryCodeV2"),
}


def _text_matcher(getter: Callable[[Customer], str | None], wanted: str) -> Predicate:
    if wanted == "*":
        return lambda c: bool(getter(c))
    if wanted.endswith("*"):
        prefix = fold(wanted[:-1])
        return lambda c: fold(getter(c) or "").startswith(prefix)
    exact = fold(wanted)
    return lambda c: fold(getter(c) or "") == exact


def _tag_matcher(wanted: str) -> Predicate:
    wanted = fold(wanted)
    if wanted.endswith("*"):
        return lambda c: any(fold(t).startswith(wanted[:-1]) for t in c["tags"])
    return lambda c: any(fold(t) == wanted for t in c["tags"])


def _phone_matcher(wanted: str) -> Predicate:
    if wanted == "*":
        return lambda c: bool(c["phone"])
    digits = phone_digits(wanted)
    return lambda c: bool(c["phone"]) and phone_digits(c["phone"]) == digits


class _Compiler:
    def __init__(self):
        self.warnings: list[dict] = []

    def warn(self, term: Term, message: str) -> None:
        self.warnings.append({"field": term.field or "default", "message": message})

    def compile(self, node) -> Predicate | None:
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Not):
            inner = self.compile(node.child)
            return None if inner is None else (lambda c: not inner(c))
        parts = [p for p in (self.compile(child) for child in node.children) if p is not None]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        if isinstance(node, And):
            return lambda c: all(p(c) for p in parts)
        return lambda c: any(p(c) for p in parts)

    def term(self, term: Term) -> Predicate | None:
        if term.field is None:
            needle = fold(term.value)
            return (lambda c: needle in c["_text"]) if needle else None
        if term.field in RANGE_FIELDS:
            span = self.span(term)
            if span is None:
                return None
            low, high = span
            value_of = RANGE_FIELDS[term.field][1]
            return lambda c: (low is None or value_of(c) >= low) and (high is None or value_of(c) <= high)
        if term.field in TEXT_FIELDS:
            return _text_matcher(TEXT_FIELDS[term.field], term.value)
        if term.field == "phone":
            return _phone_matcher(term.value)
        if term.field == "tag":
            return _tag_matcher(term.value)
        if term.field == "tag_not":
            matcher = _tag_matcher(term.value)
            return lambda c: not matcher(c)
        self.warn(term, "Invalid search field for this query.")
        return None

    def span(self, term: Term) -> tuple[int | None, int | None] | None:
        parse_value = RANGE_FIELDS[term.field][0]
        value_span = parse_value(term.value)
        if value_span is None:
            self.warn(term, f"Invalid value for {term.field}: {term.value!r}.")
            return None
        return _interval(term.op, *value_span)


def compile_query(query: str | None) -> CompiledQuery:
    tree = parse(query)
    compiler = _Compiler()
    compiled = CompiledQuery(predicate=compiler.compile(tree) if tree is not None else None)
    compiled.warnings = compiler.warnings
    top_level = tree.children if isinstance(tree, And) else (tree,) if tree is not None else ()
    for node in top_level:
        if not isinstance(node, Term) or node.field is None:
            continue
        if node.field in ("updated_at", "created_at", "id"):
            span = _Compiler().span(node)
            if span is not None:
                compiled.bounds[node.field] = _intersect(compiled.bounds.get(node.field), span)
        elif node.field == "email" and not node.value.endswith("*"):
            compiled.email = fold(node.value)
        elif node.field == "phone" and node.value != "*":
            compiled.phone = phone_digits(node.value)
    return compiled


def _intersect(current, new):
    if current is None:
        return new
    lows = [v for v in (current[0], new[0]) if v is not None]
    highs = [v for v in (current[1], new[1]) if v is not None]
    return (max(lows) if lows else None, min(highs) if highs else None)
