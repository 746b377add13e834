"""``{% shopbridge_overview %}``: the overview on the admin home (built by ``hub.overview``, rendered here)."""

from django import template

from hub.overview import build_overview

register = template.Library()


@register.inclusion_tag("admin/hub/overview.html", takes_context=True)
def shopbridge_overview(context):
    request = context["request"]
    return {"overview": build_overview(request.user), "request": request,
            "csrf_token": context.get("csrf_token")}
