# PullMark is the pull framework's now (jobs.PullMark): copy the marks over, then drop this app's table.
# The permission customers.run_customer_pull guarded nothing (pulls check jobs.run_pull): it goes.

from django.db import migrations


def copy_marks(apps, schema_editor):
    old = apps.get_model("customers", "PullMark")
    new = apps.get_model("jobs", "PullMark")
    new.objects.bulk_create([new(key=m.key, value=m.value) for m in old.objects.all()], ignore_conflicts=True)


def drop_unused_permission(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(content_type__app_label="customers", codename="run_customer_pull").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0004_mapping_write_speed'),
        ('jobs', '0002_pullmark_and_registered_types'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.RunPython(copy_marks, migrations.RunPython.noop),
        migrations.DeleteModel(
            name='PullMark',
        ),
        migrations.AlterModelOptions(
            name='nhanhcustomer',
            options={'ordering': ['-upstream_updated_at', '-id']},
        ),
        migrations.RunPython(drop_unused_permission, migrations.RunPython.noop),
    ]
