from django.http import JsonResponse
from django.views.decorators.http import require_GET

from .http import staff_json
from .models import ACTIVE_STATUSES, BackgroundJob, JobStatus, JobType
from .services import job_as_dict


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
    if (job_type := request.GET.get("type")) in JobType.values:
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
