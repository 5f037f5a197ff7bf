"""The audit chain's byte format, in one place: what ``record`` sends and ``verify`` checks.

The SQL function ``canal_audit_append`` (migration ``audit_2026_11_24t06_05_00_000000``)
computes the same hash in the database; docs/audit.md spells out the bytes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
TARGET_MAX = 200
IP_MAX = 64
ACTION_MAX = 64
# The payload keys that repeat a column; verify checks each against its column.
COLUMN_KEYS = ("action", "actor", "ip", "target", "tenant")


def clean_text(value: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; the columns have a length limit.
    return value.replace("\x00", "")[:limit]


def canonical_payload(
    *,
    action: str,
    actor_id: uuid.UUID | None,
    tenant_id: uuid.UUID | None,
    target: str,
    ip: str,
    data: dict[str, Any] | None,
) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 text (not \\u escapes)."""
    body = {
        "action": action,
        "actor": str(actor_id) if actor_id else "",
        "data": data or {},
        "ip": ip,
        "target": target,
        "tenant": str(tenant_id) if tenant_id else "",
    }
    return json.dumps(
        body, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    ).replace("\x00", "")


def timestamp_text(created_at: datetime) -> str:
    """``created_at`` as hashed: UTC, microseconds, e.g. ``2026-11-24T06:02:30.495399Z``."""
    return created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chain_hash(prev_hash: str, seq: int, created_at: datetime, payload: str) -> str:
    """sha256 hex of ``prev_hash \\n seq \\n created_at \\n payload`` (UTF-8)."""
    material = f"{prev_hash}\n{seq}\n{timestamp_text(created_at)}\n{payload}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()
