"""The "Pull from …" page of the Nhanh and Shopify customer admins (a thin caller of services.pulls)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from jobs import services as jobs
from jobs.models import JobStatus, StartedBy

from .forms import NhanhPullForm, ShopifyPullForm
from .services.pulls import PullInputError, start_customer_pull

RUN_PULL = "jobs.run_pull"
FORCE_RESTART = "jobs.force_restart_pull"


def pull_view(model_admin, request, system: str):
    if not request.user.has_perm(RUN_PULL):
        raise PermissionDenied("You lack the permission to start pulls.")
    form_class = NhanhPullForm if system == "nhanh" else ShopifyPullForm
    form = form_class(request.POST or None)
    if not request.user.has_perm(FORCE_RESTART):
        del form.fields["force_restart"]
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            started = start_customer_pull(
                system, data["mode"],
                filters=form.filters() if system == "nhanh" else None,
                query=data.get("query"),
                force_restart=data.get("force_restart", False),
                started_by=StartedBy.USER, user=request.user,
            )
        except (PullInputError, jobs.PullRefused) as exc:
            messages.error(request, str(exc))
        else:
            _report(request, started)
            return redirect(reverse(f"admin:customers_{system}customer_changelist"))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Pull customers from {'Nhanh.vn' if system == 'nhanh' else 'Shopify'}",
        "opts": model_admin.model._meta,
        "form": form,
        "running": jobs.running_pulls().filter(system=system, kind="customers"),
    }
    return TemplateResponse(request, "admin/customers/pull.html", context)


def _report(request, started):
    job = started.job
    link = reverse("admin:jobs_backgroundjob_change", args=[job.pk])
    m = job.metadata
    if not started.synchronous:
        resumed = " It resumes from the checkpoint of an unfinished run." if started.resumed else ""
        messages.success(request, format_html(
            'Pull started in the background as <a href="{}">job #{}</a>; watch it on the job dashboard.{}',
            link, job.pk, resumed))
    elif job.status == JobStatus.COMPLETED:
        messages.success(request, format_html(
            'Pull finished (<a href="{}">job #{}</a>): {} created, {} updated, {} unchanged, {} failed.',
            link, job.pk, m.get("created", 0), m.get("updated", 0), m.get("skipped", 0), m.get("failed", 0)))
        if m.get("errors"):
            messages.warning(request, "Rows that could not be read: " + "; ".join(m["errors"][:5]))
    else:
        messages.error(request, format_html('Pull <a href="{}">job #{}</a> {}: {}', link, job.pk,
                                            job.get_status_display().lower(), job.error.split("\n", 1)[0]))
