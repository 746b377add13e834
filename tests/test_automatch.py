"""Auto-match on every phone, in SQL: hand-built cases (the generated-data ground truth is in
test_customer_sync.py, next to the Shopify sandbox)."""

import pytest
from django.core.management import call_command
from django.db import connection

from customers.models import AmbiguousMatch, CustomerMapping, MatchedBy, NhanhCustomer, ShopifyCustomer
from customers.services.matching import MappingError, auto_match_customers, match_manually, unmatch
from customers.services.pulls import upsert_nhanh_customers, upsert_shopify_customers

pytestmark = pytest.mark.django_db


def nhanh(i, mobile, name=None):
    return {"id": i, "name": name or f"Khách {i}", "mobile": mobile, "type": 1, "totalAmount": 1_000_000 * i,
            "updatedAt": 1_760_000_000}


def shopify(i, phone=None, address_phone=None, note=None):
    return {"id": f"gid://shopify/Customer/{i}", "legacyResourceId": str(i), "firstName": "A", "lastName": f"S{i}",
            "defaultPhoneNumber": {"phoneNumber": phone} if phone else None,
            "defaultAddress": {"phone": address_phone} if address_phone else None, "note": note,
            "updatedAt": "2026-11-20T08:15:00Z", "amountSpent": {"amount": "0", "currencyCode": "VND"}}


def pairs():
    active = CustomerMapping.objects.filter(is_active=True).select_related("nhanh_customer", "shopify_customer")
    return {(m.nhanh_customer.nhanh_id, m.shopify_customer.shopify_id) for m in active}


@pytest.fixture
def people():
    upsert_nhanh_customers([
        nhanh(1, "0912 345 678"),          # = Shopify 101 (E.164 phone)
        nhanh(2, "01628 123 456"),         # old 11-digit = Shopify 102's address phone +84328123456
        nhanh(3, "0987.654.321"),          # = Shopify 103's note
        nhanh(4, "0903 111 222"),          # two Shopify customers share it → ambiguous
        nhanh(5, "0977 000 111"),          # claimed also by Nhanh 6 → both ambiguous
        nhanh(6, "+84 977 000 111"),
        nhanh(7, "chưa có"),               # no valid phone → skipped
        nhanh(8, "0966 555 444"),          # no Shopify candidate
        nhanh(9, "0355 123 999"),          # Shopify 109 has it as a second phone in the note
    ])
    upsert_shopify_customers([
        shopify(101, phone="+84912345678"),
        shopify(102, address_phone="(+84) 32-812-3456"),
        shopify(103, note="Chị Hoa, sđt 0987654321 (gọi sau 5h)"),
        shopify(104, phone="+84903111222"),
        shopify(105, address_phone="0903111222"),
        shopify(106, phone="+84977000111"),
        shopify(109, phone="+84888000999", note="SĐT khác: 0355.123.999"),
    ])


def test_matches_on_every_phone_and_reports_ambiguity_instead_of_guessing(people):
    result = auto_match_customers()
    assert pairs() == {(1, 101), (2, 102), (3, 103), (9, 109)}
    assert result.matched == 4 and result.ambiguous == 3 and result.skipped_no_phone == 1
    assert result.no_candidate == 1  # Nhanh 8
    amb = {a.nhanh_customer.nhanh_id: a for a in AmbiguousMatch.objects.select_related("nhanh_customer")}
    assert set(amb) == {4, 5, 6}
    candidates = ShopifyCustomer.objects.filter(pk__in=amb[4].shopify_candidates)
    assert sorted(candidates.values_list("shopify_id", flat=True)) == [104, 105]
    assert amb[4].phones == ["+84903111222"]
    rival = NhanhCustomer.objects.get(nhanh_id=6).pk
    assert amb[5].nhanh_rivals == [rival]
    assert {m.matched_by for m in CustomerMapping.objects.all()} == {MatchedBy.PHONE}
    assert CustomerMapping.objects.get(nhanh_customer__nhanh_id=2).matched_phone == "+84328123456"


def test_dry_run_writes_nothing_and_rerun_creates_nothing_new(people):
    dry = auto_match_customers(dry_run=True)
    assert dry.matched == 4 and dry.ambiguous == 3
    assert not CustomerMapping.objects.exists() and not AmbiguousMatch.objects.exists()
    auto_match_customers()
    again = auto_match_customers()
    assert again.matched == 0 and again.already_mapped == 4 and CustomerMapping.objects.count() == 4


def test_manual_matches_and_unmatches_are_never_overwritten(people):
    match_manually(NhanhCustomer.objects.get(nhanh_id=4).pk, ShopifyCustomer.objects.get(shopify_id=105).pk)
    auto_match_customers()
    assert (4, 105) in pairs()
    assert CustomerMapping.objects.get(nhanh_customer__nhanh_id=4).matched_by == MatchedBy.MANUAL
    unmatch(CustomerMapping.objects.filter(nhanh_customer__nhanh_id=1))
    auto_match_customers()
    assert (1, 101) not in pairs()  # staff said no: auto-match leaves Nhanh 1 alone
    assert CustomerMapping.objects.get(nhanh_customer__nhanh_id=1).is_active is False
    with pytest.raises(MappingError, match="already matched"):
        match_manually(NhanhCustomer.objects.get(nhanh_id=8).pk, ShopifyCustomer.objects.get(shopify_id=102).pk)


def test_new_phones_after_a_pull_lead_to_new_matches(people):
    auto_match_customers()
    upsert_shopify_customers([shopify(108, phone="+84966555444")])
    assert auto_match_customers().matched == 1 and (8, 108) in pairs()


def test_automatch_command_dry_run_prints_the_counts(people, capsys):
    call_command("automatch", "customers", "--dry-run")
    out = capsys.readouterr().out
    assert "Would match 4; 3 ambiguous, 1 without a phone" in out
    # Examples name customers by their Nhanh and Shopify ids, not by our row numbers.
    assert "ambiguous: Nhanh 4 (+84903111222) → Shopify 104, 105" in out
    assert "ambiguous: Nhanh 5 (+84977000111) → Shopify 106; also claimed by Nhanh 6" in out
    assert not CustomerMapping.objects.exists()


def test_a_big_batch_goes_in_the_bulk_load_way_with_the_same_result_and_the_same_schema(people, monkeypatch):
    from django.db import IntegrityError, connection, transaction

    from customers.services import matching

    def schema():
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cur:
            cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
                        "'customers_customermapping'::regclass ORDER BY 1")
            constraints = cur.fetchall()
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'customers_customermapping' "
                        "ORDER BY 1")
            return constraints, cur.fetchall()

    before = schema()
    monkeypatch.setattr(matching, "BULK_LINKS_FROM", 1)  # every batch is "big"
    result = auto_match_customers()
    assert pairs() == {(1, 101), (2, 102), (3, 103), (9, 109)} and result.matched == 4
    assert schema() == before  # keys and indexes back, same names and definitions
    taken = CustomerMapping.objects.get(shopify_customer__shopify_id=101)
    with pytest.raises(IntegrityError), transaction.atomic():  # and enforced again
        CustomerMapping.objects.create(nhanh_customer=NhanhCustomer.objects.get(nhanh_id=8),
                                       shopify_customer=taken.shopify_customer, matched_by=MatchedBy.MANUAL)


@pytest.mark.parametrize("right_exclusive", [True, False])
def test_the_staged_pairs_equal_the_rule_when_customers_share_several_phones(right_exclusive):
    """The matcher's SQL against the rule in plain Python, on sides where a pair shares two phones (Nhanh has one
    phone a customer, so this uses Shopify's phones on both sides: every customer is a candidate of itself)."""
    from collections import defaultdict

    from django.db import connection, transaction

    from customers.models import ShopifyCustomerPhone
    from customers.services.matching import PAIRS, PhoneMatcher

    upsert_shopify_customers([
        shopify(1, phone="0912000001", address_phone="0912000002"),         # shares both with itself only
        shopify(2, phone="0912000003", note="sđt 0912000004"),               # shares 0912000004 with 3
        shopify(3, phone="0912000004"),
        shopify(4, phone="0912000005", address_phone="0912000006", note="0912000007"),
        shopify(5, phone="0912000008", address_phone="0912000009"),          # shares both phones with 6
        shopify(6, phone="0912000009", note="hoặc 0912000008"),
        shopify(7, note="không có số"),
    ])
    matcher = PhoneMatcher(
        left=ShopifyCustomer._meta.db_table, left_phones=ShopifyCustomerPhone._meta.db_table,
        right_phones=ShopifyCustomerPhone._meta.db_table, links=CustomerMapping._meta.db_table,
        link_left="shopify_customer_id", link_right="nhanh_customer_id", right_exclusive=right_exclusive)
    with transaction.atomic(), connection.cursor() as cur:
        matcher.stage_pairs(cur)
        matched = matcher.count_matches(cur)
        cur.execute(f"SELECT left_id, right_id, phone FROM {PAIRS} WHERE unique_pair AND first_phone")  # = links
        links = set(cur.fetchall())
        ambiguous = matcher.ambiguous_pairs(cur)
        matcher.drop_pairs(cur)

    phones = defaultdict(set)
    for customer_id, e164 in ShopifyCustomerPhone.objects.values_list("customer_id", "e164"):
        phones[customer_id].add(e164)
    shared = {(a, b): min(phones[a] & phones[b]) for a in phones for b in phones if phones[a] & phones[b]}
    rights, lefts = defaultdict(set), defaultdict(set)
    for a, b in shared:
        rights[a].add(b)
        lefts[b].add(a)
    unique = {a for a in rights if len(rights[a]) == 1
              and (not right_exclusive or len(lefts[next(iter(rights[a]))]) == 1)}
    assert links == {(a, b, shared[a, b]) for a in unique for b in rights[a]}
    assert matched == len(unique)
    assert ambiguous == sorted((a, b, shared[a, b]) for a in rights if a not in unique for b in rights[a])
    ids = dict(ShopifyCustomer.objects.values_list("shopify_id", "pk"))
    assert (ids[1], ids[1], "+84912000001") in links and (ids[4], ids[4], "+84912000005") in links
    assert {a for a, _b, _p in ambiguous} == {ids[2], ids[3], ids[5], ids[6]}



def test_the_upsert_stores_the_payload_once_serialized_and_refreshes_phones_by_the_returned_ids():
    """jobs.ingest serializes each payload once (its hash and the raw column's text); raw reads back as the
    payload, the hash is payload_hash's, and a changed row's phones are replaced through the ids the upsert
    returned."""
    from customers.models import ShopifyCustomerPhone
    from jobs.ingest import payload_hash

    node = shopify(501, phone="+84912000501", note="Chị Hoa — “VIP” \\ 2 số: 0912000502")
    assert upsert_shopify_customers([node]).created == 1
    stored = ShopifyCustomer.objects.get(shopify_id=501)
    assert stored.raw == node and stored.payload_hash == payload_hash(node)
    assert set(stored.phones.values_list("e164", flat=True)) == {"+84912000501", "+84912000502"}
    assert upsert_shopify_customers([node]).skipped == 1  # unchanged: same hash
    changed = {**node, "note": "đổi số"}
    assert upsert_shopify_customers([changed, shopify(502, phone="+84912000503")]).updated == 1
    stored.refresh_from_db()
    assert stored.raw == changed and stored.note == "đổi số"
    assert set(ShopifyCustomerPhone.objects.filter(customer__shopify_id=501).values_list("e164", flat=True)) == {
        "+84912000501"}
    assert list(ShopifyCustomerPhone.objects.filter(customer__shopify_id=502).values_list("e164", flat=True)) == [
        "+84912000503"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the INSERT tells new rows apart on PostgreSQL")
def test_a_row_another_pull_wrote_after_the_look_up_still_has_its_phones_replaced():
    """Two pulls with different filters share a customer: B looks its batch up, A writes the customer, then B
    writes it. B's look-up did not see it, yet B's write updates it, replaces A's phones and counts it as
    updated (the database's word, not the look-up's)."""
    from customers.models import ShopifyCustomerPhone

    first = shopify(601, phone="+84912000601", note="số cũ 0912000602")
    again = {**shopify(601, phone="+84912000601"), "note": "đổi số 0912000603"}
    batch_b = upsert_shopify_customers.prepare([again, shopify(602, phone="+84912000604")])
    batch_a = upsert_shopify_customers.prepare([first])
    assert upsert_shopify_customers.write(batch_a).created == 1
    result = upsert_shopify_customers.write(batch_b)
    assert (result.created, result.updated) == (1, 1)
    phones = set(ShopifyCustomerPhone.objects.filter(customer__shopify_id=601).values_list("e164", flat=True))
    assert phones == {"+84912000601", "+84912000603"}  # A's +84912000602 is gone
    assert ShopifyCustomer.objects.get(shopify_id=601).note == "đổi số 0912000603"
