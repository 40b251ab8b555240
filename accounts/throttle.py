"""Login throttling that guessing cannot turn against the class (docs/security.md, "Accounts").

A workshop's participants and its instructor share one address (the venue's Wi-Fi), so nothing
here is counted per address alone: 200 failures with made-up names from that address slow down
nobody. Tries count per account and address together (LOGIN_FAILURES_PER_USER), and per account
from anywhere (LOGIN_FAILURES_PER_ACCOUNT, a spread guess); each try is counted before its
password is checked, so a burst of tries sent at once cannot all pass under a limit. Past a
limit a login is slowed, never locked: one try per LOGIN_SLOW_SECONDS for that count.

The browser an account last logged in with carries a signed device cookie: its tries count on
their own (the same limits, per device), so no guesser elsewhere slows its owner. A new password
starts the counts again. A classmate whose every turn a script takes gets in by a one-time link
(accounts.loginlinks), and their browser is known from then on. Counted in Django's cache
(Redis, shared by every Daphne process), for WINDOW_SECONDS.
"""

import hashlib
import math
import time

from django.conf import settings
from django.core import signing
from django.core.cache import cache

WINDOW_SECONDS = 15 * 60
DEVICE_COOKIE = "workshop_device"
DEVICE_SALT = "workshop.login-device"
DEVICE_DAYS = 30


def _name(username: str) -> str:
    return (username or "").strip().lower()[:150]


def _keys(username: str, address: str, device: str = "") -> list[tuple[str, int]]:
    """The counts a try of `username` goes into, each with its limit."""
    name = _name(username)
    prefix = f"login-fail:{cache.get(f'login-gen:{name}', 0)}"
    if device:  # the account's own browser: its tries count apart from everybody else's
        return [
            (f"{prefix}:device:{hashlib.sha256(device.encode()).hexdigest()[:32]}", settings.LOGIN_FAILURES_PER_USER)
        ]
    keys = [(f"{prefix}:account:{name}", settings.LOGIN_FAILURES_PER_ACCOUNT)]
    if address:
        keys.append((f"{prefix}:pair:{name}:{address}", settings.LOGIN_FAILURES_PER_USER))
    return keys


def _count(key: str) -> int:
    if cache.add(key, 1, WINDOW_SECONDS):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, WINDOW_SECONDS)
        return 1


def _uncount(key: str) -> None:
    try:
        cache.decr(key)
    except ValueError:
        pass


def begin(username: str, address: str, device: str = "") -> int:
    """Count this try, before its password is checked, and say whether it may be checked now: 0,
    or the seconds to wait (a try that must wait is no failure: it is not counted)."""
    keys = _keys(username, address, device)
    counts = [_count(key) for key, _ in keys]
    turns = [f"login-turn:{key}" for (key, limit), n in zip(keys, counts, strict=True) if n > limit]
    if not turns:
        return 0
    now, slow = time.time(), settings.LOGIN_SLOW_SECONDS
    taken = cache.get_many(turns)
    wait = max(1, math.ceil(max(taken.values()) - now)) if taken else 0
    if not wait and not all(cache.add(turn, now + slow, slow) for turn in turns):
        wait = slow  # another try took this turn a moment ago
    if wait:
        for key, _ in keys:
            _uncount(key)
    return wait


def failed(username: str, address: str, device: str = "") -> None:
    """A checked try failed (it was counted in begin): from the limit on, the next waits its turn."""
    keys = _keys(username, address, device)
    counts = cache.get_many([key for key, _ in keys])
    slow = settings.LOGIN_SLOW_SECONDS
    for key, limit in keys:
        if counts.get(key, 0) >= limit:
            cache.set(f"login-turn:{key}", time.time() + slow, slow)


def succeeded(username: str, address: str = "", device: str = "") -> None:
    """The owner got in: their try was no failure, and is taken off every count. The counts stay
    otherwise: a guesser at the same address gets no fresh tries from the owner's login (the
    owner's browser is known from now on, and counts apart)."""
    for key, _ in _keys(username, address, device):
        _uncount(key)


def forget(username: str) -> None:
    """A new password: the guesses counted against the old one no longer matter."""
    name = _name(username)
    if not cache.add(f"login-gen:{name}", 1, None):
        cache.incr(f"login-gen:{name}")


def device_cookie(username: str) -> str:
    return signing.dumps(_name(username), salt=DEVICE_SALT)


def known_device(request, username: str) -> str:
    """This browser's device cookie if it last logged in as `username` (a cookie only this app
    can sign), else ""."""
    value = request.COOKIES.get(DEVICE_COOKIE, "") if request is not None else ""
    try:
        known = bool(value) and signing.loads(value, salt=DEVICE_SALT, max_age=DEVICE_DAYS * 86400) == _name(username)
    except signing.BadSignature:
        known = False
    return value if known else ""


def client_address(request) -> str:
    """The caller's address; behind the compose nginx, the one nginx saw (X-Real-IP)."""
    if settings.BEHIND_PROXY:
        forwarded = request.headers.get("X-Real-IP", "").strip()
        if forwarded:
            return forwarded[:64]
    return request.META.get("REMOTE_ADDR", "")[:64]


class DeviceCookie:
    """Middleware: after a login, the browser gets the device cookie of that account."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        username = getattr(request, "_workshop_logged_in", None)
        if username:
            response.set_cookie(
                DEVICE_COOKIE,
                device_cookie(username),
                max_age=DEVICE_DAYS * 86400,
                httponly=True,
                secure=settings.SESSION_COOKIE_SECURE,
                samesite="Lax",
            )
        return response
