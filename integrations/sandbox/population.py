"""Deterministic generated people that both the Nhanh and the Shopify sandboxes draw from.

Nothing is held in memory per person: customer ``i`` is computed from ``(seed, i)`` on demand, so a
sandbox of 200,000 customers costs no more memory than one of 200.

Who is who:
- Nhanh customer ``i`` is person ``i``.
- Shopify customer ``j`` is, for the first ``overlap`` share, the Nhanh person ``(j * STRIDE) % n_nhanh``
  (a permutation, so each such person appears once in Shopify), otherwise a Shopify-only person.
- Phones are unique per person. Ambiguity is planted on purpose: some Shopify-only customers write a
  shared family phone (another person's) in their address, and some Nhanh customers are the same
  person registered twice (a duplicate under another name).
- Some people have no usable phone (blank or junk).

Each customer also exposes the canonical E.164 phones behind what was rendered, so tests can compute
the true match without our normalizer.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
          "Ngô", "Dương", "Lý"]
MIDDLE = ["Văn", "Thị", "Hữu", "Đức", "Minh", "Ngọc", "Thanh", "Quốc", "Thu", "Hoài", "Gia", "Bảo", "Kim"]
GIVEN = ["An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hoa", "Hùng", "Hương", "Khánh", "Lan",
         "Linh", "Long", "Mai", "Nam", "Nga", "Ngân", "Phúc", "Phương", "Quân", "Quỳnh", "Sơn", "Tâm", "Thảo",
         "Trang", "Trung", "Tú", "Tuấn", "Vy", "Yến"]
ASCII = str.maketrans("ăâđêôơưàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ",
                      "aadeoouaaaaaaaaaaaaaaaeeeeeeeeeeiiiiiooooooooooooooouuuuuuuuuuyyyyy")
CITIES = [("Hà Nội", "HN", "100000"), ("TP Hồ Chí Minh", "SG", "700000"), ("Đà Nẵng", "DN", "550000"),
          ("Hải Phòng", "HP", "180000"), ("Cần Thơ", "CT", "900000"), ("Huế", "TTH", "530000"),
          ("Nha Trang", "KH", "650000"), ("Biên Hòa", "DNA", "810000")]
STREETS = ["Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Hai Bà Trưng", "Lý Thường Kiệt", "Phan Đình Phùng",
           "Điện Biên Phủ", "Cách Mạng Tháng 8", "Nguyễn Huệ", "Bạch Đằng"]
# Primary and secondary phones use disjoint prefixes, so a person's second phone never equals anyone's
# first; within a prefix set, the 7 digits are a bijection of the person number.
PRIMARY_PREFIXES = ["032", "033", "034", "035", "036", "037", "038", "039", "070", "076", "077", "078",
                    "079", "081", "082", "083", "084", "085", "090", "091", "093", "094", "096", "097", "098"]
# (Not 089: phonenumbers knows blocks of it as unallocated; every 7-digit tail of these is valid.)
SECONDARY_PREFIXES = ["086", "087", "088", "056", "058", "059"]
# 2018 renumbering, new → old, to render some phones the way people still type them.
OLD_PREFIX = {"032": "0162", "033": "0163", "034": "0164", "035": "0165", "036": "0166", "037": "0167",
              "038": "0168", "039": "0169", "070": "0120", "079": "0121", "077": "0122", "076": "0126",
              "078": "0128", "083": "0123", "084": "0124", "085": "0125", "081": "0127", "082": "0129",
              "056": "0186", "058": "0188", "059": "0199"}
STRIDE = 7919  # prime: j -> (j * STRIDE) % n is a permutation when n is not a multiple of it
JUNK_PHONES = ["", "chưa có", "0000000000", "123", "n/a", "không"]


_MASK = (1 << 64) - 1


class FastRandom(random.Random):
    """random.Random's methods over splitmix64. Every generated row gets its own generator, and seeding
    a Mersenne Twister costs ~3 µs, more than generating the row; this one's seeding is free."""

    def seed(self, a=None, version=2):  # noqa: D102 - random.Random's documented hook
        self._state = (hash(a) if not isinstance(a, int) else a) & _MASK

    def getstate(self):
        return self._state

    def setstate(self, state):
        self._state = state

    def _next(self) -> int:
        self._state = z = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self._next() >> 11) * (1.0 / 9007199254740992.0)

    # One draw each (Random's versions loop over getrandbits; the modulo bias is irrelevant for test data).
    def choice(self, seq):
        return seq[self._next() % len(seq)]

    def randint(self, a: int, b: int) -> int:
        return a + self._next() % (b - a + 1)

    def randrange(self, start, stop=None, step=1):
        if stop is None:
            start, stop = 0, start
        return start + step * (self._next() % ((stop - start + step - 1) // step))

    def getrandbits(self, k: int) -> int:
        if k <= 64:
            return self._next() >> (64 - k) if k else 0
        return int.from_bytes(b"".join(self._next().to_bytes(8, "big") for _ in range((k + 63) // 64)),
                              "big") >> (-k % 64)


def _rng(seed: int, stream: str, i: int) -> random.Random:
    # The stream's number comes from its name, never from the order streams are first used in: the
    # server and a test computing the same row must get the same values whatever ran before.
    sid = zlib.crc32(stream.encode()) & 0xFF_FFFF
    return FastRandom((seed << 56) ^ (sid << 32) ^ i)


def _mobile(prefixes: list[str], p: int) -> str:
    digits = (p * 7_654_321 + 1_234_567) % 10_000_000
    return f"{prefixes[p % len(prefixes)]}{digits:07d}"


def e164(local10: str) -> str:
    return "+84" + local10[1:]


def render_phone(local10: str, rng: random.Random, *, note_name: str = "", in_prose: bool = False) -> str:
    """Write a 10-digit local mobile the way people type it. ``in_prose``: typed by hand into a note,
    so never the zero-less form a spreadsheet leaves behind in a phone column."""
    n = local10
    roll = rng.random()
    if roll < 0.30:
        return n
    if roll < 0.45:
        return f"{n[:4]} {n[4:7]} {n[7:]}"
    if roll < 0.58:
        return "+84" + n[1:]
    if roll < 0.66:
        return f"84-{n[1:4]}-{n[4:7]}-{n[7:]}"
    if roll < 0.73:
        return f"{n[:4]}.{n[4:7]}.{n[7:]}"
    if roll < 0.78:
        return f"(+84) {n[1:3]}-{n[3:6]}-{n[6:]}"
    if roll < 0.86 and n[:3] in OLD_PREFIX:
        old = OLD_PREFIX[n[:3]] + n[3:]
        return f"{old[:5]} {old[5:8]} {old[8:]}"
    if roll < 0.90 and not in_prose:
        return n[1:]  # leading zero lost in a spreadsheet
    if roll < 0.94 and note_name:
        return f"{n} ({note_name})"
    return f"+84 {n[1:4]} {n[4:7]} {n[7:]}"


@dataclass
class Person:
    number: int
    family: str
    middle: str
    given: str
    primary: str | None  # 10-digit local mobile, None = no usable phone
    secondary: str | None
    email_user: str
    city: tuple[str, str, str]
    street: str
    house: int
    gender: int
    birthday: str
    total_spent: int  # VND, lifetime
    orders: int

    @property
    def name(self) -> str:
        return f"{self.family} {self.middle} {self.given}"


@dataclass
class GeneratedCustomer:
    """One customer as an upstream would hold it, plus the canonical phones behind it (for tests)."""

    index: int
    person: Person
    phones_e164: list[str] = field(default_factory=list)
    fields: dict = field(default_factory=dict)


class Population:
    def __init__(self, *, seed: int = 1, nhanh_customers: int = 1000, shopify_customers: int | None = None,
                 overlap: float = 0.5, anchor: datetime | None = None):
        self.seed = seed
        self.n_nhanh = max(int(nhanh_customers), 0)
        self.n_shopify = self.n_nhanh if shopify_customers is None else max(int(shopify_customers), 0)
        self.overlap = overlap
        self.n_overlap = min(int(self.n_shopify * overlap), self.n_nhanh)
        # Timestamps are spread back from the anchor (the sandbox's start, to the minute).
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.anchor = anchor or now
        if self.n_nhanh and math.gcd(STRIDE, self.n_nhanh) != 1:
            raise ValueError(f"nhanh_customers must not be a multiple of {STRIDE}")

    # --- people ------------------------------------------------------------------------------
    @lru_cache(maxsize=4096)  # noqa: B019 - per-instance cache is the point; instances live as long as the server
    def person(self, p: int) -> Person:
        r = _rng(self.seed, "person", p)
        family, middle, given = r.choice(FAMILY), r.choice(MIDDLE), r.choice(GIVEN)
        no_phone = r.random() < 0.03
        primary = None if no_phone else _mobile(PRIMARY_PREFIXES, p)
        secondary = _mobile(SECONDARY_PREFIXES, p) if (not no_phone and r.random() < 0.15) else None
        ascii_given = given.lower().translate(ASCII)
        ascii_family = family.lower().translate(ASCII)
        spent_band = r.random()
        total = int(r.lognormvariate(15.2, 1.2)) // 1000 * 1000 if spent_band > 0.1 else 0
        return Person(
            number=p, family=family, middle=middle, given=given, primary=primary, secondary=secondary,
            email_user=f"{ascii_given}.{ascii_family}{p}", city=r.choice(CITIES), street=r.choice(STREETS),
            house=r.randint(1, 399), gender=r.choice([1, 2]),
            birthday=f"{r.randint(1960, 2005)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            total_spent=min(total, 2_000_000_000), orders=r.randint(0, 40),
        )

    @lru_cache(maxsize=8192)  # noqa: B019 - filters and rows ask for the same row's time in turn
    def updated_at(self, stream: str, i: int) -> datetime:
        """Most rows changed long ago; about 1 % in the last 24 h, so incremental pulls find some."""
        r = _rng(self.seed, stream + ":t", i)
        hours = r.expovariate(1 / 24.0) if r.random() < 0.01 else r.uniform(24, 24 * 730)
        return self.anchor - timedelta(hours=hours)

    # --- Nhanh -------------------------------------------------------------------------------
    def nhanh_person_number(self, i: int) -> int:
        return i

    def nhanh_duplicate_of(self, i: int) -> int | None:
        """Some Nhanh customers are a second registration of the previous person's phone."""
        return i - 1 if (i % 61 == 7 and i > 0) else None

    def nhanh_phones(self, i: int) -> tuple[str | None, list[str]]:
        """(local phone behind the mobile field or None, canonical E.164 list)."""
        dup = self.nhanh_duplicate_of(i)
        person = self.person(dup if dup is not None else i)
        if person.primary is None:
            return None, []
        return person.primary, [e164(person.primary)]

    # --- Shopify -----------------------------------------------------------------------------
    def shopify_person_number(self, j: int) -> int:
        if j < self.n_overlap:
            return (j * STRIDE) % self.n_nhanh
        return self.n_nhanh + j

    def shopify_family_phone(self, j: int) -> str | None:
        """A Shopify-only customer who wrote another (matched) person's phone in the address."""
        if j >= self.n_overlap and self.n_overlap and j % 53 == 0:
            twin = self.shopify_person_number(j % self.n_overlap)
            return self.person(twin).primary
        return None

    def shopify_twin_of_nhanh(self, i: int) -> int | None:
        """The Shopify index of Nhanh customer ``i``'s person, if that person shops online too."""
        if self.n_overlap == 0:
            return None
        inv = pow(STRIDE, -1, self.n_nhanh)
        j = (i * inv) % self.n_nhanh
        return j if j < self.n_overlap else None

    def shopify_phone_layout(self, j: int) -> dict[str, str | None]:
        """Where each phone of Shopify customer ``j`` is written (local 10-digit forms).

        Returns {"phone": ..., "address_phone": ..., "note_phone": ...}; ``phone`` is the unique
        customer phone (Shopify demands E.164 and uniqueness there), the others are free text.
        """
        person = self.person(self.shopify_person_number(j))
        r = _rng(self.seed, "shopify:layout", j)
        layout: dict[str, str | None] = {"phone": None, "address_phone": None, "note_phone": None}
        if person.primary:
            roll = r.random()
            if roll < 0.70:
                layout["phone"] = person.primary
            elif roll < 0.85:
                layout["address_phone"] = person.primary
            elif roll < 0.92:
                layout["note_phone"] = person.primary
            # else: Shopify knows no phone for this person
        if person.secondary:
            slot = "address_phone" if layout["address_phone"] is None else "note_phone"
            if layout[slot] is None:
                layout[slot] = person.secondary
            if layout["phone"] is None and r.random() < 0.5:
                layout["phone"], layout[slot] = person.secondary, layout["phone"]
        family = self.shopify_family_phone(j)
        if family:
            layout["address_phone"] = family
        return layout

    def shopify_phones(self, j: int) -> list[str]:
        layout = self.shopify_phone_layout(j)
        seen: list[str] = []
        for local in layout.values():
            if local and e164(local) not in seen:
                seen.append(e164(local))
        return seen
