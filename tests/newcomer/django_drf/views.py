from django.http import JsonResponse
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from lwa_middleware.integrations.drf import HasLWAScopes


def home(request):
    user = request.user
    return JsonResponse({"username": user.username if user.is_authenticated else None})


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def me(request):
    return Response({"username": request.user.username, "pk": request.user.pk,
                     "name": request.auth.name})


@api_view(["GET"])
@permission_classes([HasLWAScopes.require("postal_code")])
def shipping(request):
    return Response({"postal_code": request.auth.postal_code})
