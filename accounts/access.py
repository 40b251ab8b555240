"""Who may use which workspace: the owner and staff, nobody else."""
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
