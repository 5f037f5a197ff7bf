"""The audit API's shapes (msgspec, described in the OpenAPI document)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


class AuditEventOut(msgspec.Struct):
    seq: int
    created_at: datetime  # Asia/Shanghai (+08:00)
    action: str
    action_label: str  # in the request's language; the code itself for unknown actions
    actor_id: uuid.UUID | None
    actor_name: str | None
    target: str
    ip: str
    data: dict[str, Any]
    tenant_id: uuid.UUID | None = None
    tenant_name: str | None = None


class AuditPageOut(msgspec.Struct):
    events: list[AuditEventOut]
    # Pass as ``before`` for the next, older page; null on the last page.
    next_before: int | None


class VerifyOut(msgspec.Struct):
    ok: bool
    checked: int
    head_seq: int | None
    broken_seq: int | None
    problem: str  # "", edited, missing, out_of_order, head_mismatch, no_head
    message: str
