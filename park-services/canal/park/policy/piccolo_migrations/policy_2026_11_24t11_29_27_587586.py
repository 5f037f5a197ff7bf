from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete
from piccolo.columns.base import OnUpdate
from piccolo.columns.column_types import Bytea
from piccolo.columns.column_types import Date
from piccolo.columns.column_types import ForeignKey
from piccolo.columns.column_types import Integer
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


# Carries the rows of policy_matches (one per pair) over into the columns, one byte row per
# enterprise and the dismissals table, inside the migration's transaction, after the new
# tables exist and before the old one is dropped (raw steps run before any table is made).
# policy_matches forces row-level security even on its owner: read it in platform scope.
# Byte: 1 eligible, 2 + i nearly (criterion i missing), 0 not eligible; +128 when the pair
# was announced at the version the column records (the newest one matched).
MOVE_MATCHES = """
SELECT set_config('app.scope', 'platform', true);
INSERT INTO policy_match_columns (id, policy_id, position, version_number)
SELECT gen_random_uuid(), policy_id, row_number() OVER (ORDER BY policy_id) - 1,
    max(version_number)
FROM policy_matches GROUP BY policy_id;
INSERT INTO policy_match_sets (id, tenant_id, codes, as_of, updated_at)
SELECT gen_random_uuid(), t.tenant_id,
    string_agg(set_byte('\\x00'::bytea, 0,
        CASE m.grp WHEN 'eligible' THEN 1
                   WHEN 'nearly' THEN 2 + least(coalesce(m.missing_index, 0), 125)
                   ELSE 0 END
        + CASE WHEN m.notified_version = c.version_number THEN 128 ELSE 0 END),
        ''::bytea ORDER BY c.position),
    max(t.as_of), max(t.updated_at)
FROM (SELECT tenant_id, max(as_of) AS as_of, max(updated_at) AS updated_at
      FROM policy_matches GROUP BY tenant_id) t
CROSS JOIN policy_match_columns c
LEFT JOIN policy_matches m ON m.tenant_id = t.tenant_id AND m.policy_id = c.policy_id
GROUP BY t.tenant_id;
INSERT INTO policy_dismissals (id, tenant_id, policy_id, created_at)
SELECT gen_random_uuid(), tenant_id, policy_id, updated_at FROM policy_matches WHERE dismissed;
SELECT set_config('app.scope', '', true);
"""


# A full re-match rewrites every row (~1 KB each): with room left in each page the new version
# goes on the same page and, no indexed column changing, the indexes are not touched (HOT
# updates) — the write phase measured 1.3-1.7 s instead of 3.3-6 s (docs/decisions/0015).
ROOM_FOR_UPDATES = "ALTER TABLE policy_match_sets SET (fillfactor = 45)"


class MoveMatches(MigrationManager):
    async def _run_drop_tables(self, backwards: bool = False) -> None:
        if not backwards:
            from piccolo.engine import engine_finder

            engine = engine_finder()
            txn = engine.current_transaction.get() if engine is not None else None
            assert txn is not None, "runs inside the migration's transaction"
            await txn.connection.execute(ROOM_FOR_UPDATES)
            await txn.connection.execute(MOVE_MATCHES)
        await super()._run_drop_tables(backwards=backwards)


ID = "2026-11-24T11:29:27:587586"
VERSION = "1.38.0"
DESCRIPTION = "match sets"


async def forwards():
    manager = MoveMatches(
        migration_id=ID, app_name="policy", description=DESCRIPTION
    )

    manager.add_table(
        class_name="Dismissal",
        tablename="policy_dismissals",
        schema=None,
        columns=None,
    )

    manager.add_table(
        class_name="MatchSet",
        tablename="policy_match_sets",
        schema=None,
        columns=None,
    )

    manager.add_table(
        class_name="MatchColumn",
        tablename="policy_match_columns",
        schema=None,
        columns=None,
    )

    manager.drop_table(
        class_name="Match", tablename="policy_matches", schema=None
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
        column_name="codes",
        db_column_name="codes",
        column_class_name="Bytea",
        column_class=Bytea,
        params={
            "default": b"",
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
        table_class_name="MatchColumn",
        tablename="policy_match_columns",
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
        table_class_name="MatchColumn",
        tablename="policy_match_columns",
        column_name="policy_id",
        db_column_name="policy_id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
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
        table_class_name="MatchColumn",
        tablename="policy_match_columns",
        column_name="position",
        db_column_name="position",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 0,
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
        table_class_name="MatchColumn",
        tablename="policy_match_columns",
        column_name="version_number",
        db_column_name="version_number",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 0,
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
