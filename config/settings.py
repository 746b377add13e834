"""ShopBridge settings.

Everything comes from the environment (django-environ). With no environment at all the app runs
embedded: SQLite in ``var/`` (WAL mode) and Celery over kombu's filesystem transport, so a fresh
machine needs no database or broker server. Production sets ``DATABASE_URL`` (PostgreSQL) and
``CELERY_BROKER_URL`` (Redis).
"""

import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("SHOPBRIDGE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None


def _local_secret(name: str) -> str:
    """No key is committed to the repo: an embedded install makes its own once and keeps it in var/, created
    readable by its owner only (never world-readable, not even for a moment)."""
    path = VAR_DIR / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made earlier (or by another process starting at the same moment)
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret("secret_key")
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
# Secrets at rest (connection tokens, page tokens, shop keys) are Fernet-encrypted with keys derived from
# SECRET_KEY (and SECRET_KEY_FALLBACKS while rotating) and this salt (django-fernet-encrypted-fields).
SALT_KEY = env.list("SHOPBRIDGE_ENCRYPTION_SALT", default=[]) or [_local_secret("encryption_salt")]
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # OpClass in expression indexes (the admin's trigram search, customers 0005)
    "django_celery_beat",
    "import_export",  # export of the admin lists (hub/export.py)
    "jobs",
    "integrations",
    "customers",
    "pancake",
    "products",
    "ads",
    "hub",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "hub.middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'shopbridge.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web server read while the worker writes; IMMEDIATE takes the write lock at
        # BEGIN so two writers queue on the busy timeout instead of failing with "database is locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests on SQLite use a file, not :memory:, so threads and worker processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_shopbridge.sqlite3")}
else:
    # Persistent connections only where a long-lived process serves requests (gunicorn, Celery): the
    # threaded runserver would leave one behind per dead request thread. Production sets CONN_MAX_AGE=60.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
IS_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Language ------------------------------------------------------------------------------------
# Staff read the admin in Vietnamese by default; "English" in the header switches (a cookie, set_language).
# The browser's Accept-Language is not consulted (hub.middleware.LocaleMiddleware): an English-language
# browser still gets the shop's language until its user picks English. Management commands print English.
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="vi")
LANGUAGES = [("vi", "Tiếng Việt"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Dates dd/mm/yyyy in both languages, VND grouped 1.234.567 in Vietnamese (config/formats/<lang>/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]
LANGUAGE_COOKIE_NAME = "shopbridge_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Ho_Chi_Minh")
USE_I18N = True
# Exports (hub/export.py) need <app>.export_<model> besides the view permission; import is not offered.
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve admin assets straight from the apps: no collectstatic step for the embedded demo.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "admin:login"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the dashboard's fetch() reads it for POSTs
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Scripts on /api/ get a JSON 403 for a CSRF failure; pages keep Django's.
CSRF_FAILURE_VIEW = "jobs.http.csrf_failure"
if not DEBUG and env.bool("HTTPS", default=False):
    # Behind a TLS proxy that sets X-Forwarded-Proto: cookies only over HTTPS, plain HTTP redirected, HSTS.
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LANGUAGE_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_REFERRER_POLICY = "same-origin"

# --- Celery -----------------------------------------------------------------------------------
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # kombu's default is ./control in the cwd
        "store_processed": False,
    }
else:
    # Longer than any countdown/ETA we schedule (the longest is the ads retry backoff, < 1 h), so
    # Redis never re-delivers a message that a worker still holds.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 4 * 3600)}
_results_dir = VAR_DIR / "celery-results"
_results_dir.mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=f"file://{_results_dir}")
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=6 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=6 * 3600 - 120)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tests can run tasks inline; production never does.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True

# --- ShopBridge ------------------------------------------------------------------------------
SHOPBRIDGE = {
    # A pull or job without a heartbeat for this long is stale (crashed) and may be taken over.
    "STALE_AFTER_SECONDS": env.int("SHOPBRIDGE_STALE_AFTER_SECONDS", default=120),
    # How often beat looks for stale jobs to rescue, and how many rescues a job gets before it is failed.
    "STALE_CHECK_SECONDS": env.int("SHOPBRIDGE_STALE_CHECK_SECONDS", default=60),
    "MAX_RESCUES": env.int("SHOPBRIDGE_MAX_RESCUES", default=3),
    # How often a bulk pull asks Shopify how its operation is doing.
    "SHOPIFY_BULK_POLL_SECONDS": env.float("SHOPBRIDGE_SHOPIFY_BULK_POLL_SECONDS", default=3.0),
    "MAX_CONCURRENT_PULLS": env.int("SHOPBRIDGE_MAX_CONCURRENT_PULLS", default=3),
    # How many malformed-row examples a job keeps in its metadata.
    "ERROR_EXAMPLES_KEPT": 20,
    "PULL_LIMIT_SYNC": 5000,
    "UPSERT_BATCH_SIZE": env.int("SHOPBRIDGE_UPSERT_BATCH_SIZE", default=1000),
    # Upstream calls: attempts per request and the back-off ceiling (seconds) before a job gives up.
    "HTTP_MAX_ATTEMPTS": env.int("SHOPBRIDGE_HTTP_MAX_ATTEMPTS", default=8),
    "HTTP_BACKOFF_BASE": env.float("SHOPBRIDGE_HTTP_BACKOFF_BASE", default=0.5),
    "HTTP_BACKOFF_MAX": env.float("SHOPBRIDGE_HTTP_BACKOFF_MAX", default=60.0),
    # Loyalty data written onto Shopify customers (tier names and thresholds are edited in the admin).
    "LOYALTY_NAMESPACE": env.str("SHOPBRIDGE_LOYALTY_NAMESPACE", default="custom"),
    "LOYALTY_TOTAL_KEY": env.str("SHOPBRIDGE_LOYALTY_TOTAL_KEY", default="total_spent"),
    "LOYALTY_TIER_KEY": env.str("SHOPBRIDGE_LOYALTY_TIER_KEY", default="loyalty_tier"),
    # A total that moved by less than this (VND) since its last sync is not re-sent unless forced.
    "LOYALTY_MIN_CHANGE": env.int("SHOPBRIDGE_LOYALTY_MIN_CHANGE", default=1000),
    # metafieldsSet calls in flight at once: hides Shopify's round trip (at 100–250 ms one at a time leaves
    # most of the cost budget unused); the client's pacing keeps them within the bucket together.
    "SYNC_CONCURRENCY": env.int("SHOPBRIDGE_SYNC_CONCURRENCY", default=8),
    # Create Shopify customers for unmatched Nhanh customers during a sync (off: matching is the main path).
    "SYNC_CREATE_MISSING_CUSTOMERS": env.bool("SHOPBRIDGE_SYNC_CREATE_MISSING_CUSTOMERS", default=False),
    # Product sync: also push Nhanh's prices (retail → price, old → compare-at) to Shopify; off by default.
    "PRODUCT_SYNC_PRICES": env.bool("SHOPBRIDGE_PRODUCT_SYNC_PRICES", default=False),
    # Nhanh webhooks: a body received again within this many seconds is a replay (recorded, changes nothing);
    # stock changes of one product arriving within the coalescing delay go to Shopify in one update.
    "NHANH_WEBHOOK_REPLAY_SECONDS": env.int("SHOPBRIDGE_NHANH_WEBHOOK_REPLAY_SECONDS", default=600),
    "STOCK_SYNC_COALESCE_SECONDS": env.float("SHOPBRIDGE_STOCK_SYNC_COALESCE_SECONDS", default=1.0),
    # Where the request budgets shared by every process live (integrations/ratelimit.py): empty chooses Redis
    # (a redis:// broker), else PostgreSQL (the database), else a SQLite file in var/.
    "RATE_LIMIT_URL": env.str("SHOPBRIDGE_RATE_LIMIT_URL", default=""),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs full URLs at DEBUG; our clients never put secrets in URLs, but keep it quiet.
        "urllib3": {"level": "WARNING"},
        "kombu.connection": {"level": "ERROR"},  # the filesystem transport warns that it has no host
    },
}

# --- Shopee ads (ads/) ------------------------------------------------------------------------
# A shop with more campaigns than the threshold is synced in chunks of ADS_CHUNK_SIZE (the first run; later
# runs adapt the size to ADS_CHUNK_TARGET_SECONDS within [MIN, MAX]). Chunks of one shop run in parallel,
# at most ADS_SHOP_CONCURRENCY at once (Shopee limits calls per shop).
ADS_CHUNK_THRESHOLD = env.int("ADS_CHUNK_THRESHOLD", default=200)
ADS_CHUNK_SIZE = env.int("ADS_CHUNK_SIZE", default=100)
ADS_CHUNK_SIZE_MIN = env.int("ADS_CHUNK_SIZE_MIN", default=20)
ADS_CHUNK_SIZE_MAX = env.int("ADS_CHUNK_SIZE_MAX", default=200)
ADS_CHUNK_TARGET_SECONDS = env.float("ADS_CHUNK_TARGET_SECONDS", default=10.0)
ADS_SHOP_CONCURRENCY = env.int("ADS_SHOP_CONCURRENCY", default=4)
# A failing chunk is tried this many times, waiting BACKOFF × 2^(attempt-1) seconds between tries.
ADS_CHUNK_MAX_ATTEMPTS = env.int("ADS_CHUNK_MAX_ATTEMPTS", default=3)
ADS_CHUNK_RETRY_BACKOFF = env.float("ADS_CHUNK_RETRY_BACKOFF", default=5.0)
ADS_STUCK_MINUTES = env.int("ADS_STUCK_MINUTES", default=30)
ADS_QUEUE_BATCH = env.int("ADS_QUEUE_BATCH", default=10)
ADS_QUEUE_KEEP_DAYS = env.int("ADS_QUEUE_KEEP_DAYS", default=7)
ADS_PERFORMANCE_DAYS = env.int("ADS_PERFORMANCE_DAYS", default=2)  # realtime runs: yesterday and today
ADS_BACKFILL_DAYS = env.int("ADS_BACKFILL_DAYS", default=7)
ADS_TOKEN_REFRESH_MARGIN_SECONDS = env.int("ADS_TOKEN_REFRESH_MARGIN_SECONDS", default=300)
ADMINS = [tuple(a.split(":", 1)) for a in env.list("ADMINS", default=[]) if ":" in a]  # "Name:mail@x"
SERVER_EMAIL = env.str("SERVER_EMAIL", default="shopbridge@localhost")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
