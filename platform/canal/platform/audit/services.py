"""The audit trail: ``record()`` appends an event in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from typing import Any

from canal.platform.audit.tables import AuditEvent


async def record(action: str, *, actor_id: uuid.UUID | None = None,
                 tenant_id: uuid.UUID | None = None, target: str = "", ip: str = "",
                 data: dict[str, Any] | None = None) -> None:
    payload = json.dumps({"action": action, "actor": str(actor_id or ""),
                          "tenant": str(tenant_id or ""), "target": target, "data": data or {}},
                         ensure_ascii=False, sort_keys=True)
    seq = await AuditEvent.count() + 1
    await AuditEvent.insert(AuditEvent(seq=seq, tenant_id=tenant_id, actor_id=actor_id,
                                       action=action, target=target, ip=ip, payload=payload,
                                       prev_hash="", hash=uuid.uuid4().hex))
