from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from . import throttle

THROTTLED = ("Too many failed logins for this name: try again in {seconds} s, log in from the browser you "
             "used before, or ask the instructor to reset your password.")


class ThrottledLogin:
    """Counts the try, and refuses to even check its password until the throttle gives this name
    its next turn."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = throttle.client_address(self.request) if self.request else ""
        wait = throttle.begin(username, address, throttle.known_device(self.request, username))
        if wait:
            raise forms.ValidationError(THROTTLED.format(seconds=wait), code="throttled")
        return super().clean()


class LoginForm(ThrottledLogin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLogin, AdminAuthenticationForm):
    pass
