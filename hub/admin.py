"""Third-party admins re-registered with our permissions.

django-celery-beat's PeriodicTask admin declares no permission on its actions: anyone who may *view* periodic
tasks could enable them or "run selected tasks" (start the daily workflow, a loyalty sync). Here enabling,
disabling and toggling need ``change_periodictask``, and running a task now needs the permissions its
registered schedule declares (config.schedules ``Schedule.permissions``: those of the jobs it starts); a task
no schedule declares (one added by hand, another app's Celery task) is run by superusers only. What a task
runs (task name, arguments, routing) is edited by superusers only, so the change permission cannot turn a
schedule into a different task either.
"""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import PeriodicTask

from config.schedules import schedule_for_task

# What decides which code a periodic task runs: superusers only.
TASK_DEFINING_FIELDS = ("task", "args", "kwargs", "queue", "exchange", "routing_key", "headers", "priority")


def may_run_task(user, task_name: str) -> bool:
    """Whether ``user`` may start the Celery task ``task_name`` by hand (the admin's "Run selected tasks")."""
    if user.is_superuser:
        return True
    schedule = schedule_for_task(task_name)
    return bool(schedule and schedule.permissions) and user.has_perms(schedule.permissions)


class ScheduleOnlyForm(beat_admin.PeriodicTaskForm):
    """For staff who may re-time a schedule but not change what it runs: no task fields, no task check."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("regtask", "task"):
            self.fields.pop(name, None)

    def clean(self):
        data = forms.ModelForm.clean(self)  # the parent insists on a task name, which this form does not edit
        if data.get("expire_seconds") is not None and data.get("expires"):
            raise forms.ValidationError(gettext("Only one can be set, in expires and expire_seconds"))
        return data


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    def get_form(self, request, obj=None, change=False, **kwargs):
        if not request.user.is_superuser:
            kwargs["form"] = ScheduleOnlyForm
        return super().get_form(request, obj, change, **kwargs)

    def has_add_permission(self, request):
        # A new periodic task may name any registered Celery task with any arguments.
        return request.user.is_superuser

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else fields + TASK_DEFINING_FIELDS

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        # "regtask" is the form's task picker, not a model field: drop it rather than show it read-only.
        return [(name, {**opts, "fields": tuple(f for f in opts["fields"] if f != "regtask")})
                for name, opts in fieldsets]

    @admin.action(description=_("Enable selected tasks"), permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, queryset)

    @admin.action(description=_("Disable selected tasks"), permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, queryset)

    @admin.action(description=_("Toggle activity of selected tasks"), permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, queryset)

    @admin.action(description=_("Run selected tasks"), permissions=["view"])
    def run_tasks(self, request, queryset):
        refused = sorted({t.name for t in queryset if not may_run_task(request.user, t.task)})
        if refused:
            self.message_user(request, gettext("Not run: you lack the permissions to start %(tasks)s. Nothing was run.")
                              % {"tasks": ", ".join(refused)}, messages.ERROR)
            return None
        return super().run_tasks(request, queryset)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)


# Export buttons on the lists staff filter (hub/export.py); last, so every app's admin is registered by now.
from .export import attach_exports  # noqa: E402

attach_exports(admin.site)
