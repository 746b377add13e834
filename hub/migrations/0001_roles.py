"""The viewer / operator / manager groups (hub/roles.py); post_migrate keeps them in step afterwards."""

from django.db import migrations


def create_roles(apps, schema_editor):
    from hub.roles import create_all_permissions, sync_roles

    create_all_permissions(apps)
    sync_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_roles(apps, schema_editor):
    from hub.roles import ROLES

    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("jobs", "0003_rescue_and_handback"),
        ("integrations", "0001_initial"),
        ("customers", "0006_nhanh_record_as_documented"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
