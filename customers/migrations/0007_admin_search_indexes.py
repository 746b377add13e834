"""Indexes for the admin's search (customers/search.py) on PostgreSQL; nothing on SQLite, which scans.

- pg_trgm and unaccent (checked first: a clear error if the server lacks them);
- ``shopbridge_fold(text)``: lower(unaccent(text)) with đ/Đ → d, IMMUTABLE so it can be indexed
  (``unaccent()`` itself is only STABLE: its dictionary could change; ours is pinned by name);
- a trigram GIN index on each customer table's search document (name both ways round and email, folded);
- ``reverse(e164) text_pattern_ops`` on both phone tables, for "the last digits" searches. The E.164 prefix
  search needs nothing new: Django already built ``e164 varchar_pattern_ops`` next to e164's index.

The expressions are frozen here (a migration must not change when the app does); tests check that the
queries of customers/search.py use these indexes.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import TrigramExtension, UnaccentExtension
from django.db import DatabaseError, migrations, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Reverse

EXTENSIONS = ("pg_trgm", "unaccent")


class Fold(models.Func):
    function = "shopbridge_fold"
    output_field = models.TextField()


def _sep():
    return Value(" | ")


def nhanh_document():
    return Fold(Concat(F("name"), _sep(), F("email"), output_field=models.TextField()))


def shopify_document():
    return Fold(Concat(F("last_name"), Value(" "), F("first_name"), _sep(), F("first_name"), Value(" "),
                       F("last_name"), _sep(), F("email"), output_field=models.TextField()))


INDEXES = [
    ("NhanhCustomer", lambda: GinIndex(OpClass(nhanh_document(), name="gin_trgm_ops"),
                                       name="nhanh_customer_search_trgm")),
    ("ShopifyCustomer", lambda: GinIndex(OpClass(shopify_document(), name="gin_trgm_ops"),
                                         name="shopify_customer_search_trgm")),
    ("NhanhCustomerPhone", lambda: models.Index(OpClass(Reverse("e164"), name="text_pattern_ops"),
                                                name="nhanh_phone_e164_suffix")),
    ("ShopifyCustomerPhone", lambda: models.Index(OpClass(Reverse("e164"), name="text_pattern_ops"),
                                                  name="shopify_phone_e164_suffix")),
]


def _postgres(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def check_extensions(apps, schema_editor):
    if not _postgres(schema_editor):
        return
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", [list(EXTENSIONS)])
        missing = set(EXTENSIONS) - {name for (name,) in cur.fetchall()}
    if missing:
        raise RuntimeError(f"PostgreSQL lacks the extension(s) {', '.join(sorted(missing))} that the admin's "
                           "search needs: install the server's contrib package (postgresql-contrib).")


def create_fold(apps, schema_editor):
    if not _postgres(schema_editor):
        return
    connection = schema_editor.connection
    with connection.cursor() as cur:
        cur.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'unaccent'")
        schema = cur.fetchone()[0]
        unaccent = f"{schema}.unaccent"
        try:
            # unaccent's own C function declared IMMUTABLE: shopbridge_fold is then inlined into queries and
            # indexes and costs ~1 µs a row instead of ~5 µs for a SQL function call. Needs a superuser.
            with transaction.atomic(using=connection.alias):
                cur.execute("CREATE OR REPLACE FUNCTION shopbridge_unaccent(regdictionary, text) RETURNS text "
                            "LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS '$libdir/unaccent', 'unaccent_dict'")
            unaccent = "shopbridge_unaccent"
        except DatabaseError:
            pass  # not a superuser: wrap the STABLE unaccent() in an IMMUTABLE SQL function (not inlined)
        cur.execute(f"""
            CREATE OR REPLACE FUNCTION shopbridge_fold(text) RETURNS text
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            AS $$ SELECT lower({unaccent}('{schema}.unaccent'::regdictionary, translate($1, 'đĐ', 'dd'))) $$
        """)


def drop_fold(apps, schema_editor):
    if _postgres(schema_editor):
        schema_editor.execute("DROP FUNCTION IF EXISTS shopbridge_fold(text)")
        schema_editor.execute("DROP FUNCTION IF EXISTS shopbridge_unaccent(regdictionary, text)")


def add_indexes(apps, schema_editor):
    if not _postgres(schema_editor):
        return
    for model_name, index in INDEXES:
        schema_editor.add_index(apps.get_model("customers", model_name), index())


def remove_indexes(apps, schema_editor):
    if not _postgres(schema_editor):
        return
    for model_name, index in INDEXES:
        schema_editor.remove_index(apps.get_model("customers", model_name), index())


class Migration(migrations.Migration):
    dependencies = [("customers", "0006_nhanh_record_as_documented")]

    operations = [
        migrations.RunPython(check_extensions, migrations.RunPython.noop),
        TrigramExtension(),  # both skip databases other than PostgreSQL
        UnaccentExtension(),
        migrations.RunPython(create_fold, drop_fold),
        migrations.RunPython(add_indexes, remove_indexes),
    ]
