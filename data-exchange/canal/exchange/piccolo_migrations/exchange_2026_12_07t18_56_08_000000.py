from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-07T18:56:08:000000"
VERSION = "1.38.0"
DESCRIPTION = "the privacy budget's CHECK constraint"

# The database's own guard on the budget (decision 0043): whatever the code does, no update
# may leave a dataset's spent ε above its total, nor negative.
FORWARD = [
    "ALTER TABLE exchange_privacy_budgets ADD CONSTRAINT exchange_privacy_budgets_within "
    "CHECK (epsilon_spent >= 0 AND epsilon_spent <= epsilon_total + 1e-9)",
]
BACKWARD = [
    "ALTER TABLE exchange_privacy_budgets DROP CONSTRAINT exchange_privacy_budgets_within",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="exchange", description=DESCRIPTION)

    async def run():
        from canal.platform.piccolo_conf import DB

        for statement in FORWARD:
            await DB.run_ddl(statement)

    async def run_backwards():
        from canal.platform.piccolo_conf import DB

        for statement in BACKWARD:
            await DB.run_ddl(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
