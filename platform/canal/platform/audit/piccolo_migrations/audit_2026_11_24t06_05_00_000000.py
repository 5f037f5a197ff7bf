"""The append function, write guards, row-level-security note and the head row.

Everything here is raw SQL Piccolo's column API cannot express. See docs/audit.md.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T06:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit chain: canal_audit_append(), write guards, head row"

# The hashed bytes: prev_hash \n seq \n created_at (UTC, microseconds) \n payload, as UTF-8.
# canal.platform.audit.chain.chain_hash is the same formula in Python.
HASH_SQL = (
    "encode(sha256(convert_to({prev} || E'\\n' || {seq}::text || E'\\n' || "
    "to_char({at} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || E'\\n' || "
    "{payload}, 'UTF8')), 'hex')"
)

# SECURITY DEFINER: runs as the owner, so the app role needs no INSERT on the tables.
# SET app.scope = 'platform': FORCE ROW LEVEL SECURITY applies to the owner too (unless it is
# a superuser), and a sign-in event has no tenant; the function-level SET is restored by
# PostgreSQL when the function returns, so the caller's scope is untouched.
# The head row's FOR UPDATE lock serialises appends until the caller's transaction ends: the
# next append then reads the committed head (READ COMMITTED re-checks the locked row), and a
# REPEATABLE READ caller gets a serialization failure instead of a forked chain.
APPEND_FUNCTION = f"""
CREATE OR REPLACE FUNCTION canal_audit_append(
    p_tenant uuid, p_actor uuid, p_action text, p_target text, p_ip text, p_payload text
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET app.scope = 'platform'
AS $fn$
DECLARE
    v_seq bigint;
    v_prev text;
    v_at timestamptz;
    v_hash text;
    v_body jsonb;
BEGIN
    -- The columns repeat what the hashed payload says; refuse a record verify would flag.
    v_body := p_payload::jsonb;
    IF jsonb_typeof(v_body) <> 'object'
       OR v_body->>'action' IS DISTINCT FROM p_action
       OR v_body->>'target' IS DISTINCT FROM p_target
       OR v_body->>'ip' IS DISTINCT FROM p_ip
       OR v_body->>'actor' IS DISTINCT FROM coalesce(p_actor::text, '')
       OR v_body->>'tenant' IS DISTINCT FROM coalesce(p_tenant::text, '') THEN
        RAISE EXCEPTION 'audit payload does not match the record''s columns'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT seq, hash INTO v_seq, v_prev FROM audit_head WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit_head has no row: the audit chain is not initialised';
    END IF;
    v_seq := v_seq + 1;
    -- Taken after the lock, so time never runs backwards along the chain.
    v_at := clock_timestamp();
    v_hash := {HASH_SQL.format(prev="v_prev", seq="v_seq", at="v_at", payload="p_payload")};
    INSERT INTO audit_events
        (seq, tenant_id, actor_id, action, target, ip, created_at, payload, prev_hash, hash)
    VALUES (v_seq, p_tenant, p_actor, p_action, p_target, p_ip, v_at, p_payload, v_prev, v_hash);
    UPDATE audit_head SET seq = v_seq, hash = v_hash WHERE id = 1;
    RETURN v_seq;
END
$fn$
"""

# Backstop under the grants: whatever apply_security grants, only the tables' owner (that is,
# canal_audit_append) may write, and nobody may change or remove a record without first
# disabling the trigger, a deliberate DDL act.
GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION canal_audit_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
BEGIN
    IF TG_ARGV[0] = 'immutable' THEN
        RAISE EXCEPTION 'the audit trail is append-only (% on %)', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT pg_has_role(current_user,
                       (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
        RAISE EXCEPTION 'write the audit trail through canal_audit_append()'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$fn$
"""

# Rows written by the placeholder record() before the chain existed get chained, in seq order.
ADOPT_EXISTING = f"""
DO $do$
DECLARE
    r record;
    n bigint := 0;
    prev text := repeat('0', 64);
    body text;
    h text;
BEGIN
    FOR r IN SELECT * FROM audit_events ORDER BY seq LOOP
        n := n + 1;
        body := jsonb_build_object(
            'action', r.action, 'actor', coalesce(r.actor_id::text, ''),
            'tenant', coalesce(r.tenant_id::text, ''), 'target', r.target, 'ip', r.ip,
            'data', coalesce(r.payload::jsonb -> 'data', '{{}}'::jsonb))::text;
        h := {HASH_SQL.format(prev="prev", seq="n", at="r.created_at", payload="body")};
        UPDATE audit_events SET seq = n, payload = body, prev_hash = prev, hash = h
            WHERE seq = r.seq;
        prev := h;
    END LOOP;
    INSERT INTO audit_head (id, seq, hash) VALUES (1, n, prev);
END
$do$
"""

STATEMENTS = [
    ADOPT_EXISTING,
    APPEND_FUNCTION,
    GUARD_FUNCTION,
    # Keyset pages of one tenant's trail, newest first.
    "CREATE INDEX audit_events_tenant_seq ON audit_events (tenant_id, seq)",
    "ALTER TABLE audit_head ADD CONSTRAINT audit_head_one_row CHECK (id = 1)",
    "CREATE TRIGGER canal_audit_insert BEFORE INSERT ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION canal_audit_guard('owner')",
    "CREATE TRIGGER canal_audit_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION canal_audit_guard('immutable')",
    "CREATE TRIGGER canal_audit_head_write BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
    "ON audit_head FOR EACH STATEMENT EXECUTE FUNCTION canal_audit_guard('owner')",
]

BACKWARDS = [
    "DROP TRIGGER IF EXISTS canal_audit_head_write ON audit_head",
    "DROP TRIGGER IF EXISTS canal_audit_immutable ON audit_events",
    "DROP TRIGGER IF EXISTS canal_audit_insert ON audit_events",
    "ALTER TABLE audit_head DROP CONSTRAINT IF EXISTS audit_head_one_row",
    "DROP INDEX IF EXISTS audit_events_tenant_seq",
    "DROP FUNCTION IF EXISTS canal_audit_guard()",
    "DROP FUNCTION IF EXISTS canal_audit_append(uuid, uuid, text, text, text, text)",
    "DELETE FROM audit_head",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def run():
        from canal.platform.piccolo_conf import DB

        for statement in STATEMENTS:
            await DB.run_ddl(statement)

    async def run_backwards():
        from canal.platform.piccolo_conf import DB

        for statement in BACKWARDS:
            await DB.run_ddl(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
