"""The admin's doors to registered pulls: a "Pull from …" page built from a spec (modes, filters, force
restart), and a mixin that puts the button on any model admin (``pull_spec = ("nhanh", "products")``)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .claims import running_pulls
from .errors import PullInputError, PullRefused
from .models import JobStatus, StartedBy
from .pull_specs import PullSpec, get_spec, start_pull
from .results import result_of

FORCE_RESTART = "jobs.force_restart_pull"


def pull_form_class(spec: PullSpec) -> type[forms.Form]:
    """A form with the spec's modes, its filters and force restart."""
    fields: dict[str, forms.Field] = {
        "mode": forms.ChoiceField(label=_("Mode"), choices=[(m.name, m.label) for m in spec.modes],
                                  widget=forms.RadioSelect,
                                  initial=spec.modes[0].name),
    }
    for f in spec.filters:
        if f.form_field is not None:
            fields[f.field_name] = f.form_field()
    fields["force_restart"] = forms.BooleanField(
        required=False, label=_("Force restart"),
        help_text=_("Stop a running pull with the same settings and start from the beginning."))
    return type(f"{spec.system.capitalize()}{spec.kind.capitalize()}PullForm", (forms.Form,), fields)


def pull_view(request, spec: PullSpec, *, back_url: str, opts=None, admin_site=None):
    if not request.user.has_perm(spec.permission):
        raise PermissionDenied(gettext("You lack the permission to start pulls."))
    form = pull_form_class(spec)(request.POST or None)
    if not request.user.has_perm(FORCE_RESTART):
        del form.fields["force_restart"]
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        mode = spec.mode(data["mode"])
        filters = {f.name: data.get(f.field_name) for f in spec.filters if f.name in mode.filters}
        try:
            started = start_pull(spec.system, spec.kind, mode.name, filters=filters,
                                 force_restart=data.get("force_restart", False), started_by=StartedBy.USER,
                                 user=request.user)
        except (PullInputError, PullRefused) as exc:
            messages.error(request, str(exc))
        else:
            _report(request, started)
            return redirect(back_url)
    context = {
        **(admin_site.each_context(request) if admin_site else {}),
        "title": spec.label,
        "opts": opts,
        "back_url": back_url,
        "form": form,
        "running": running_pulls().filter(system=spec.system, kind=spec.kind),
    }
    return TemplateResponse(request, "admin/jobs/pull.html", context)


def _report(request, started):
    job = started.job
    link = reverse("admin:jobs_backgroundjob_change", args=[job.pk])
    if not started.synchronous:
        resumed = " " + gettext("It resumes from the checkpoint of an unfinished run.") if started.resumed else ""
        messages.success(request, format_html(
            gettext('Pull started in the background as <a href="{}">job #{}</a>; watch it on the job dashboard.{}'),
            link, job.pk, resumed))
    elif job.status == JobStatus.COMPLETED:
        r = result_of(job)
        messages.success(request, format_html(
            gettext('Pull finished (<a href="{}">job #{}</a>): {} created, {} updated, {} unchanged, {} failed.'),
            link, job.pk, r.created, r.updated, r.skipped, r.failed))
        if r.errors:
            messages.warning(request,
                             gettext("Rows that could not be read: %(rows)s") % {"rows": "; ".join(r.errors[:5])})
    else:
        messages.error(request, format_html(gettext('Pull <a href="{}">job #{}</a> {}: {}'), link, job.pk,
                                            str(job.get_status_display()).lower(), job.error.split("\n", 1)[0]))


class PullButtonsMixin:
    """For a ModelAdmin: a "Pull from …" button and page for ``pull_spec`` (system, kind)."""

    change_list_template = "admin/jobs/change_list_pull.html"
    pull_spec: tuple[str, str] = ("", "")

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name

        def view(request):
            back = reverse("admin:{}_{}_changelist".format(*info))
            return pull_view(request, get_spec(*self.pull_spec), back_url=back, opts=self.model._meta,
                             admin_site=self.admin_site)

        return [path("pull/", self.admin_site.admin_view(view), name="{}_{}_pull".format(*info))] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        spec = get_spec(*self.pull_spec)
        extra_context = {**(extra_context or {}), "can_run_pull": request.user.has_perm(spec.permission),
                         "pull_system_label": spec.system_label, "extra_buttons": self.extra_buttons(request)}
        return super().changelist_view(request, extra_context=extra_context)

    def extra_buttons(self, request) -> list[dict]:
        return []
