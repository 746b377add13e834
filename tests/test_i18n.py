"""The admin in Vietnamese (the default) and English: every string of ours is in the catalogue and translated,
the main pages render in both languages without an untranslated label of ours, the language switch, dd/mm/yyyy
dates in local time, VND amounts, and translation-only migrations that change no SQL."""

from __future__ import annotations

import contextlib
import html as html_lib
import io
import re
import shutil
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import polib
import pytest
from django.contrib import admin
from django.core.management import call_command
from django.template import Context, Template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.text import capfirst

from hub import catalogues
from jobs.formatting import vnd

OUR_APPS = ("jobs", "integrations", "customers", "pancake", "products", "ads", "hub")
TRANSLATION_MIGRATIONS = [("jobs", "0004"), ("customers", "0008"), ("integrations", "0005"), ("ads", "0003"),
                          ("pancake", "0003")]
# Seen on Vietnamese pages of ours (and never on the English ones)...
VIETNAMESE_WORDS = {
    "admin:index": ["Khách hàng", "Tác vụ nền", "Kết nối hệ thống", "Quảng cáo Shopee", "Đổi ngôn ngữ"],
    "admin:jobs_backgroundjob_changelist": ["Bảng theo dõi tác vụ", "Tiến độ", "Tốc độ", "Đang chạy",
                                            "Hủy các tác vụ đã chọn", "thành công"],
    "admin:customers_nhanhcustomer_changelist": ["Kéo dữ liệu từ Nhanh", "Tổng chi tiêu", "Khách lẻ"],
    "admin:customers_customermapping_changelist": ["Tự động ghép ngay", "Chạy thử", "Đồng bộ tất cả đã ghép",
                                                   "Ghép thủ công", "Trạng thái đồng bộ"],
}
# ... and labels of ours seen on English pages (never on the Vietnamese ones).
ENGLISH_LABELS = {
    "admin:index": ["Customers", "Background jobs", "Integrations", "Shopee ads"],
    "admin:jobs_backgroundjob_changelist": ["Job dashboard", "Progress", "Speed", "Cancel selected jobs"],
    "admin:customers_nhanhcustomer_changelist": ["Pull from Nhanh", "Total spent", "Retail"],
    "admin:customers_customermapping_changelist": ["Auto-match now", "Dry run", "Sync all matched",
                                                   "Match manually", "Sync status"],
}


# --- the catalogue -----------------------------------------------------------------------------------------
def test_every_catalogue_entry_is_translated_and_keeps_its_placeholders():
    assert catalogues.problems("vi") == []
    for domain in catalogues.DOMAINS:
        po = polib.pofile(str(catalogues.po_path("vi", domain)))
        assert len(po) > 0 and po.percent_translated() == 100, domain


def test_compiled_catalogues_match_the_po_files():
    """The .mo files in git are what bin/messages compiles from the .po files (no stale translation ships)."""
    for domain in catalogues.DOMAINS:
        po_file = catalogues.po_path("vi", domain)
        po, mo = polib.pofile(str(po_file)), polib.mofile(str(po_file.with_suffix(".mo")))
        want = {(e.msgctxt, e.msgid): e.msgstr for e in po if e.translated()}
        got = {(e.msgctxt, e.msgid): e.msgstr for e in mo if e.msgid}
        assert got == want, f"{domain}.mo is stale: run bin/messages compile"


@pytest.mark.skipif(not (shutil.which("xgettext") and shutil.which("msgmerge")), reason="needs GNU gettext")
@pytest.mark.parametrize("domain", catalogues.DOMAINS)
def test_no_string_of_ours_is_missing_from_the_catalogue(domain):
    """makemessages over our code (into a temporary copy): every msgid it finds is in the Vietnamese catalogue,
    so a newly marked string fails here until bin/messages and a translator have seen it."""
    marked = catalogues.extracted_msgids(domain)
    assert len(marked) > (400 if domain == "django" else 1)
    catalogue = {e.msgid for e in polib.pofile(str(catalogues.po_path("vi", domain))) if e.translated()}
    assert sorted(marked - catalogue) == [], "run bin/messages and translate the new strings"


# --- pages -------------------------------------------------------------------------------------------------
@pytest.fixture
def everything(db, staff_user):
    """One row of every model of ours, so every list has a row and every change form an object."""
    from ads.models import (
        BudgetAction,
        BudgetLog,
        BudgetSchedule,
        Campaign,
        CampaignDailyPerformance,
        QueueStatus,
        Shop,
        ShopDailyPerformance,
        Stage,
        SyncProgress,
        SyncQueue,
    )
    from customers.models import (
        AmbiguousMatch,
        CustomerMapping,
        CustomerType,
        LoyaltyTier,
        MatchedBy,
        NhanhCustomer,
        NhanhCustomerPhone,
        PhoneSource,
        ShopifyCustomer,
        ShopifyCustomerPhone,
        SyncStatus,
    )
    from integrations.models import Connection
    from jobs.models import BackgroundJob, JobStatus, PullMark, PullProgress, PullStatus, StartedBy
    from pancake.models import (
        PancakeAmbiguousLink,
        PancakeCustomer,
        PancakeCustomerPhone,
        PancakeNhanhLink,
        PancakePage,
    )

    now = timezone.now()
    LoyaltyTier.objects.get_or_create(min_total=3_000_000, defaults={"name": "Bronze"})
    Connection.objects.create(system="nhanh", base_url="https://pos.open.nhanh.vn", app_id="1", business_id="2",
                              access_token="secret-token-123456", api_version="3.0")
    nhanh = NhanhCustomer.objects.create(nhanh_id=101, name="Nguyễn Văn An", mobile="0912345678",
                                         customer_type=CustomerType.RETAIL, total_spent=1_234_567, payload_hash="x",
                                         upstream_updated_at=now)
    NhanhCustomerPhone.objects.create(customer=nhanh, e164="+84912345678", source=PhoneSource.NHANH_MOBILE)
    other = NhanhCustomer.objects.create(nhanh_id=102, name="Trần Thị Bình", mobile="0987654321", payload_hash="y")
    shopify = ShopifyCustomer.objects.create(shopify_id=9001, first_name="An", last_name="Nguyễn", phone="+84912345678",
                                             state="ENABLED", amount_spent=Decimal("250000"), payload_hash="z")
    ShopifyCustomerPhone.objects.create(customer=shopify, e164="+84912345678", source=PhoneSource.SHOPIFY_PHONE)
    CustomerMapping.objects.create(nhanh_customer=nhanh, shopify_customer=shopify, matched_by=MatchedBy.PHONE,
                                   matched_phone="+84912345678", sync_status=SyncStatus.SYNCED, synced_at=now,
                                   last_sent_total=1_234_567, last_sent_tier="Bronze")
    AmbiguousMatch.objects.create(nhanh_customer=other, phones=["+84987654321"], shopify_candidates=[shopify.pk],
                                  nhanh_rivals=[nhanh.pk])
    job = BackgroundJob.objects.create(type="PULL_NHANH_CUSTOMERS", status=JobStatus.RUNNING, total=1000,
                                       processed=250, successful=248, failed=2, started_at=now - timedelta(seconds=50),
                                       heartbeat_at=now, started_by=StartedBy.USER, started_by_user=staff_user)
    BackgroundJob.objects.create(type="CUSTOMER_SYNC", status=JobStatus.FAILED, error="Shopify said no",
                                 started_at=now - timedelta(minutes=5), completed_at=now, started_by=StartedBy.BEAT)
    PullProgress.objects.create(progress_id="nhanh_customers_all", system="nhanh", kind="customers",
                                status=PullStatus.RUNNING, job=job, items_done=250)
    PullMark.objects.create(key="nhanh_customers_new", value={"updated_to": 1_764_900_000})
    shop = Shop.objects.create(shop_id=600001, name="Shop Hoa", partner_id=1, partner_key="key-123456")
    campaign = Campaign.objects.create(shop=shop, campaign_id=77, name="Sale 12.12", daily_budget=Decimal("500000"))
    CampaignDailyPerformance.objects.create(campaign=campaign, date=date(2026, 12, 1), spend=Decimal("120000"),
                                            broad_gmv=Decimal("900000"), roas=Decimal("7.5"))
    ShopDailyPerformance.objects.create(shop=shop, date=date(2026, 12, 1), spend=Decimal("120000"))
    queue = SyncQueue.objects.create(shop=shop, status=QueueStatus.COMPLETED)
    SyncProgress.objects.create(shop=shop, stage=Stage.SYNCING_CAMPAIGNS, total_campaigns=10, synced_campaigns=4,
                                total_chunks=2, chunks_done=1, started_at=now, queue_entry=queue)
    schedule = BudgetSchedule.objects.create(campaign=campaign, name="Giờ vàng", start_time=time(20), end_time=time(22),
                                             budget=Decimal("1500000"))
    BudgetLog.objects.create(schedule=schedule, campaign=campaign, action=BudgetAction.APPLIED,
                             old_budget=Decimal("500000"), new_budget=Decimal("1500000"))
    page = PancakePage.objects.create(page_id="105000000000001", name="Trang Hoa")
    chat = PancakeCustomer.objects.create(key="105000000000001:1", page=page, psid="1", name="Chị Lan",
                                          phone_numbers=["0912345678"], payload_hash="p")
    PancakeCustomerPhone.objects.create(customer=chat, e164="+84912345678")
    PancakeNhanhLink.objects.create(pancake_customer=chat, nhanh_customer=nhanh, matched_phone="+84912345678")
    PancakeAmbiguousLink.objects.create(pancake_customer=chat, phones=["+84912345678"], nhanh_candidates=[nhanh.pk])


def main_pages(user) -> list[str]:
    """The admin index, the job dashboard, every list, change form (and add form) of our apps, the pull pages,
    the match and link pages."""
    from django.test import RequestFactory

    from jobs.pull_specs import pull_specs

    request = RequestFactory().get("/")
    request.user = user
    urls = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        if opts.app_label not in OUR_APPS:
            continue  # django-celery-beat's schedules speak its own catalogue
        info = (opts.app_label, opts.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        obj = model.objects.order_by("pk").first()
        if obj is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        for extra in ("add", "pull", "match", "link"):
            if extra == "add" and not model_admin.has_add_permission(request):
                continue
            with contextlib.suppress(NoReverseMatch):
                urls.append(reverse("admin:{}_{}_{}".format(*info, extra)))
    urls += [reverse("admin:jobs_pullprogress_start", args=spec.key) for spec in pull_specs()]
    return urls


class _Text(HTMLParser):
    """The text a person reads on a page: text nodes, button values, titles and placeholders; no scripts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") in ("submit", "button"):
            self.parts.append(attrs.get("value") or "")
        for name in ("title", "placeholder", "aria-label"):
            if attrs.get(name):
                self.parts.append(attrs[name])

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data)


def visible_text(page: str) -> list[str]:
    parser = _Text()
    parser.feed(page)
    return [re.sub(r"\s+", " ", html_lib.unescape(p)).strip(" :") for p in parser.parts]


def _english_of_ours() -> dict[str, str]:
    """msgid (as shown: also capitalised) → its Vietnamese, for strings whose Vietnamese differs."""
    shown = {}
    for domain in catalogues.DOMAINS:
        for e in polib.pofile(str(catalogues.po_path("vi", domain))):
            if e.msgstr and e.msgstr != e.msgid and not catalogues.PLACEHOLDER.search(e.msgid) and len(e.msgid) > 3:
                shown[e.msgid] = shown[capfirst(e.msgid)] = e.msgstr
    return shown


def get(client, url: str, language: str):
    client.cookies["shopbridge_language"] = language
    page = client.get(url)
    assert page.status_code == 200, (url, language, page.status_code)
    return page.content.decode()


@pytest.mark.parametrize("language", ["vi", "en"])
def test_main_pages_render_in_both_languages_without_untranslated_strings_of_ours(everything, staff_client,
                                                                                 staff_user, language):
    english = _english_of_ours()
    untranslated = {}
    for url in main_pages(staff_user):
        page = get(staff_client, url, language)
        assert f'<html lang="{language}"' in page, url
        if language == "vi":
            leftovers = sorted({text for text in visible_text(page) if text in english})
            if leftovers:
                untranslated[url] = leftovers
    assert untranslated == {}


@pytest.mark.parametrize("url_name", sorted(VIETNAMESE_WORDS))
def test_vietnamese_pages_read_vietnamese_and_english_pages_english(everything, staff_client, url_name):
    vi_page = " ".join(visible_text(get(staff_client, reverse(url_name), "vi")))
    en_page = " ".join(visible_text(get(staff_client, reverse(url_name), "en")))
    for word in VIETNAMESE_WORDS[url_name]:
        assert word in vi_page and word not in en_page, word
    for label in ENGLISH_LABELS[url_name]:
        assert label in en_page and label not in vi_page, label


def test_vietnamese_is_the_default_whatever_the_browser_says(everything, staff_client, settings):
    settings.LANGUAGE_CODE = "vi"
    page = staff_client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="vi"' in page and "Tác vụ nền" in page
    # The header offers the other language; choosing it is remembered (a cookie) until changed back.
    assert 'name="language" value="en"' in page and ">English</button>" in page  # each language in its own words
    switched = staff_client.post(reverse("set_language"), {"language": "en", "next": reverse("admin:index")})
    assert switched.status_code == 302 and switched.cookies["shopbridge_language"].value == "en"
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert '<html lang="en"' in page, page
    assert "Background jobs" in page, page
    assert ">Tiếng Việt</button>" in page, page


def test_the_login_page_has_the_switch_too(db, client, settings):
    settings.LANGUAGE_CODE = "vi"
    page = client.get(reverse("admin:login")).content.decode()
    assert '<html lang="vi"' in page and 'value="en"' in page


def test_the_dashboards_script_strings_come_from_the_javascript_catalogue(staff_client):
    vi = get(staff_client, reverse("javascript-catalog"), "vi")
    assert "Tr\\u1ef1c ti\\u1ebfp" in vi or "Trực tiếp" in vi  # "Live: ..." in Vietnamese
    en = get(staff_client, reverse("javascript-catalog"), "en")
    assert "Tr\\u1ef1c ti\\u1ebfp" not in en and "Trực tiếp" not in en
    dashboard = get(staff_client, reverse("admin:jobs_backgroundjob_changelist"), "vi")
    assert reverse("javascript-catalog") in dashboard and "jobs/dashboard.js" in dashboard


# --- dates, times and money ------------------------------------------------------------------------------
def test_dates_are_dd_mm_yyyy_and_times_local_on_the_dashboard(everything, staff_client):
    from jobs.models import BackgroundJob

    assert timezone.get_current_timezone_name() == "Asia/Ho_Chi_Minh"
    job = BackgroundJob.objects.filter(status="RUNNING").get()
    job.started_at = datetime(2026, 12, 4, 18, 30, 5, tzinfo=ZoneInfo("UTC"))  # 01:30:05 on the 5th in Vietnam
    job.save(update_fields=["started_at"])
    for language in ("vi", "en"):
        page = get(staff_client, reverse("admin:jobs_backgroundjob_changelist"), language)
        assert "05/12/2026 01:30:05" in page, language
    api = staff_client.get(reverse("jobs:job-list"), {"ids": str(job.pk)}).json()
    assert api["jobs"][0]["display"]["started"] == "05/12/2026 01:30:05"


def test_the_pull_form_asks_dd_mm_yyyy_and_takes_it_in_both_languages(db, staff_client, settings):
    from customers.services.pulls import NHANH_FILTERS

    url = reverse("admin:customers_nhanhcustomer_pull")
    page = get(staff_client, url, "vi")
    assert 'placeholder="dd/mm/yyyy"' in page and "Mua lần cuối từ ngày" in page and 'type="date"' not in page
    field = next(f for f in NHANH_FILTERS if f.name == "lastBoughtDateFrom").form_field()
    for language in ("vi", "en"):
        with translation.override(language):
            assert field.clean("31/12/2025") == date(2025, 12, 31)
            assert field.clean("2025-12-31") == date(2025, 12, 31)
            assert field.widget.format_value(date(2025, 12, 31)) == "31/12/2025"


def test_vnd_amounts_are_grouped_the_languages_way():
    with translation.override("vi"):
        assert vnd(1_234_567) == "1.234.567\u00a0₫"
        assert vnd(Decimal("3000000.00")) == "3.000.000\u00a0₫"
        assert Template("{% load shopbridge %}{{ x|vnd }}").render(Context({"x": 100_000_000})) == "100.000.000\u00a0₫"
    with translation.override("en"):
        assert vnd(1_234_567) == "1,234,567\u00a0₫"
    assert vnd(None) == ""


def test_vnd_on_the_pages_that_show_money(everything, staff_client):
    pages = {
        "admin:customers_nhanhcustomer_changelist": "1.234.567\u00a0₫",  # total spent
        "admin:customers_customermapping_changelist": "1.234.567\u00a0₫",  # the Nhanh side and last sent total
        "admin:customers_loyaltytier_changelist": "3.000.000\u00a0₫",
        "admin:ads_campaign_changelist": "500.000\u00a0₫",
        "admin:ads_budgetschedule_changelist": "1.500.000\u00a0₫",
        "admin:ads_budgetlog_changelist": "1.500.000\u00a0₫",
        "admin:pancake_pancakecustomer_changelist": "1.234.567\u00a0₫",
    }
    for url_name, amount in pages.items():
        page = html_lib.unescape(get(staff_client, reverse(url_name), "vi"))
        assert amount in page, url_name


# --- migrations -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("app", "migration"), TRANSLATION_MIGRATIONS)
def test_translatable_verbose_names_change_no_sql(transactional_db, app, migration):
    out = io.StringIO()
    call_command("sqlmigrate", app, migration, stdout=out)
    statements = [line for line in out.getvalue().splitlines()
                  if line.strip() and not line.startswith("--") and line.strip() not in ("BEGIN;", "COMMIT;")]
    assert statements == []


def test_commands_print_english():
    """Command output stays English whatever the staff's language (manage.py activates English)."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    code = "from django.utils.translation import gettext; print(gettext('Background jobs'))"
    done = subprocess.run([sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", code],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "LANGUAGE_CODE": "vi"})
    assert done.stdout.strip().splitlines()[-1] == "Background jobs", done.stderr


# --- what a new app must mark -------------------------------------------------------------------------------
def _lazy(value) -> bool:
    from django.utils.functional import Promise

    return isinstance(value, Promise)


def test_every_model_field_admin_column_and_action_of_ours_is_translatable():
    """A model, field, admin column, action or filter added later without gettext_lazy fails here, by name
    (``python -m hub.mark_models app/models.py`` marks a models.py; see README, Language)."""
    from django.apps import apps

    unmarked = []
    for config in apps.get_app_configs():
        if config.label not in OUR_APPS:
            continue
        if config.models and not _lazy(config.verbose_name):
            unmarked.append(f"app {config.label}: verbose_name")
        for model in config.get_models():
            opts = model._meta
            for attr in ("verbose_name", "verbose_name_plural"):
                if not _lazy(getattr(opts, attr)):
                    unmarked.append(f"{opts.label}: Meta.{attr}")
            for field in opts.get_fields():
                if not field.concrete or field.auto_created:
                    continue
                if not _lazy(field.verbose_name):
                    unmarked.append(f"{opts.label}.{field.name}: verbose_name")
                if field.help_text and not _lazy(field.help_text):
                    unmarked.append(f"{opts.label}.{field.name}: help_text")
                for _value, label in field.flatchoices or ():
                    if isinstance(label, str) and not _lazy(label) and not label.isdigit():
                        unmarked.append(f"{opts.label}.{field.name}: choice {label!r}")
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in OUR_APPS:
            continue
        name = type(model_admin).__name__
        for column in model_admin.list_display:
            method = getattr(model_admin, column, None) if isinstance(column, str) else column
            if callable(method) and column != "__str__" and not _lazy(getattr(method, "short_description", None)):
                unmarked.append(f"{name}.{column}: description")
        for action in model_admin.actions or ():
            method = getattr(model_admin, action, None) if isinstance(action, str) else action
            if method is not None and not _lazy(getattr(method, "short_description", None)):
                unmarked.append(f"{name}.{action}: action description")
        for list_filter in model_admin.list_filter:
            title = getattr(list_filter, "title", None) if isinstance(list_filter, type) else None
            if title is not None and not _lazy(title):
                unmarked.append(f"{name}: filter title {title!r}")
    assert unmarked == []
