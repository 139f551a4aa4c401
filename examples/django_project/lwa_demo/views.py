"""Views of the demo: what the LWA middleware puts on the request."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from lwa_middleware.integrations.django import lwa_required


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def home(request: HttpRequest) -> JsonResponse:
    # SET_USER is on: request.user is an LWAUser, or anonymous.
    user = request.user
    return JsonResponse({"hello": user.display_name if user.is_authenticated else "anonymous"})


def me(request: HttpRequest) -> JsonResponse:
    identity = request.lwa_identity
    return JsonResponse(identity.to_dict())


@lwa_required("postal_code")
def shipping(request: HttpRequest) -> JsonResponse:
    identity = request.lwa_identity
    return JsonResponse({"user_id": identity.user_id, "postal_code": identity.postal_code})
