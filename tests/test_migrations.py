"""The models and the migrations agree: no app has a change that no migration records."""

from piccolo.apps.migrations.commands.new import AutoMigrationManager
from piccolo.conf.apps import Finder


async def test_no_migration_drift(runtime):
    drift = {}
    for app_config in Finder().get_app_registry().app_configs.values():
        statements = await AutoMigrationManager().get_alter_statements(app_config=app_config)
        pending = [s for group in statements for s in group.statements]
        if pending:
            drift[app_config.app_name] = pending
    assert drift == {}, f"models changed without a migration: {drift}"
