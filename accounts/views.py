"""Signing out. Django logs out only on a POST (a link could sign anyone out); a GET, from a
typed address or an old bookmark, gets a page with the button instead of a bare 405."""
from django.contrib.auth import views as auth_views
from django.shortcuts import render


class LogoutView(auth_views.LogoutView):
    http_method_names = ["get", "post", "options"]

    def get(self, request, *args, **kwargs):
        return render(request, "logout.html", {"signed_in": request.user.is_authenticated})
