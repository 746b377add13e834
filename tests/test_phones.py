"""Tests for customers.phones: table-driven, no Django needed (run with ``-p no:django``)."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from customers import phones
from customers.phones import MOBILE_RENUMBERING_2018, extract_phones, normalize_phone

# The official 2018 table, copied here on purpose so an accidental edit of the module constant fails a test.
OFFICIAL_2018 = [
    ("Viettel", "0162", "032"),
    ("Viettel", "0163", "033"),
    ("Viettel", "0164", "034"),
    ("Viettel", "0165", "035"),
    ("Viettel", "0166", "036"),
    ("Viettel", "0167", "037"),
    ("Viettel", "0168", "038"),
    ("Viettel", "0169", "039"),
    ("MobiFone", "0120", "070"),
    ("MobiFone", "0121", "079"),
    ("MobiFone", "0122", "077"),
    ("MobiFone", "0126", "076"),
    ("MobiFone", "0128", "078"),
    ("VinaPhone", "0123", "083"),
    ("VinaPhone", "0124", "084"),
    ("VinaPhone", "0125", "085"),
    ("VinaPhone", "0127", "081"),
    ("VinaPhone", "0129", "082"),
    ("Vietnamobile", "0186", "056"),
    ("Vietnamobile", "0188", "058"),
    ("Gmobile", "0199", "059"),
]

M = "+84912345678"  # the number most rows below spell in some way

VALID = [
    # How people type a Vietnamese mobile.
    ("0912345678", M),
    ("0912 345 678", M),
    ("0912.345.678", M),
    ("0912-345-678", M),
    ("091 234 5678", M),
    ("  0912345678  ", M),
    ("0912 345 678\u00a0", M),  # no-break space from a web form
    ("0912\u2013345\u2013678", M),  # en dash from a word processor
    ("+84 912 345 678", M),
    ("+84912345678", M),
    ("84912345678", M),
    ("84 912 345 678", M),
    ("(+84) 91-234-5678", M),
    ("(84) 912 345 678", M),
    ("0084 912 345 678", M),
    ("0084912345678", M),
    ("+84 (0) 912 345 678", M),  # trunk 0 kept after the country code
    ("+840912345678", M),
    ("84 0912345678", M),
    ("912345678", M),  # leading zero lost by a spreadsheet
    ("912 345 678", M),
    # Full-width digits and plus (IME input).
    ("０９１２３４５６７８", M),
    ("０９１２ ３４５ ６７８", M),
    ("＋８４ ９１２ ３４５ ６７８", M),
    # Every current mobile block.
    ("0321234567", "+84321234567"),
    ("0398765432", "+84398765432"),
    ("0561234567", "+84561234567"),
    ("0581234567", "+84581234567"),
    ("0591234567", "+84591234567"),
    ("0701234567", "+84701234567"),
    ("0761234567", "+84761234567"),
    ("0771234567", "+84771234567"),
    ("0781234567", "+84781234567"),
    ("0791234567", "+84791234567"),
    ("0812345678", "+84812345678"),
    ("0842345678", "+84842345678"),
    ("842345678", "+84842345678"),  # lost zero on a VinaPhone 084 number, not a country code
    ("0862345678", "+84862345678"),
    ("0882345678", "+84882345678"),
    ("0901234567", "+84901234567"),
    ("0987.654.321", "+84987654321"),
    ("0991234567", "+84991234567"),
    # Landlines (area code + 8 digits since the 2017 landline change).
    ("024 3825 1234", "+842438251234"),
    ("028 3829 1234", "+842838291234"),
    ("(028) 3829 1234", "+842838291234"),
    ("0236 3821 234", "+842363821234"),
    ("+84 24 3825 1234", "+842438251234"),
    ("+84-(0)28-3829-1234", "+842838291234"),
    ("2438251234", "+842438251234"),  # landline that lost its zero
    # Foreign numbers keep their own country code.
    ("+1 415 555 2671", "+14155552671"),
    ("+1 (415) 555-2671", "+14155552671"),
    ("001 415 555 2671", "+14155552671"),  # IDD 00 dialled from Vietnam
    ("+65 6123 4567", "+6561234567"),
    ("+44 20 7946 0958", "+442079460958"),
    # A number followed by a note.
    ("0912345678 (Lan)", M),
    ("0912 345 678 - chị Lan", M),
    ("0912345678 Lan", M),
    ("0912345678, chị Lan", M),
    ("0912345678 [zalo]", M),
    ("0912345678Lan", M),  # letters after the digits are a note, not part of the number
    ("+84 912 345 678 (nhà riêng)", M),
    ("0912345678 ext. 12", M),  # E.164 has no extension
]

# Renumbered mobiles: one row per entry of the official table, in the 11-digit form people wrote then.
RENUMBERED = [(f"{old} 123 4567", f"+84{new[1:]}1234567") for _, old, new in OFFICIAL_2018] + [
    ("01628 123 456", "+84328123456"),
    ("01628123456", "+84328123456"),
    ("0162.812.3456", "+84328123456"),
    ("+84 1628123456", "+84328123456"),
    ("+84 162 812 3456", "+84328123456"),
    ("(+84) 162-812-3456", "+84328123456"),
    ("841628123456", "+84328123456"),
    ("0084 1628 123 456", "+84328123456"),
    ("+84 01628 123 456", "+84328123456"),
    ("1628123456", "+84328123456"),  # old form and the leading zero lost too
    ("01991234567", "+84591234567"),
    ("01628123456 (Lan)", "+84328123456"),
]

INVALID = [
    # Blank and junk.
    (None, "none"),
    ("", "empty"),
    ("   ", "blank"),
    ("abc", "letters"),
    ("N/A", "placeholder"),
    ("+", "lone plus"),
    ("---", "separators only"),
    ("123", "too short"),
    ("0000000000", "zeros"),
    ("091234567", "one digit short"),
    ("09123456789", "one digit long"),
    ("0912345678901", "too long"),
    ("+84", "country code only"),
    ("+84 12", "country code and junk"),
    ("0891234567", "unassigned 089 block"),
    ("0521234567", "unassigned 052 block"),
    ("0438251234", "pre-2017 Hanoi landline: not in the mobile table, never guess"),
    ("+0912345678", "plus without a country code"),
    ("+999 1234 5678", "unknown country code"),
    # Pre-2018 shapes that do not fit the table.
    ("01301234567", "0130 was never a mobile prefix"),
    ("0162812345", "old prefix, one digit short"),
    ("016281234567", "old prefix, one digit long"),
    # Lost zero is only restored for mobiles and landlines.
    ("1992000", "service number without a 0"),
    ("1800 1234", "toll-free number is not a customer phone"),
    ("6912345", "too short for a mobile that lost its zero"),
    # More than one number in the field: do not pick one.
    ("0912345678 / 0987654321", "two numbers"),
    ("0912345678, 0987654321", "two numbers, comma"),
    ("0912345678 0987654321", "two numbers, space"),
    ("0912345678 - 0987654321", "two numbers, dash"),
    # Letters inside the digits are never read as digits.
    ("09I2345678", "capital I for 1"),
    ("09l2345678", "lower-case L for 1"),
    ("O912345678", "letter O for 0"),
    ("0912 34S 678", "S for 5"),
    ("84912ABC345678", "letters between digits"),
    ("1-800-FLOWERS", "vanity number"),
    ("0912FLOWER", "vanity tail leaves a too-short number"),
    ("Lan 0912345678", "label before the number: use extract_phones for free text"),
    ("0912345678 #2", "unexplained digits after the number"),
]


@pytest.fixture(autouse=True)
def _fresh_cache():
    normalize_phone.cache_clear()
    yield
    normalize_phone.cache_clear()


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_formats(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), RENUMBERED)
def test_2018_renumbering(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(("raw", "why"), INVALID, ids=[why for _, why in INVALID])
def test_invalid_returns_none(raw, why):
    assert normalize_phone(raw) is None


def test_renumbering_table_is_the_official_one():
    assert {old: new for _, old, new in OFFICIAL_2018} == MOBILE_RENUMBERING_2018


@pytest.mark.parametrize(("carrier", "old", "new"), OFFICIAL_2018)
def test_renumbering_never_overrides_a_valid_number(carrier, old, new):
    # The table is applied only because the old form is invalid today and the new one is a mobile.
    old_number = phonenumbers.parse(f"{old}1234567", "VN")
    new_number = phonenumbers.parse(f"{new}1234567", "VN")
    assert not phonenumbers.is_valid_number(old_number)
    assert phonenumbers.number_type(new_number) == phonenumbers.PhoneNumberType.MOBILE


def test_normalizer_is_memoized_within_a_bound():
    assert normalize_phone("0912 345 678") == normalize_phone("0912 345 678") == M
    assert normalize_phone.cache_info().hits == 1
    # Bounded, so a pull streaming 200k numbers keeps flat memory (bench/pull_customers shows it).
    assert normalize_phone.cache_info().maxsize is not None and normalize_phone.cache_info().maxsize <= 20_000


def test_rejects_non_string_input():
    with pytest.raises(TypeError):
        normalize_phone(912345678)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # No number.
        (None, []),
        ("", []),
        ("Giao giờ hành chính, gọi trước khi giao", []),
        ("Giá 1.250.000đ, giao 12/06/2024, đơn #100234", []),
        ("đơn #912345678", []),  # without 0 or +84 a 9-digit run in prose is not taken for a phone
        ("mã 1628123456", []),
        ("tổng đài 1800 1234", []),
        ("09I2345678", []),
        ("chồng0987654321", []),  # glued to a word: phonenumbers' VALID rule
        # One number.
        ("Lan: 0912 345 678", [M]),
        ("sđt:0912345678", [M]),
        ("Gọi (+84) 91-234-5678 trước 5h", [M]),
        ("tel: 0084 912 345 678.", [M]),
        ("０９１２ ３４５ ６７８ (chị Lan)", [M]),
        ("nhà: 024 3825 1234", ["+842438251234"]),
        ("sđt cũ 01628 123 456 giao giờ HC", ["+84328123456"]),
        ("cũ: +84 1628 123 456.", ["+84328123456"]),
        ("số 0128 123 4567", ["+84781234567"]),
        # A digit glued to the label before the number (phonenumbers alone reads "2 0837 654 332").
        ("sdt2 0837 654 332", ["+84837654332"]),
        ("SĐT khác: 0912.345.678", [M]),
        ("mã 84123456789", []),  # starts like +84 but is no Vietnamese number
        # Two numbers.
        ("Lan: 0912 345 678, chồng 0987.654.321", [M, "+84987654321"]),
        ("0912345678/0987654321", [M, "+84987654321"]),
        ("0912345678,0987654321", [M, "+84987654321"]),
        ("sđt1 0912-345-678 sđt2 +84 987 654 321", [M, "+84987654321"]),
        ("call +1 415 555 2671 or 024 3825 1234", ["+14155552671", "+842438251234"]),
        ("01628123456 rồi 0912345678", ["+84328123456", M]),
        # Duplicates, kept once in order of first appearance.
        ("0987654321; Lan 0912 345 678, lại 0912.345.678 hoặc +84912345678", ["+84987654321", M]),
        ("cũ 01628 123 456, mới 0328 123 456", ["+84328123456"]),
    ],
)
def test_extract_phones(text, expected):
    assert extract_phones(text) == expected


def _random_valid_mobiles(count: int, seed: int = 2018) -> list[str]:
    """``count`` distinct national significant numbers (9 digits) phonenumbers calls valid VN mobiles."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < count:
        nsn = rng.choice("35789") + f"{rng.randrange(10**8):08d}"
        if phonenumbers.is_valid_number(phonenumbers.PhoneNumber(country_code=84, national_number=int(nsn))):
            found[nsn] = None
    return list(found)


def test_fast_path_agrees_with_phonenumbers_on_valid_mobiles():
    fast_hits = 0
    for nsn in _random_valid_mobiles(1000):
        expected = "+84" + nsn
        for shape in ("0" + nsn, "84" + nsn, "+84" + nsn):
            fast = phones._fast_path(shape)
            assert fast == expected, shape
            assert phones._slow_path(shape) == expected, shape
            reference = phonenumbers.parse(shape, "VN")
            assert phonenumbers.is_valid_number(reference)
            assert phonenumbers.format_number(reference, phonenumbers.PhoneNumberFormat.E164) == expected
            fast_hits += 1
    assert fast_hits == 3000


def test_fast_path_never_accepts_what_phonenumbers_rejects():
    # Every 3-digit block a fast-path shape can start with, valid or not: the fast path may decline
    # (returning None hands over to the slow path) but must never disagree.
    for block in range(300, 1000):
        nsn = f"{block}123456"
        for shape in ("0" + nsn, "84" + nsn, "+84" + nsn):
            fast = phones._fast_path(shape)
            if fast is not None:
                assert fast == phones._slow_path(shape), shape


def test_normalize_uses_fast_path_for_plain_mobiles(monkeypatch):
    def boom(compact):  # pragma: no cover - only runs if the fast path missed
        raise AssertionError(f"slow path used for {compact}")

    monkeypatch.setattr(phones, "_slow_path", boom)
    for raw in ("0912 345 678", "+84 912-345-678", "84.912.345.678", "(+84) 91-234-5678"):
        assert normalize_phone(raw) == M
