"""One-time login links: the way in that no guesser can take (docs/security.md, "Accounts").

The login throttle slows a name's tries at a shared address; a participant's script that takes
every turn of a classmate's name keeps the classmate's new browsers waiting. The instructor (the
console's Reset password) or the operator (`workshop_users link NAME`) hands out a link instead:
a random token, kept in Redis for LINK_SECONDS and taken by its first use; a newer link of the
account, or a new password, ends it. Whoever opens it is
logged in and their browser becomes the account's known one, whose tries no one else slows.
"""

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache

LINK_SECONDS = 15 * 60


def _key(token: str) -> str:
    return "login-link:" + hashlib.sha256(token.encode()).hexdigest()


def _password_mark(user) -> str:
    # A link is for the account as it is: a new password (a reset, a change) ends it.
    return hashlib.sha256(user.password.encode()).hexdigest()[:16]


def issue(user, base: str = "") -> str:
    """A new link for `user`, its full address at `base` (the console: the address its page was
    opened at) or WORKSHOP_URL; the account's previous link, if any, stops working."""
    token = secrets.token_urlsafe(24)
    latest = f"login-link-of:{user.pk}"
    previous = cache.get(latest)
    if previous:
        cache.delete(previous)
    cache.set(_key(token), {"user": user.pk, "password": _password_mark(user)}, LINK_SECONDS)
    cache.set(latest, _key(token), LINK_SECONDS)
    return f"{(base or settings.WORKSHOP_URL).rstrip('/')}/accounts/link/{token}/"


def owner(token: str):
    """The active user the link is for, without using it up; None for a used, replaced or
    unknown one, or when the account's password changed since."""
    entry = cache.get(_key(token)) if len(token) < 100 else None
    if not isinstance(entry, dict):
        return None
    user = get_user_model().objects.filter(pk=entry["user"], is_active=True).first()
    return user if user is not None and _password_mark(user) == entry["password"] else None


def redeem(token: str):
    """The link's user, once: of two opened at the same moment only one gets in."""
    user = owner(token)
    return user if user is not None and cache.delete(_key(token)) else None
