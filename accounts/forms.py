from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from . import throttle

THROTTLED = ("Too many failed logins for this name. Wait 15 minutes, log in from the browser you used "
             "before, or ask the instructor to reset your password.")


class ThrottledLogin:
    """Refuses to even check a password while its name or address is throttled."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = throttle.client_address(self.request) if self.request else ""
        if throttle.blocked(username, address, throttle.known_device(self.request, username)):
            raise forms.ValidationError(THROTTLED, code="throttled")
        return super().clean()


class LoginForm(ThrottledLogin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLogin, AdminAuthenticationForm):
    pass
