"""What each role may do: the platform's permissions plus those every module declares."""

from __future__ import annotations

from dataclasses import dataclass

from canal.platform.modules import Permission, registry

# Resource "tenant" and friends belong to the platform; modules add their own resources.
PLATFORM_PERMISSIONS: tuple[Permission, ...] = (
    Permission("tenant", "read", "查看组织", "View the organisation"),
    Permission("tenant", "update", "修改组织资料", "Edit the organisation"),
    Permission("tenant", "transfer", "转让或注销组织", "Transfer or close the organisation"),
    Permission("members", "read", "查看成员", "View members"),
    Permission("members", "invite", "邀请成员", "Invite members"),
    Permission("members", "manage", "管理成员与角色", "Manage members and roles"),
    Permission("modules", "read", "查看模块", "View modules"),
    Permission("modules", "manage", "开通与停用模块", "Switch modules on and off"),
    Permission("audit", "read", "查看审计日志", "Read the audit trail"),
    Permission(
        "tokens", "manage", "管理本组织的 API 令牌", "Manage API tokens for this organisation"
    ),
    Permission("files", "read", "查看与下载文件", "View and download files"),
    Permission(
        "files", "write", "上传与删除文件、查看存储用量", "Upload and delete files, see storage use"
    ),
    # The data bank's everyday work (docs/decisions/0041): add and organise files; sharing
    # outside, archive, backups and emptying the bin stay with ``files:write``.
    Permission(
        "bank",
        "write",
        "在数据银行中上传、整理文件(新建文件夹、新版本、重命名、移动、移入回收站)",
        "Add and organise data bank files (folders, uploads, versions, rename, move, recycle bin)",
    ),
)

# Held by the operator company's staff, in the operator tenant's domain.
OPERATOR_PERMISSIONS: tuple[Permission, ...] = (
    Permission("platform.tenants", "read", "查看全部组织", "View all organisations"),
    Permission("platform.tenants", "manage", "管理全部组织", "Manage all organisations"),
    Permission(
        "platform.audit", "read", "查看全平台审计日志", "Read the whole platform's audit trail"
    ),
    Permission("platform.modules", "manage", "管理模块目录", "Manage the module catalogue"),
)


@dataclass(frozen=True)
class RoleDef:
    key: str
    zh: str
    en: str
    permissions: frozenset[tuple[str, str]]
    module: str | None = None

    def name(self, locale: str) -> str:
        return self.zh if locale.startswith("zh") else self.en


def _all_tenant_permissions() -> set[tuple[str, str]]:
    perms = {(p.resource, p.action) for p in PLATFORM_PERMISSIONS}
    for module in registry().values():
        perms |= {(p.resource, p.action) for p in module.permissions}
    return perms


def role_catalog(tenant_kind: str) -> dict[str, RoleDef]:
    """Roles available in a tenant of this kind, in display order."""
    everything = _all_tenant_permissions()
    roles = {
        "owner": RoleDef("owner", "所有者", "Owner", frozenset(everything)),
        "admin": RoleDef(
            "admin",
            "管理员",
            "Administrator",
            frozenset(everything - {("tenant", "transfer")}),
        ),
        "member": RoleDef(
            "member",
            "成员",
            "Member",
            frozenset(
                {
                    ("tenant", "read"),
                    ("members", "read"),
                    ("modules", "read"),
                    ("files", "read"),
                    ("bank", "write"),
                }
            ),
        ),
    }
    if tenant_kind == "operator":
        operator_perms = frozenset((p.resource, p.action) for p in OPERATOR_PERMISSIONS)
        roles["owner"] = RoleDef(
            "owner", "所有者", "Owner", roles["owner"].permissions | operator_perms
        )
        roles["platform_admin"] = RoleDef(
            "platform_admin",
            "平台管理员",
            "Platform administrator",
            operator_perms | {("tenant", "read")},
        )
        roles["platform_auditor"] = RoleDef(
            "platform_auditor",
            "平台审计员",
            "Platform auditor",
            frozenset(
                {("platform.audit", "read"), ("platform.tenants", "read"), ("tenant", "read")}
            ),
        )
    for module in registry().values():
        if tenant_kind not in module.tenant_kinds:
            continue
        for role_key, perms in module.roles.items():
            zh, en = module.role_names.get(role_key, (role_key, role_key))
            roles[role_key] = RoleDef(
                role_key, zh, en, frozenset(perms) | {("tenant", "read")}, module=module.key
            )
    return roles
