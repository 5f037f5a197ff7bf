"""Random tokens and their hashes. Only hashes are stored; the token is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_hash(key: str, value: str) -> str:
    """HMAC for values we must match but never store (an ID number)."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


API_TOKEN_PREFIX = "cnl_"  # noqa: S105 - a public marker, not a secret


def new_api_token() -> tuple[str, str]:
    """(token shown once, its display prefix)."""
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token[:12]
