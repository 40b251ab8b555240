"""Login throttling that guessing cannot turn against the class (docs/security.md, "Accounts").

A workshop's participants and its instructor share one address (the venue's Wi-Fi), so nothing
here is counted per address alone: 200 failures with made-up names from that address lock out
nobody. Failures count per account and address together (a guesser at one address waits after
LOGIN_FAILURES_PER_USER), and per account from anywhere (LOGIN_FAILURES_PER_ACCOUNT, a spread
guess). The browser an account last logged in with carries a signed device cookie: its owner
gets in with the right password whatever the counts. Counted in Django's cache (Redis, shared by
every Daphne process), for WINDOW_SECONDS.
"""
from django.conf import settings
from django.core import signing
from django.core.cache import cache

WINDOW_SECONDS = 15 * 60
DEVICE_COOKIE = "workshop_device"
DEVICE_SALT = "workshop.login-device"
DEVICE_DAYS = 30


def _name(username: str) -> str:
    return (username or "").strip().lower()[:150]


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    name = _name(username)
    keys = [(f"login-fail:account:{name}", settings.LOGIN_FAILURES_PER_ACCOUNT)]
    if address:
        keys.append((f"login-fail:pair:{name}:{address}", settings.LOGIN_FAILURES_PER_USER))
    return keys


def blocked(username: str, address: str, known_device: bool = False) -> bool:
    """Whether this login must wait: never on the account's own known device."""
    if known_device:
        return False
    keys = _keys(username, address)
    counts = cache.get_many([key for key, _ in keys])
    return any(counts.get(key, 0) >= limit for key, limit in keys)


def failed(username: str, address: str) -> None:
    for key, _ in _keys(username, address):
        if cache.add(key, 1, WINDOW_SECONDS):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, WINDOW_SECONDS)


def succeeded(username: str, address: str = "") -> None:
    """The owner got in: this address's count for the account starts again (the account's own
    count stays, in case a guesser elsewhere goes on)."""
    if address:
        cache.delete(f"login-fail:pair:{_name(username)}:{address}")


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
