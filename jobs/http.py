"""Helpers for staff-only JSON endpoints (used here and by the start endpoints of other apps): the staff
check, the bounded JSON body reader, and the CSRF failure view that answers the API in JSON."""

import json
from functools import wraps

from django.http import JsonResponse
from django.views.csrf import csrf_failure as django_csrf_failure

# A start request is a few hundred bytes; anything near this is not one of ours.
MAX_BODY_BYTES = 16 * 1024
# Our bodies are an object of scalars and one object of filters: depth 2. Deeper is refused before parsing,
# so JSON nested 100,000 deep never reaches the (recursive) decoder.
MAX_JSON_DEPTH = 4


class BadRequest(ValueError):
    """A request refused with 400 and this message, as JSON."""


def staff_json(permission: str | None = None):
    """Allow only active staff (with ``permission`` if given); answer JSON 401/403 otherwise, never a
    redirect to a login page that a script would misread as success."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                return JsonResponse({"error": "Log in as staff first."}, status=401)
            if not (user.is_active and user.is_staff):
                return JsonResponse({"error": "Staff only."}, status=403)
            if permission and not user.has_perm(permission):
                return JsonResponse({"error": f"You lack the permission {permission}."}, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in JSON ``text`` (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_json_object(request) -> dict:
    """The request's body as a JSON object, bounded in size and depth; raises BadRequest otherwise."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise BadRequest(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    raw = request.body or b"{}"
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body must be UTF-8 JSON.") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise BadRequest(f"The body is nested deeper than {MAX_JSON_DEPTH} levels.")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def csrf_failure(request, reason=""):
    """settings.CSRF_FAILURE_VIEW: scripts on /api/ get JSON 403 (not Django's HTML page); pages get Django's."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": f"CSRF check failed: {reason}. Send the csrftoken cookie's value in the "
                                      "X-CSRFToken header."}, status=403)
    return django_csrf_failure(request, reason=reason)
