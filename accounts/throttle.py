"""Login throttling, per username and per address, counted in Django's cache (Redis, shared
by every Daphne process). A workshop's participants often share one address (the venue's
NAT), so the per-address limit is far higher than the per-name one."""
from django.conf import settings
from django.core.cache import cache

WINDOW_SECONDS = 15 * 60


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    keys = [(f"login-fail:user:{(username or '').lower()[:150]}", settings.LOGIN_FAILURES_PER_USER)]
    if address:
        keys.append((f"login-fail:addr:{address}", settings.LOGIN_FAILURES_PER_ADDRESS))
    return keys


def blocked(username: str, address: str) -> bool:
    """Whether logins for this name, or from this address, wait out the window."""
    counts = cache.get_many([key for key, _ in _keys(username, address)])
    return any(counts.get(key, 0) >= limit for key, limit in _keys(username, address))


def failed(username: str, address: str) -> None:
    for key, _ in _keys(username, address):
        if cache.add(key, 1, WINDOW_SECONDS):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, WINDOW_SECONDS)


def succeeded(username: str) -> None:
    cache.delete(_keys(username, "")[0][0])


def client_address(request) -> str:
    """The caller's address; behind the compose nginx, the one nginx saw (X-Real-IP)."""
    if settings.BEHIND_PROXY:
        forwarded = request.headers.get("X-Real-IP", "").strip()
        if forwarded:
            return forwarded[:64]
    return request.META.get("REMOTE_ADDR", "")[:64]
