"""Vietnamese phone number normalisation (E.164), built on ``phonenumbers``.

Pure Python on purpose: the sync jobs call it while upserting hundreds of thousands of customer rows,
so it must not need Django, and it must be fast for the common shapes.

Rules (never guess):
- A number without a country code is read as Vietnamese; ``+1 …``/``+65 …`` keep their own country.
- Mobiles still written in the pre-2018 11-digit form (``01628 123 456``) are moved to their new prefix.
- A leading zero lost by a spreadsheet (``912345678``) is restored, but only for a valid VN mobile or
  landline; short service numbers (``1800 …``, ``1992000``) written without ``0`` are not customer phones.
- Letters are never read as digits (``phonenumbers`` would turn ``1-800-FLOWERS`` into digits): text after
  the number is a note, a letter *between* digits makes the value invalid.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
from phonenumbers import Leniency, NumberParseException, PhoneNumber, PhoneNumberFormat, PhoneNumberType

__all__ = ["MOBILE_RENUMBERING_2018", "extract_phones", "normalize_phone"]

REGION = "VN"
_CC = 84

# Official table of the Sept-Nov 2018 move of 11-digit mobile prefixes to 10 digits (old -> new, both with
# the trunk 0). The 7 subscriber digits after the prefix stay the same: 0162 8123456 -> 032 8123456.
MOBILE_RENUMBERING_2018: dict[str, str] = {
    # Viettel
    "0162": "032",
    "0163": "033",
    "0164": "034",
    "0165": "035",
    "0166": "036",
    "0167": "037",
    "0168": "038",
    "0169": "039",
    # MobiFone
    "0120": "070",
    "0121": "079",
    "0122": "077",
    "0126": "076",
    "0128": "078",
    # VinaPhone
    "0123": "083",
    "0124": "084",
    "0125": "085",
    "0127": "081",
    "0129": "082",
    # Vietnamobile
    "0186": "056",
    "0188": "058",
    # Gmobile
    "0199": "059",
}

# Same table on national significant numbers (no trunk 0), which is what phonenumbers hands us.
_RENUMBER_NSN = {old[1:]: new[1:] for old, new in MOBILE_RENUMBERING_2018.items()}

# Separators people put inside a number: whitespace, . - ( ) / and the Unicode dashes and minus sign.
_SEPARATORS = " \t\r\n\u00a0.-()/\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_STRIP_SEPARATORS = str.maketrans("", "", _SEPARATORS)
_SEP_CLASS = "[" + re.escape(_SEPARATORS) + r"\s]"
# The leading phone-like part of a value: separators, at most one leading "+", then digits and separators.
_HEAD = re.compile(rf"{_SEP_CLASS}*(\+)?((?:[0-9]|{_SEP_CLASS})*)")
# What may follow that part: a note, i.e. optional punctuation/space and then a letter ("(Lan)", ", chị Lan").
_NOTE = re.compile(r"[^\w\s]*\s*([^\W\d_]+)(\d?)")

# The fast path checks the VN mobile pattern straight from phonenumbers' own metadata, so it cannot drift
# from is_valid_number when the library updates its ranges.
_VN_MOBILE_NSN = re.compile(
    phonenumbers.PhoneMetadata.metadata_for_region(REGION).mobile.national_number_pattern
)
_MOBILE_FIRST_DIGITS = frozenset("35789")

# Types a number may have when it was written with neither a trunk 0 nor a country code.
_LOST_ZERO_TYPES = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


@lru_cache(maxsize=16_384)  # bounded: a pull streams 200k+ numbers
def normalize_phone(raw: str | None) -> str | None:
    """Return ``raw`` as an E.164 string (``+84912345678``), or ``None`` if it is not one valid number."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise TypeError(f"normalize_phone() expects str or None, got {type(raw).__name__}")
    compact = _compact(raw)
    if compact is None:
        return None
    return _fast_path(compact) or _slow_path(compact)


# A Vietnamese number as people write it: 0 / 84 / +84 / 0084, then 8–10 more digits with separators;
# not glued to a letter or digit on either side.
_VN_WRITTEN = re.compile(r"(?<![\w+])(?:\+84|0084|84|0)(?:[ .\-]?\(?\d\)?){8,10}(?![\w])")


# Any decimal digit, as the matchers below read digits (``\d``: Unicode Nd, full-width digits included).
_ANY_DIGIT = re.compile(r"\d")


def extract_phones(text: str | None) -> list[str]:
    """Return every phone number written in free ``text`` as E.164, de-duplicated, in order of appearance."""
    if not text or not _ANY_DIGIT.search(text):
        # Most notes hold no digit at all ("Thích hàng mới về"), and no pass below can find a number without
        # one; phonenumbers' matcher costs ~0.2 ms a note even then (a pull's note column: most of its parse).
        return []
    # Numbers written the Vietnamese way (0…, 84…, +84…), each judged by normalize_phone. phonenumbers'
    # matcher reads a digit glued to a label as part of the number ("sdt2 0837 654 332" → "2 0837 654 332",
    # invalid) and drops it, so these are looked for on their own.
    written = [(m.start(), m.end(), e164) for m in _VN_WRITTEN.finditer(text)
               if (e164 := normalize_phone(m.group(0))) is not None]
    if written and len(_ANY_DIGIT.findall(text)) == sum(len(_ANY_DIGIT.findall(text, s, e)) for s, e, _ in written):
        # Every digit is inside a valid number written that way: the matchers below could only find those
        # same numbers again (~0.25 ms a note: most of a customer pull's parse time).
        return _in_order(written)
    spans: list[tuple[int, int, str]] = list(written)
    for match in phonenumbers.PhoneNumberMatcher(text, REGION, leniency=Leniency.VALID):
        # In prose a bare "912345678" is more likely an order number than a phone that lost its 0.
        if not _written_without_prefix(match.raw_string, match.number):
            spans.append((match.start, match.end, _e164(match.number)))
    # Pre-2018 11-digit mobiles are invalid today, so the VALID matcher skips them; look for them among
    # the merely possible numbers and keep those the renumbering table turns into valid ones.
    for match in phonenumbers.PhoneNumberMatcher(text, REGION, leniency=Leniency.POSSIBLE):
        number = match.number
        if phonenumbers.is_valid_number(number) or _written_without_prefix(match.raw_string, number):
            continue  # valid ones were judged by the VALID pass (e.g. rejected when glued to letters)
        if _touches_letter(text, match.start, match.end):
            continue  # the VALID leniency rule, which POSSIBLE does not apply
        renumbered = _renumber_2018(number)
        if renumbered is not None:
            spans.append((match.start, match.end, _e164(renumbered)))

    return _in_order(spans)


def _in_order(spans: list[tuple[int, int, str]]) -> list[str]:
    result: list[str] = []
    last_end = -1
    for start, end, e164 in sorted(spans):
        if start < last_end:
            continue  # the passes may see overlapping candidates; the earlier one wins
        last_end = end
        if e164 not in result:
            result.append(e164)
    return result


def _compact(raw: str) -> str | None:
    """Reduce the leading phone-like part of ``raw`` to ``[+]digits``; None if letters sit between digits."""
    # Cheap path for the usual value: ASCII digits and separators only.
    compact = raw.translate(_STRIP_SEPARATORS)
    if compact.isascii() and (compact.isdigit() or (compact[:1] == "+" and compact[1:].isdigit())):
        return compact

    # NFKC turns full-width digits, "＋" and ideographic spaces into their ASCII forms.
    text = raw if raw.isascii() else unicodedata.normalize("NFKC", raw)
    head = _HEAD.match(text)
    assert head is not None  # the pattern can match the empty string
    rest = text[head.end() :]
    if rest:
        note = _NOTE.match(rest)
        if note is None:
            return None  # a second number, "#", "*", ... after the number: not a single clean number
        glued_left = head.end() > 0 and text[head.end() - 1].isdigit()
        if glued_left and note.group(2):
            return None  # "09I2345678": letters between digits are a typo or a vanity number, not a note
    digits = head.group(2).translate(_STRIP_SEPARATORS)
    if not digits:
        return None
    return ("+" if head.group(1) else "") + digits


def _fast_path(compact: str) -> str | None:
    """E.164 for the common 10-digit mobile shapes 0xxxxxxxxx / 84xxxxxxxxx / +84xxxxxxxxx, else None."""
    n = len(compact)
    if n == 10 and compact[0] == "0":
        nsn = compact[1:]
    elif n == 11 and compact.startswith("84"):
        nsn = compact[2:]
    elif n == 12 and compact.startswith("+84"):
        nsn = compact[3:]
    else:
        return None
    if nsn[0] in _MOBILE_FIRST_DIGITS and _VN_MOBILE_NSN.fullmatch(nsn):
        return "+84" + nsn
    return None  # not necessarily invalid: let phonenumbers decide


def _slow_path(compact: str) -> str | None:
    """Full ``phonenumbers`` parse plus the 2018 renumbering and the lost-zero rule."""
    try:
        number = phonenumbers.parse(compact, REGION)
    except NumberParseException:
        return None
    lost_zero = _written_without_prefix(compact, number)
    if not phonenumbers.is_valid_number(number):
        number = _renumber_2018(number)
        if number is None:
            return None
    if lost_zero and phonenumbers.number_type(number) not in _LOST_ZERO_TYPES:
        return None
    return _e164(number)


def _renumber_2018(number: PhoneNumber) -> PhoneNumber | None:
    """The new number for a pre-2018 11-digit VN mobile, if valid; callers only pass invalid numbers."""
    nsn = phonenumbers.national_significant_number(number)
    if number.country_code != _CC or len(nsn) != 10:
        return None
    new_prefix = _RENUMBER_NSN.get(nsn[:3])
    if new_prefix is None:
        return None
    renumbered = PhoneNumber(country_code=_CC, national_number=int(new_prefix + nsn[3:]))
    return renumbered if phonenumbers.is_valid_number(renumbered) else None


def _written_without_prefix(raw: str, number: PhoneNumber) -> bool:
    """True when ``raw`` has neither trunk 0 nor country code: its digits start with the national number."""
    if "+" in raw or "\uff0b" in raw:
        return False
    digits = phonenumbers.normalize_digits_only(raw)
    return digits.startswith(phonenumbers.national_significant_number(number))


def _touches_letter(text: str, start: int, end: int) -> bool:
    return (start > 0 and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha())


def _e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
