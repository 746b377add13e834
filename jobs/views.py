from typing import Annotated

from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from .errors import PullInputError, PullRefused
from .http import BadRequest, read_json_object, staff_json
from .models import ACTIVE_STATUSES, BackgroundJob, JobStatus, StartedBy
from .pull_specs import RUN_PULL, get_spec, start_pull
from .registry import is_registered
from .serializers import job_as_dict, refusal_as_dict

MAX_IDS = 500
MAX_ID = 2**63 - 1  # a bigint primary key; larger numbers overflow SQLite's and PostgreSQL's integers


def _clean_text(value: str) -> str:
    # NUL is refused by PostgreSQL text columns; a lone surrogate ("\ud800") cannot be stored as UTF-8.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


Text = Annotated[StrictStr, StringConstraints(max_length=500), AfterValidator(_clean_text)]
Name = Annotated[StrictStr, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
FilterName = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,39}$")]  # lastBoughtDateFrom
# Filter values are scalars: each spec's FilterField parses and checks them further (dates, ranges).
FilterValue = Text | Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)] | None


class StartPullBody(BaseModel):
    """POST /api/pulls/<kind>/: types are JSON's own ("force_restart": "false" is refused, not true)."""

    model_config = ConfigDict(extra="forbid")

    system: Name
    mode: Name | None = None
    filters: Annotated[dict[FilterName, FilterValue], Field(max_length=20)] | None = None
    query: Text | None = None
    force_restart: StrictBool = False


def _ids(value: str) -> list[int]:
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if len(ids) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} ids")
    if not all(part.isascii() and part.isdigit() and len(part) <= 19 and 0 < int(part) <= MAX_ID for part in ids):
        raise ValueError(f"ids must be comma-separated integers from 1 to {MAX_ID}")
    return [int(part) for part in ids]


class JobListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ids: Annotated[str, StringConstraints(max_length=MAX_IDS * 21), AfterValidator(_ids)] | None = None
    status: Annotated[str, StringConstraints(max_length=40)] | None = None
    type: Annotated[str, StringConstraints(max_length=100)] | None = None
    active: Annotated[str, StringConstraints(max_length=10)] | None = None
    limit: Annotated[str, StringConstraints(max_length=20)] | None = None


def _invalid(exc: ValidationError) -> JsonResponse:
    problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)]
    return JsonResponse({"error": "Bad request: " + "; ".join(problems[:5]), "problems": problems[:20]}, status=400)


@require_GET
@staff_json("jobs.view_backgroundjob")
def job_list(request):
    """Jobs as JSON, newest first. ``?ids=1,2`` picks jobs (the dashboard's poll), ``?status=RUNNING``
    and ``?type=…`` filter, ``?active=1`` keeps PENDING/RUNNING ones, ``?limit=`` caps (≤ 500)."""
    try:
        q = JobListQuery.model_validate({k: request.GET.get(k) for k in request.GET})
    except ValidationError as exc:
        return _invalid(exc)
    qs = BackgroundJob.objects.select_related("started_by_user")
    if q.ids is not None:
        qs = qs.filter(pk__in=q.ids)
    if q.status in JobStatus.values:
        qs = qs.filter(status=q.status)
    if q.type and is_registered(q.type):
        qs = qs.filter(type=q.type)
    if q.active:
        qs = qs.filter(status__in=ACTIVE_STATUSES)
    limit = int(q.limit) if q.limit and q.limit.isascii() and q.limit.isdigit() else 100
    limit = max(1, min(limit, 500))
    latest = BackgroundJob.objects.order_by("-pk").values_list("pk", flat=True).first()
    return JsonResponse({"latest_id": latest, "jobs": [job_as_dict(j) for j in qs[:limit]]})


@require_GET
@staff_json("jobs.view_backgroundjob")
def job_detail(request, pk: int):
    job = BackgroundJob.objects.select_related("started_by_user").filter(pk=pk).first() if pk <= MAX_ID else None
    if job is None:
        return JsonResponse({"error": f"No job #{pk}."}, status=404)
    # job_as_dict carries the error's message (its first line); the stored traceback stays in the log and on
    # the job's admin page, for superusers.
    data = job_as_dict(job)
    data["params"] = job.params
    return JsonResponse(data)


@require_POST
@staff_json(RUN_PULL)
def start_pull_view(request, kind: str):
    """Start a pull of ``kind`` (customers, products, …). Body: {"system": "nhanh", "mode": …, "filters": {…},
    "force_restart": false} (Shopify's search query may also come as "query"). 202 + job for background
    pulls, 200 + counts for synchronous ones, 409 + the running pull when the id is taken (or too many pulls
    run), 400 for a bad request (nothing is stored then)."""
    try:
        body = StartPullBody.model_validate(read_json_object(request))
    except BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except ValidationError as exc:
        return _invalid(exc)
    if body.force_restart and not request.user.has_perm("jobs.force_restart_pull"):
        return JsonResponse({"error": "You lack the permission jobs.force_restart_pull."}, status=403)
    try:
        spec = get_spec(body.system, kind)
        if not request.user.has_perm(spec.permission):
            return JsonResponse({"error": f"You lack the permission {spec.permission}."}, status=403)
        filters = dict(body.filters or {})
        if body.query is not None:
            filters["query"] = body.query
        started = start_pull(spec.system, spec.kind, body.mode, filters=filters,
                             force_restart=body.force_restart, started_by=StartedBy.USER, user=request.user)
    except PullInputError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except PullRefused as exc:
        return JsonResponse(refusal_as_dict(exc), status=409)
    data = {"job_id": started.job.pk, "progress_id": started.progress_id, "resumed": started.resumed,
            "job_url": reverse("jobs:job-detail", args=[started.job.pk]), "job": job_as_dict(started.job)}
    return JsonResponse(data, status=200 if started.synchronous else 202)
