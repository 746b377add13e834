"""The overview's refresh: ``GET /api/overview/`` answers the fragment the admin home shows, rendered again, and how
soon to ask next (2 s while jobs run, 10 s otherwise: the job dashboard's rhythm)."""

from django.http import JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from jobs.http import staff_json

from .overview import build_overview


@require_GET
@staff_json()  # each section checks its own view permission (hub.overview)
def overview(request):
    data = build_overview(request.user)
    html = render_to_string("admin/hub/overview_fragment.html", {"overview": data}, request=request)
    return JsonResponse({"html": html, "any_active": data["any_active"], "refresh_seconds": data["refresh_seconds"]})
