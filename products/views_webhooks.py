"""``POST /webhooks/nhanh/``: Nhanh's webhooks, authenticated by the app's verify token (not a staff session,
so no CSRF token: Nhanh cannot send one). A thin caller of ``services.webhooks.receive``; every answer is JSON."""

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .services.webhooks import receive


@csrf_exempt
def nhanh_webhook(request):
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405, headers={"Allow": "POST"})
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": "body too large"}, status=413)
    status, answer = receive(body, request.headers.get("Authorization"))
    return JsonResponse(answer, status=status)
