from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-07T19:08:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one live application per enterprise and policy"

# services.apply counts the enterprise's live applications to the policy, then inserts: two
# requests at once both counted none and both inserted. The index is the backstop: the second
# insert waits for the first to commit and then fails, and services.apply answers it with the
# same "already applied" refusal the count gives. "Live" is every status but rejected
# (services.LIVE_APPLICATION_STATUSES); a rejected application may be followed by a new one.
# The index cannot be built over existing duplicates: find them first with
#   SELECT tenant_id, policy_id, count(*) FROM policy_applications
#   WHERE status IN ('submitted', 'more_info', 'accepted', 'disbursed')
#   GROUP BY 1, 2 HAVING count(*) > 1;
FORWARD = [
    "CREATE UNIQUE INDEX policy_applications_live_once ON policy_applications "
    "(tenant_id, policy_id) WHERE status IN ('submitted', 'more_info', 'accepted', 'disbursed')",
]
BACKWARD = ["DROP INDEX IF EXISTS policy_applications_live_once"]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="policy", description=DESCRIPTION)

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
