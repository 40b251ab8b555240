"""Failed and successful logins, from any form (the workshop's and the admin's), feed the throttle."""

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import pre_save
from django.dispatch import receiver

from . import throttle


def _where(request, username: str) -> tuple[str, str]:
    if request is None:
        return "", ""
    return throttle.client_address(request), throttle.known_device(request, username)


@receiver(user_login_failed)
def count_failure(sender, credentials, request=None, **kwargs):
    username = credentials.get("username", "")
    throttle.failed(username, *_where(request, username))


@receiver(user_logged_in)
def clear_failures(sender, request, user, **kwargs):
    throttle.succeeded(user.get_username(), *_where(request, user.get_username()))
    if request is not None:
        request._workshop_logged_in = user.get_username()  # throttle.DeviceCookie sets the cookie


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def new_password_new_count(sender, instance, **kwargs):
    # set_password() keeps the raw password in _password until the save: a reset, a change, a
    # new account. Guesses against the old password no longer count.
    if getattr(instance, "_password", None) is not None and instance.get_username():
        throttle.forget(instance.get_username())
