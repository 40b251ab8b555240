"""Login throttling that guessing cannot turn against the class (docs/security.md, "Accounts").

A workshop's participants and its instructor share one address (the venue's Wi-Fi), so nothing
here is counted per address alone: 200 failures with made-up names from that address slow down
nobody. Failures count per account and address together (LOGIN_FAILURES_PER_USER), and per
account from anywhere (LOGIN_FAILURES_PER_ACCOUNT, a spread guess). Past a limit, the login is
slowed, never locked: one try per LOGIN_SLOW_SECONDS for that count, so guessing stays
impractical while the owner, typing the right password, waits seconds and not a quarter hour.
The browser an account last logged in with carries a signed device cookie: its owner gets in
with the right password whatever the counts. A new password (the console's reset, or
`workshop_users reset`) starts the counts again. Counted in Django's cache (Redis, shared by
every Daphne process), for WINDOW_SECONDS.
"""
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


def _generation(name: str) -> int:
    return cache.get(f"login-gen:{name}", 0)


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    name = _name(username)
    prefix = f"login-fail:{_generation(name)}"
    keys = [(f"{prefix}:account:{name}", settings.LOGIN_FAILURES_PER_ACCOUNT)]
    if address:
        keys.append((f"{prefix}:pair:{name}:{address}", settings.LOGIN_FAILURES_PER_USER))
    return keys


def wait_seconds(username: str, address: str, known_device: bool = False) -> int:
    """0 when this login may be checked now, else the seconds to wait. Past a limit, each count
    that is over lets one try through per LOGIN_SLOW_SECONDS; the try that goes through takes
    the turn. Never on the account's own known device."""
    if known_device:
        return 0
    keys = _keys(username, address)
    counts = cache.get_many([key for key, _ in keys])
    turns = [f"login-turn:{key}" for key, limit in keys if counts.get(key, 0) >= limit]
    if not turns:
        return 0
    now, slow = time.time(), settings.LOGIN_SLOW_SECONDS
    taken = cache.get_many(turns)
    if taken:
        return max(1, math.ceil(max(taken.values()) - now))
    for turn in turns:
        if not cache.add(turn, now + slow, slow):  # another try took this turn a moment ago
            return slow
    return 0


def failed(username: str, address: str) -> None:
    """One more failure; from the limit on, the next try of that count waits its turn."""
    for key, limit in _keys(username, address):
        if cache.add(key, 1, WINDOW_SECONDS):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                count = 1 if cache.add(key, 1, WINDOW_SECONDS) else limit
        if count >= limit:
            slow = settings.LOGIN_SLOW_SECONDS
            cache.set(f"login-turn:{key}", time.time() + slow, slow)


def succeeded(username: str, address: str = "") -> None:
    """The owner got in: this address's count for the account starts again (the account's own
    count stays, in case a guesser elsewhere goes on)."""
    if address:
        for key, _ in _keys(username, address)[1:]:
            cache.delete(key)


def forget(username: str) -> None:
    """A new password: the guesses counted against the old one no longer matter."""
    name = _name(username)
    if not cache.add(f"login-gen:{name}", 1, None):
        cache.incr(f"login-gen:{name}")


def device_cookie(username: str) -> str:
    return signing.dumps(_name(username), salt=DEVICE_SALT)


def known_device(request, username: str) -> bool:
    """Whether this browser last logged in as `username` (a cookie only this app can sign)."""
    value = request.COOKIES.get(DEVICE_COOKIE, "") if request is not None else ""
    try:
        return bool(value) and signing.loads(value, salt=DEVICE_SALT, max_age=DEVICE_DAYS * 86400) == _name(username)
    except signing.BadSignature:
        return False


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
            response.set_cookie(DEVICE_COOKIE, device_cookie(username), max_age=DEVICE_DAYS * 86400, httponly=True,
                                secure=settings.SESSION_COOKIE_SECURE, samesite="Lax")
        return response
