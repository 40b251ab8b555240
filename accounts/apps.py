from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Participants and workspaces"

    def ready(self):
        # Django's place for these: the app registry is ready only now.
        from django.contrib import admin

        from . import signals  # noqa: F401  (login failures feed the throttle)
        from .forms import AdminLoginForm

        admin.site.login_form = AdminLoginForm
