"""One-time login links: the way in that no guesser can take (docs/security.md, "Accounts").

The login throttle slows a name's tries at a shared address; a participant's script that takes
every turn of a classmate's name keeps the classmate's new browsers waiting. The instructor (the
console's Reset password) or the operator (`workshop_users link NAME`) hands out a link instead:
a random token, kept in Redis for LINK_SECONDS and taken by its first use. Whoever opens it is
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


def issue(user) -> str:
    """A new link for `user`: its full address at WORKSHOP_URL."""
    token = secrets.token_urlsafe(24)
    cache.set(_key(token), user.pk, LINK_SECONDS)
    return f"{settings.WORKSHOP_URL.rstrip('/')}/accounts/link/{token}/"


def owner(token: str):
    """The active user the link is for, without using it up; None for a used or unknown one."""
    pk = cache.get(_key(token)) if len(token) < 100 else None
    return get_user_model().objects.filter(pk=pk, is_active=True).first() if pk is not None else None


def redeem(token: str):
    """The link's user, once: of two opened at the same moment only one gets in."""
    user = owner(token)
    return user if user is not None and cache.delete(_key(token)) else None
