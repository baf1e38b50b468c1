"""A demo third-party API served by the platform itself in development (DEMO_UPSTREAM_ENABLED).

Clearly marked as a demo: it answers per bearer token so the README's examples show which
credential a run used, without reaching the internet.
"""

import hashlib

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def invoices(request):
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or len(auth) < 12:
        return JsonResponse({"error": "missing or invalid bearer token"}, status=401)
    # Identify the account by a digest of its token: the demo never echoes a credential.
    account = "acct_" + hashlib.sha256(auth.encode()).hexdigest()[:8]
    return JsonResponse(
        {
            "demo": "This is the platform's built-in demo upstream, not a real billing API.",
            "account": account,
            "query": request.GET.get("q", ""),
            "invoices": [
                {"id": f"{account}-inv-1", "amount": 120.0, "currency": "EUR"},
                {"id": f"{account}-inv-2", "amount": 75.5, "currency": "EUR"},
            ],
        }
    )


urlpatterns = [path("invoices", invoices, name="demo-invoices")]
