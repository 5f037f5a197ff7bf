"""What the application role may do with the audit trail: read it, and append through the
function — nothing else. ``canal.platform.db.apply_security`` runs these after its blanket
``GRANT ... ON ALL TABLES`` (a REVOKE inside a migration would be undone by that grant).
"""

from __future__ import annotations

APPEND_SIGNATURE = "canal_audit_append(uuid, uuid, text, text, text, text)"
READ_ONLY_TABLES = ("audit_events", "audit_head")


def audit_security_sql(app_role: str) -> list[str]:
    role = '"' + app_role.replace('"', '""') + '"'
    statements = [
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {table} FROM {role}"
        for table in READ_ONLY_TABLES
    ]
    statements += [f"GRANT SELECT ON {table} TO {role}" for table in READ_ONLY_TABLES]
    statements += [
        # Functions are executable by PUBLIC by default; the append is the app's alone.
        f"REVOKE ALL ON FUNCTION {APPEND_SIGNATURE} FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {APPEND_SIGNATURE} TO {role}",
    ]
    return statements
