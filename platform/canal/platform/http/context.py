"""Who is asking, and in which tenant: the values services take instead of request objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    display_name: str
    via: str  # "session" | "token"
    session_id: uuid.UUID | None = None
    csrf_token: str | None = None
    mfa_passed: bool = False
    token_tenant: uuid.UUID | None = None  # an API token bound to one tenant
    locale: str = "zh_CN"
    care_mode: bool = False
    totp_enabled: bool = False

    @property
    def fully_signed_in(self) -> bool:
        """False while a session has passed the password but not yet the TOTP step: such a
        person sees nothing of the account (no organisations, no inbox) until the code."""
        return not (self.via == "session" and self.totp_enabled and not self.mfa_passed)


@dataclass(frozen=True)
class TenantRef:
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    status: str


@dataclass(frozen=True)
class TenantContext:
    """What a service needs to act inside one tenant on behalf of one user."""

    tenant: TenantRef
    user_id: uuid.UUID
    roles: tuple[str, ...] = field(default=())

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.tenant.id
