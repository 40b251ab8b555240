from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest

from . import throttle

# Said when a try must wait: what happened, when to try again, and the way in that always works.
THROTTLED = (
    "Too many failed logins for this name (someone may be guessing it), so its logins are "
    "slowed: try again in {seconds} s. The browser you logged in with before is not slowed. "
    "{remedy}"
)
ASK_INSTRUCTOR = "If it keeps saying this, ask the instructor for a one-time login link."
ASK_OPERATOR = (
    "If it keeps saying this, the operator can make you a one-time login link (manage.py workshop_users link NAME)."
)


class ThrottledLogin:
    """Counts the try, and refuses to even check its password until the throttle gives this name
    its next turn."""

    remedy = ASK_INSTRUCTOR
    # A mixin before AuthenticationForm, which has these.
    cleaned_data: dict
    request: HttpRequest | None

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = throttle.client_address(self.request) if self.request else ""
        wait = throttle.begin(username, address, throttle.known_device(self.request, username))
        if wait:
            raise forms.ValidationError(
                THROTTLED.format(seconds=wait, remedy=self.remedy), code="throttled", params={"seconds": wait}
            )
        return super().clean()  # type: ignore[misc]  # AuthenticationForm's, after this mixin


class LoginForm(ThrottledLogin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLogin, AdminAuthenticationForm):
    remedy = ASK_OPERATOR
