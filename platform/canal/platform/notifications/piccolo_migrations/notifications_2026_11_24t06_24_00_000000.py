"""Indexes Piccolo's column API cannot express: one preference row per (person, kind), and
a partial index that makes the header's unread count an index-only lookup."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T06:24:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "notifications: unique preference per kind, unread index"

STATEMENTS = [
    "CREATE UNIQUE INDEX IF NOT EXISTS notification_preferences_user_kind "
    "ON notification_preferences (user_id, kind)",
    "CREATE INDEX IF NOT EXISTS notifications_unread "
    "ON notifications (user_id) WHERE read_at IS NULL",
    "CREATE INDEX IF NOT EXISTS notifications_user_created "
    "ON notifications (user_id, created_at DESC)",
]
BACKWARDS = [
    "DROP INDEX IF EXISTS notification_preferences_user_kind",
    "DROP INDEX IF EXISTS notifications_unread",
    "DROP INDEX IF EXISTS notifications_user_created",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="notifications", description=DESCRIPTION)

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
