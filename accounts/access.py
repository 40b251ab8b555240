"""Who may use which workspace: the owner and staff, nobody else."""

from django.conf import settings
from django.http import Http404

from .models import Workspace


def workspace_for(user, slug: str) -> Workspace:
    """The workspace at /user/<slug>/ if `user` may use it; 404 otherwise.

    A 404 (not 403) for other people's workspaces: a participant cannot even learn which
    workspaces exist.
    """
    if not user.is_authenticated:
        raise Http404("No such workspace")
    try:
        workspace = Workspace.objects.select_related("owner").get(slug=slug)
    except Workspace.DoesNotExist:
        raise Http404("No such workspace") from None
    if workspace.owner_id != user.pk and not user.is_staff:
        raise Http404("No such workspace")
    return workspace


def is_same_origin(request) -> bool:
    """Whether a state-changing request comes from a page of this site (the CSRF check for the
    ComfyUI API, whose frontend sends no CSRF token).

    Browsers say where a request comes from: Sec-Fetch-Site, or Origin on every cross-origin
    POST. A request with neither is not a cross-site page's; it carries no victim's cookie.
    """

    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.get_host()}" or origin in settings.CSRF_TRUSTED_ORIGINS
