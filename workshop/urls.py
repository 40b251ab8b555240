from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.forms import LoginForm
from accounts.views import LogoutView, link_login

from . import metrics, views

urlpatterns = [
    path("", views.home, name="home"),
    path("health", views.health, name="health"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="login.html", authentication_form=LoginForm),
        name="login",
    ),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(template_name="password_change.html"),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="password_change.html"),
        name="password_change_done",
    ),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("accounts/link/<str:token>/", link_login, name="link-login"),
    path("metrics", metrics.view, name="metrics"),
    path("admin/console/", include("jobs.console_urls")),  # the instructor's live console
    path("admin/rq/", include("django_rq.urls")),  # RQ's own dashboard: queues, workers, failed jobs
    path("admin/", admin.site.urls),
    path("api/worker/", include("jobs.urls")),
    path("", include("frontend_bridge.urls")),
]
