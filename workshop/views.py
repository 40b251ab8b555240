from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect

from . import status


@login_required
def home(request):
    """Participants go to their workspace; staff to the instructor console."""
    if request.user.is_staff:
        return redirect("/admin/")
    workspace = getattr(request.user, "workspace", None)
    if workspace is None:
        return JsonResponse({"error": "This account has no workspace; ask the instructor."}, status=404)
    return redirect(f"/user/{workspace.slug}/")


def health(request):
    """Liveness for the load balancer: the database and Redis answer."""

    checks = {
        name: "ok" if result["ok"] else f"error: {result['error']}"
        for name, result in (("database", status.database()), ("redis", status.redis()))
    }
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503)
