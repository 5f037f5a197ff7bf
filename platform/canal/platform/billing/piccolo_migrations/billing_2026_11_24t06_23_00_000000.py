from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T06:23:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "per-tenant unique constraints Piccolo's column API cannot express"

_INDEXES = {
    "billing_subscriptions_tenant_module": "billing_subscriptions (tenant_id, module_key)",
    "billing_usage_tenant_identifier": "billing_usage (tenant_id, identifier)",
    "billing_payments_tenant_key": "billing_payments (tenant_id, idempotency_key)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run():
        from canal.platform.piccolo_conf import DB

        for name, target in _INDEXES.items():
            await DB.run_ddl(f"CREATE UNIQUE INDEX {name} ON {target}")

    async def run_backwards():
        from canal.platform.piccolo_conf import DB

        for name in _INDEXES:
            await DB.run_ddl(f"DROP INDEX {name}")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
