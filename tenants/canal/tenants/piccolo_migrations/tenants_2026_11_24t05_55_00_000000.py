from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T05:55:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "per-tenant unique constraints Piccolo's column API cannot express"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="tenants", description=DESCRIPTION)

    async def run():
        from canal.platform.piccolo_conf import DB

        await DB.run_ddl(
            "CREATE UNIQUE INDEX memberships_tenant_user ON memberships (tenant_id, user_id)"
        )
        await DB.run_ddl(
            "CREATE UNIQUE INDEX module_subscriptions_tenant_module "
            "ON module_subscriptions (tenant_id, module_key)"
        )
        await DB.run_ddl("CREATE INDEX memberships_user ON memberships (user_id)")

    async def run_backwards():
        from canal.platform.piccolo_conf import DB

        await DB.run_ddl("DROP INDEX memberships_tenant_user")
        await DB.run_ddl("DROP INDEX module_subscriptions_tenant_module")
        await DB.run_ddl("DROP INDEX memberships_user")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
