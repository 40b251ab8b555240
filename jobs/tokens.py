"""Worker tokens: random, signed with the app's SECRET_KEY.

Any app process can then tell one of its own tokens from a stranger's by the token alone,
before it reads a request's body and without the database (Daphne's request limits run on its
event loop, where a query would stall every connection). The database still decides whether
the token is current: a rotated or revoked one is refused by the view (401), after its body was
read within the route's cap (64 MB for a catalog; nginx's auth_request refuses it before).
"""

import base64
import hashlib
import hmac
import secrets

from django.utils.crypto import salted_hmac

PREFIX = "wt_"
RANDOM_CHARS = 43  # secrets.token_urlsafe(32)
SIGNATURE_CHARS = 22  # 132 bits of an HMAC-SHA256
SALT = "workshop.worker-token"


def new_token() -> str:
    # The prefix also keeps a token from starting with "-" (a command line would read an option).
    body = secrets.token_urlsafe(32)
    return PREFIX + body + _signature(body)


def _signature(body: str) -> str:
    digest = salted_hmac(SALT, body, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def signed_here(token: str) -> bool:
    """A token this deployment minted (whether still current or not)."""
    if (
        len(token) != len(PREFIX) + RANDOM_CHARS + SIGNATURE_CHARS
        or not token.startswith(PREFIX)
        or not token.isascii()
    ):
        return False
    body, signature = token[len(PREFIX) : -SIGNATURE_CHARS], token[-SIGNATURE_CHARS:]
    return hmac.compare_digest(signature, _signature(body))


def hash_token(token: str) -> str:
    """What is stored of a worker's token: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


# Tokens this process accepted, by hash: tokens made before they were signed still count.
_accepted: set[str] = set()


def worker_seen(token_hash: str) -> None:
    """A token this process accepted: its worker may now send large bodies."""
    _accepted.add(token_hash)


def worker_known(authorization: str) -> bool:
    """Decided from the token alone, before the body (workshop.daphne_limits): signed by this
    deployment, or seen accepted by this process."""
    token = (authorization or "").removeprefix("Bearer ").strip()
    return bool(token) and (signed_here(token) or hash_token(token) in _accepted)
