"""Default loyalty tiers, and a backfill of the phone tables for customers stored before they existed."""

from django.db import migrations

# Frozen here on purpose: a migration must not change when the app's defaults do.
DEFAULT_TIERS = [("Member", 0), ("Bronze", 3_000_000), ("Silver", 6_000_000), ("Gold", 10_000_000),
                 ("Platinum", 20_000_000), ("Diamond", 100_000_000)]


def add_tiers(apps, schema_editor):
    Tier = apps.get_model("customers", "LoyaltyTier")
    for name, min_total in DEFAULT_TIERS:
        Tier.objects.get_or_create(min_total=min_total, defaults={"name": name})


def backfill_phones(apps, schema_editor):
    from customers.services.records import nhanh_customer, shopify_customer

    for model_name, phone_name, parse in (("NhanhCustomer", "NhanhCustomerPhone", nhanh_customer),
                                          ("ShopifyCustomer", "ShopifyCustomerPhone", shopify_customer)):
        Customer, Phone = apps.get_model("customers", model_name), apps.get_model("customers", phone_name)
        done = set(Phone.objects.values_list("customer_id", flat=True).distinct())
        batch = []
        for pk, raw in Customer.objects.values_list("pk", "raw").iterator(chunk_size=2000):
            if pk in done:
                continue
            try:
                _fields, phones = parse(raw)
            except ValueError:
                continue
            batch.extend(Phone(customer_id=pk, e164=e164, source=source) for e164, source in phones)
            if len(batch) >= 5000:
                Phone.objects.bulk_create(batch, ignore_conflicts=True)
                batch = []
        Phone.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("customers", "0002_loyaltytier_ambiguousmatch_customermapping")]
    operations = [
        migrations.RunPython(add_tiers, migrations.RunPython.noop),
        migrations.RunPython(backfill_phones, migrations.RunPython.noop),
    ]
