from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete
from piccolo.columns.base import OnUpdate
from piccolo.columns.column_types import Array
from piccolo.columns.column_types import Date
from piccolo.columns.column_types import ForeignKey
from piccolo.columns.column_types import Integer
from piccolo.columns.column_types import SmallInt
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import UUID
from piccolo.columns.defaults.date import DateNow
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod
from piccolo.constraints import Unique
from piccolo.table import Table


class Tenant(Table, tablename="tenants", schema=None):
    id = UUID(
        default=UUID4(),
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name=None,
        secret=False,
    )


# Carries the rows of policy_matches (one per pair) over into one row per enterprise and the
# dismissals table, inside the migration's transaction, after the new tables exist and before
# the old one is dropped (raw steps run before any table is created, so they cannot do it).
# policy_matches has FORCE row-level security: the owner reads it in platform scope.
MOVE_MATCHES = """
SELECT set_config('app.scope', 'platform', true);
INSERT INTO policy_match_sets
    (id, tenant_id, policy_ids, codes, version_numbers, notified_ids, notified_versions,
     as_of, updated_at)
SELECT gen_random_uuid(), tenant_id,
    coalesce(array_agg(policy_id ORDER BY policy_id) FILTER (WHERE grp <> 'not_eligible'), '{}'),
    coalesce(array_agg(CASE WHEN grp = 'eligible' THEN -1 ELSE missing_index END
        ORDER BY policy_id) FILTER (WHERE grp <> 'not_eligible'), '{}'),
    coalesce(array_agg(version_number ORDER BY policy_id)
        FILTER (WHERE grp <> 'not_eligible'), '{}'),
    coalesce(array_agg(policy_id ORDER BY policy_id)
        FILTER (WHERE notified_version IS NOT NULL), '{}'),
    coalesce(array_agg(notified_version ORDER BY policy_id)
        FILTER (WHERE notified_version IS NOT NULL), '{}'),
    max(as_of), max(updated_at)
FROM policy_matches GROUP BY tenant_id;
INSERT INTO policy_dismissals (id, tenant_id, policy_id, created_at)
SELECT gen_random_uuid(), tenant_id, policy_id, updated_at FROM policy_matches WHERE dismissed;
SELECT set_config('app.scope', '', true);
"""


class MoveMatches(MigrationManager):
    async def _run_drop_tables(self, backwards: bool = False) -> None:
        if not backwards:
            from piccolo.engine import engine_finder

            engine = engine_finder()
            txn = engine.current_transaction.get() if engine is not None else None
            assert txn is not None, "runs inside the migration's transaction"
            await txn.connection.execute(MOVE_MATCHES)
        await super()._run_drop_tables(backwards=backwards)


ID = "2026-11-24T11:14:23:409763"
VERSION = "1.38.0"
DESCRIPTION = "match sets"


async def forwards():
    manager = MoveMatches(
        migration_id=ID, app_name="policy", description=DESCRIPTION
    )

    manager.add_table(
        class_name="MatchSet",
        tablename="policy_match_sets",
        schema=None,
        columns=None,
    )

    manager.add_table(
        class_name="Dismissal",
        tablename="policy_dismissals",
        schema=None,
        columns=None,
    )

    manager.drop_table(
        class_name="Match", tablename="policy_matches", schema=None
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="id",
        db_column_name="id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": True,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="tenant_id",
        db_column_name="tenant_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Tenant,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": False,
            "primary_key": False,
            "unique": True,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="policy_ids",
        db_column_name="policy_ids",
        column_class_name="Array",
        column_class=Array,
        params={
            "default": list,
            "base_column": UUID(
                default=UUID4(),
                null=False,
                primary_key=False,
                unique=False,
                index=False,
                index_method=IndexMethod.btree,
                choices=None,
                db_column_name=None,
                secret=False,
            ),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="codes",
        db_column_name="codes",
        column_class_name="Array",
        column_class=Array,
        params={
            "default": list,
            "base_column": SmallInt(
                default=0,
                null=False,
                primary_key=False,
                unique=False,
                index=False,
                index_method=IndexMethod.btree,
                choices=None,
                db_column_name=None,
                secret=False,
            ),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="version_numbers",
        db_column_name="version_numbers",
        column_class_name="Array",
        column_class=Array,
        params={
            "default": list,
            "base_column": Integer(
                default=0,
                null=False,
                primary_key=False,
                unique=False,
                index=False,
                index_method=IndexMethod.btree,
                choices=None,
                db_column_name=None,
                secret=False,
            ),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="notified_ids",
        db_column_name="notified_ids",
        column_class_name="Array",
        column_class=Array,
        params={
            "default": list,
            "base_column": UUID(
                default=UUID4(),
                null=False,
                primary_key=False,
                unique=False,
                index=False,
                index_method=IndexMethod.btree,
                choices=None,
                db_column_name=None,
                secret=False,
            ),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="notified_versions",
        db_column_name="notified_versions",
        column_class_name="Array",
        column_class=Array,
        params={
            "default": list,
            "base_column": Integer(
                default=0,
                null=False,
                primary_key=False,
                unique=False,
                index=False,
                index_method=IndexMethod.btree,
                choices=None,
                db_column_name=None,
                secret=False,
            ),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="as_of",
        db_column_name="as_of",
        column_class_name="Date",
        column_class=Date,
        params={
            "default": DateNow(),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="MatchSet",
        tablename="policy_match_sets",
        column_name="updated_at",
        db_column_name="updated_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Dismissal",
        tablename="policy_dismissals",
        column_name="id",
        db_column_name="id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": True,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Dismissal",
        tablename="policy_dismissals",
        column_name="tenant_id",
        db_column_name="tenant_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Tenant,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Dismissal",
        tablename="policy_dismissals",
        column_name="policy_id",
        db_column_name="policy_id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Dismissal",
        tablename="policy_dismissals",
        column_name="created_at",
        db_column_name="created_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Dismissal",
        tablename="policy_dismissals",
        constraint_name="policy_dismissals_once",
        constraint_class=Unique,
        params={"columns": ["tenant_id", "policy_id"], "nulls_distinct": True},
        schema=None,
    )

    return manager
