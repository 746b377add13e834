import json

from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from jobs import services as jobs
from jobs.http import staff_json
from jobs.models import StartedBy
from jobs.services import job_as_dict

from .services.pulls import PullInputError, start_customer_pull


@require_POST
@staff_json("jobs.run_pull")
def start_pull(request):
    """Start a customer pull. Body: {"system": "nhanh"|"shopify", "mode": …, "filters": {…}, "query": …,
    "force_restart": false}. 202 + job for background pulls, 200 + counts for synchronous ones,
    409 + the running pull when the id is taken (or too many pulls run), 400 for a bad request."""
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
        started = start_customer_pull(
            str(body.get("system", "")), str(body.get("mode", "all")), filters=body.get("filters") or {},
            query=body.get("query"), force_restart=force, started_by=StartedBy.USER, user=request.user,
        )
    except PullInputError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except jobs.PullRefused as exc:
        return JsonResponse(exc.as_dict(), status=409)
    data = {"job_id": started.job.pk, "progress_id": started.progress_id, "resumed": started.resumed,
            "job_url": reverse("jobs:job-detail", args=[started.job.pk]), "job": job_as_dict(started.job)}
    return JsonResponse(data, status=200 if started.synchronous else 202)
