"""A userinfo endpoint for the test provider (GitHub/OpenID Connect style): who the access token belongs to."""

from django.http import JsonResponse
from oauth2_provider.views.generic import ProtectedResourceView


class UserInfoView(ProtectedResourceView):
    """`GET /o/userinfo/` with `Authorization: Bearer <access token>` → {"sub", "email", "login"}; 401 without."""

    def get(self, request, *args, **kwargs):
        user = request.resource_owner
        return JsonResponse({"sub": f"user-{user.pk}", "email": f"{user.username}@provider.example",
                             "login": user.username})
