"""Helpers for staff-only JSON endpoints (used here and by the start endpoints of other apps)."""

from functools import wraps

from django.http import JsonResponse


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
