"""Signing out, and one-time login links. Django logs out only on a POST (a link could sign
anyone out); a GET, from a typed address or an old bookmark, gets a page with the button instead
of a bare 405. A login link is used only by its page's POST, so a link preview or a scanner that
fetches it does not use it up."""

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect, render

from . import loginlinks


class LogoutView(auth_views.LogoutView):
    http_method_names = ["get", "post", "options"]

    def get(self, request, *args, **kwargs):
        return render(request, "logout.html", {"signed_in": request.user.is_authenticated})


def link_login(request, token):
    if request.method == "POST":
        user = loginlinks.redeem(token)
        if user is not None:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            workspace = getattr(user, "workspace", None)
            return redirect("/admin/console/" if user.is_staff or not workspace else f"/user/{workspace.slug}/")
    user = loginlinks.owner(token) if request.method in ("GET", "HEAD") else None
    return render(
        request, "link_login.html", {"username": user.get_username() if user else ""}, status=200 if user else 410
    )
