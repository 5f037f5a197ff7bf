"""Sign-in throttling: growing waits, by address and by account at that address.

A fixed lock of the account after five failures was a lock anyone could set off against
anyone. Instead each failed attempt (a wrong password at sign-in, a wrong TOTP code, a wrong
current password on the password-change page) counts in three places, and each past its
threshold makes the next attempt wait — 10, 20, 40 … seconds, at most ``cap`` — without the
password even being checked meanwhile:

* the account *at this address* (Redis, ``settings.lockout_threshold`` = 5 failures, at most
  ``settings.lockout_minutes``): the guesser waits; the owner signing in from elsewhere does
  not;
* the address, whatever the account (Redis, 20 failures, same cap): one address trying many
  accounts (credential stuffing). Loopback and unknown addresses are not throttled as an
  address — behind a reverse proxy that does not pass the client's address every client
  would share one, and one person could slow everyone;
* the account from every address (``users.failed_logins`` / ``locked_until``, 20 failures,
  at most 5 minutes): many addresses guessing one account. This one can delay the owner too,
  by minutes, never for a quarter of an hour from five tries.

Counts live 24 hours after the last failure. Success clears the account's count at that
address (not the address's own). A password reset clears everything about the account.
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from typing import Any

from canal.platform import clock
from canal.platform.http.errors import CanalError

FIRST_WAIT_SECONDS = 10
ADDRESS_THRESHOLD = 20
ACCOUNT_THRESHOLD = 20
ACCOUNT_CAP_SECONDS = 300
KEEP_SECONDS = 24 * 3600
_PREFIX = "canal:throttle"

_redis: Any = None


def attach(redis: Any) -> None:
    """The app's Redis client (set by the lifespan); without one only the account-wide count
    applies."""
    global _redis
    _redis = redis


def _clock() -> float:
    return clock.timestamp()


def wait_after(failures: int, threshold: int, cap_seconds: int) -> int:
    """Seconds the next attempt waits after ``failures`` in a row: 0 below the threshold,
    then 10, 20, 40 … up to the cap."""
    if failures < threshold:
        return 0
    return min(cap_seconds, FIRST_WAIT_SECONDS * 2 ** min(failures - threshold, 30))


def throttled(seconds: float) -> CanalError:
    seconds = max(1, math.ceil(seconds))
    if seconds >= 60:
        zh_wait, en_wait = f"{math.ceil(seconds / 60)} 分钟", f"{math.ceil(seconds / 60)} minutes"
    else:
        zh_wait, en_wait = f"{seconds} 秒", f"{seconds} seconds"
    return CanalError(
        "login_throttled",
        f"尝试次数过多,请 {zh_wait}后再试;忘记密码可以找回密码。",
        f"Too many attempts: try again in {en_wait}, or reset your password.",
        status=429,
    )


def _counted_address(ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return None if address.is_loopback else str(address)


def _account_key(user_id: uuid.UUID) -> str:
    return f"{_PREFIX}:account:{user_id}"


def _address_key(address: str) -> str:
    return f"{_PREFIX}:address:{address}"


async def remaining(user_id: uuid.UUID | None, ip: str) -> float:
    """Seconds until this account may be tried again from this address (0: now)."""
    if _redis is None:
        return 0.0
    moment = _clock()
    waits = [0.0]
    if user_id is not None:
        until = await _redis.hget(_account_key(user_id), f"until:{ip}")
        if until is not None:
            waits.append(float(until) - moment)
    address = _counted_address(ip)
    if address is not None:
        until = await _redis.hget(_address_key(address), "until")
        if until is not None:
            waits.append(float(until) - moment)
    return max(waits)


async def count_failure(
    user_id: uuid.UUID | None, ip: str, *, threshold: int, cap_seconds: int
) -> float:
    """Count one failure for the account at this address and for the address; the wait it
    starts (0: none)."""
    if _redis is None:
        return 0.0
    moment = _clock()
    wait = 0.0
    async with _redis.pipeline(transaction=True) as pipe:
        if user_id is not None:
            key = _account_key(user_id)
            pipe.hincrby(key, f"n:{ip}", 1)
            pipe.expire(key, KEEP_SECONDS)
        address = _counted_address(ip)
        if address is not None:
            pipe.hincrby(_address_key(address), "n", 1)
            pipe.expire(_address_key(address), KEEP_SECONDS)
        results = await pipe.execute()
    position = 0
    if user_id is not None:
        pair = wait_after(int(results[0]), threshold, cap_seconds)
        if pair:
            await _redis.hset(_account_key(user_id), f"until:{ip}", moment + pair)
            wait = max(wait, pair)
        position = 2
    if address is not None:
        by_address = wait_after(int(results[position]), ADDRESS_THRESHOLD, cap_seconds)
        if by_address:
            await _redis.hset(_address_key(address), "until", moment + by_address)
            wait = max(wait, by_address)
    return wait


async def forget_success(user_id: uuid.UUID, ip: str) -> None:
    """A success at this address clears the account's count here (elsewhere it stays, and so
    does the address's own count)."""
    if _redis is not None:
        await _redis.hdel(_account_key(user_id), f"n:{ip}", f"until:{ip}")


async def forget_account(user_id: uuid.UUID) -> None:
    """A password reset: every count of the account goes."""
    if _redis is not None:
        await _redis.delete(_account_key(user_id))
