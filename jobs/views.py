import json

from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from .errors import PullInputError, PullRefused
from .http import staff_json
from .models import ACTIVE_STATUSES, BackgroundJob, JobStatus, StartedBy
from .pull_specs import RUN_PULL, get_spec, start_pull
from .registry import is_registered
from .serializers import job_as_dict, refusal_as_dict


@require_GET
@staff_json("jobs.view_backgroundjob")
def job_list(request):
    """Jobs as JSON, newest first. ``?ids=1,2`` picks jobs (the dashboard's poll), ``?status=RUNNING``
    and ``?type=…`` filter, ``?active=1`` keeps PENDING/RUNNING ones, ``?limit=`` caps (≤ 500)."""
    qs = BackgroundJob.objects.select_related("started_by_user")
    if ids := request.GET.get("ids"):
        try:
            qs = qs.filter(pk__in=[int(i) for i in ids.split(",") if i.strip()][:500])
        except ValueError:
            return JsonResponse({"error": "ids must be comma-separated integers"}, status=400)
    if (status := request.GET.get("status")) in JobStatus.values:
        qs = qs.filter(status=status)
    if (job_type := request.GET.get("type")) and is_registered(job_type):
        qs = qs.filter(type=job_type)
    if request.GET.get("active"):
        qs = qs.filter(status__in=ACTIVE_STATUSES)
    try:
        limit = max(1, min(int(request.GET.get("limit", 100)), 500))
    except ValueError:
        limit = 100
    latest = BackgroundJob.objects.order_by("-pk").values_list("pk", flat=True).first()
    return JsonResponse({"latest_id": latest, "jobs": [job_as_dict(j) for j in qs[:limit]]})


@require_GET
@staff_json("jobs.view_backgroundjob")
def job_detail(request, pk: int):
    job = BackgroundJob.objects.select_related("started_by_user").filter(pk=pk).first()
    if job is None:
        return JsonResponse({"error": f"No job #{pk}."}, status=404)
    data = job_as_dict(job)
    data["error"] = job.error
    data["params"] = job.params
    return JsonResponse(data)


@require_POST
@staff_json(RUN_PULL)
def start_pull_view(request, kind: str):
    """Start a pull of ``kind`` (customers, products, …). Body: {"system": "nhanh", "mode": …, "filters": {…},
    "force_restart": false} (Shopify's search query may also come as "query"). 202 + job for background
    pulls, 200 + counts for synchronous ones, 409 + the running pull when the id is taken (or too many pulls
    run), 400 for a bad request."""
    try:
        body = json.loads(request.body or b"{}")
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        return JsonResponse({"error": "The body must be a JSON object."}, status=400)
    force = bool(body.get("force_restart"))
    if force and not request.user.has_perm("jobs.force_restart_pull"):
        return JsonResponse({"error": "You lack the permission jobs.force_restart_pull."}, status=403)
    try:
        spec = get_spec(str(body.get("system", "")), kind)
        if not request.user.has_perm(spec.permission):
            return JsonResponse({"error": f"You lack the permission {spec.permission}."}, status=403)
        filters = body.get("filters") or {}
        if not isinstance(filters, dict):
            raise PullInputError("filters must be a JSON object")
        if body.get("query") is not None:
            filters = {**filters, "query": body["query"]}
        mode = body.get("mode")
        started = start_pull(spec.system, spec.kind, None if mode is None else str(mode), filters=filters,
                             force_restart=force, started_by=StartedBy.USER, user=request.user)
    except PullInputError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except PullRefused as exc:
        return JsonResponse(refusal_as_dict(exc), status=409)
    data = {"job_id": started.job.pk, "progress_id": started.progress_id, "resumed": started.resumed,
            "job_url": reverse("jobs:job-detail", args=[started.job.pk]), "job": job_as_dict(started.job)}
    return JsonResponse(data, status=200 if started.synchronous else 202)
