"""The relay's index: only rows still waiting for a push (a handful) are indexed."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T06:24:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "jobs: partial index of unqueued outbox rows"

STATEMENTS = [
    "CREATE INDEX IF NOT EXISTS job_outbox_unqueued ON job_outbox (created_at) "
    "WHERE enqueued_at IS NULL AND dead_at IS NULL",
]
BACKWARDS = ["DROP INDEX IF EXISTS job_outbox_unqueued"]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="jobs", description=DESCRIPTION)

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
