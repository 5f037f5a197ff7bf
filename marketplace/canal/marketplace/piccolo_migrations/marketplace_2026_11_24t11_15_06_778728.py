from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt
from piccolo.columns.column_types import Integer
from piccolo.columns.column_types import JSONB
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import UUID
from piccolo.columns.column_types import Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-24T11:15:06:778728"
VERSION = "1.38.0"
DESCRIPTION = (
    "package options, stacked and policy vouchers, payout route, settings; two-party rows "
    "tied to their order's parties"
)

# Row-level security checks each row's own columns only: a third tenant could insert a message
# naming someone else's order with itself as a party. Composite foreign keys tie every child
# row to the parties of the row it belongs to; foreign-key checks ignore row-level security,
# so they hold whoever inserts (decision 0023).
FORWARD = [
    "ALTER TABLE market_orders ADD CONSTRAINT market_orders_parties "
    "UNIQUE (id, tenant_id, provider_tenant_id)",
    "ALTER TABLE market_listings ADD CONSTRAINT market_listings_provider "
    "UNIQUE (id, provider_id)",
    "ALTER TABLE market_order_events ADD CONSTRAINT market_order_events_parties "
    "FOREIGN KEY (order_id, tenant_id, provider_tenant_id) "
    "REFERENCES market_orders (id, tenant_id, provider_tenant_id)",
    "ALTER TABLE market_order_messages ADD CONSTRAINT market_order_messages_parties "
    "FOREIGN KEY (order_id, tenant_id, provider_tenant_id) "
    "REFERENCES market_orders (id, tenant_id, provider_tenant_id)",
    "ALTER TABLE market_order_messages ADD CONSTRAINT market_order_messages_author "
    "CHECK (author_tenant_id IN (tenant_id, provider_tenant_id))",
    "ALTER TABLE market_orders ADD CONSTRAINT market_orders_listing_provider "
    "FOREIGN KEY (listing_id, provider_tenant_id) REFERENCES market_listings (id, provider_id)",
    "ALTER TABLE market_quotes ADD CONSTRAINT market_quotes_listing_provider "
    "FOREIGN KEY (listing_id, provider_tenant_id) REFERENCES market_listings (id, provider_id)",
    "ALTER TABLE market_orders ADD CONSTRAINT market_orders_two_parties "
    "CHECK (tenant_id <> provider_tenant_id)",
    "ALTER TABLE market_quotes ADD CONSTRAINT market_quotes_two_parties "
    "CHECK (tenant_id <> provider_tenant_id)",
]
BACKWARD = [
    "ALTER TABLE market_quotes DROP CONSTRAINT market_quotes_two_parties",
    "ALTER TABLE market_orders DROP CONSTRAINT market_orders_two_parties",
    "ALTER TABLE market_quotes DROP CONSTRAINT market_quotes_listing_provider",
    "ALTER TABLE market_orders DROP CONSTRAINT market_orders_listing_provider",
    "ALTER TABLE market_order_messages DROP CONSTRAINT market_order_messages_author",
    "ALTER TABLE market_order_messages DROP CONSTRAINT market_order_messages_parties",
    "ALTER TABLE market_order_events DROP CONSTRAINT market_order_events_parties",
    "ALTER TABLE market_listings DROP CONSTRAINT market_listings_provider",
    "ALTER TABLE market_orders DROP CONSTRAINT market_orders_parties",
]



async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="marketplace", description=DESCRIPTION
    )

    manager.add_table(
        class_name="MarketSettings",
        tablename="market_settings",
        schema=None,
        columns=None,
    )

    manager.add_column(
        table_class_name="MarketSettings",
        tablename="market_settings",
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
        table_class_name="MarketSettings",
        tablename="market_settings",
        column_name="module",
        db_column_name="module",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 32,
            "default": "",
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
        table_class_name="MarketSettings",
        tablename="market_settings",
        column_name="auto_confirm_days",
        db_column_name="auto_confirm_days",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 7,
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
        table_class_name="MarketSettings",
        tablename="market_settings",
        column_name="updated_by",
        db_column_name="updated_by",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": None,
            "null": True,
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
        table_class_name="MarketSettings",
        tablename="market_settings",
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
        table_class_name="Listing",
        tablename="market_listings",
        column_name="options",
        db_column_name="options",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "[]",
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
        table_class_name="Order",
        tablename="market_orders",
        column_name="options",
        db_column_name="options",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "[]",
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
        table_class_name="Order",
        tablename="market_orders",
        column_name="payout_route",
        db_column_name="payout_route",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 16,
            "default": "",
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
        table_class_name="Voucher",
        tablename="market_vouchers",
        column_name="applied_fen",
        db_column_name="applied_fen",
        column_class_name="BigInt",
        column_class=BigInt,
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

    manager.add_column(
        table_class_name="Voucher",
        tablename="market_vouchers",
        column_name="percent_bp",
        db_column_name="percent_bp",
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

    manager.add_column(
        table_class_name="Voucher",
        tablename="market_vouchers",
        column_name="source",
        db_column_name="source",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 16,
            "default": "operator",
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
        table_class_name="Voucher",
        tablename="market_vouchers",
        column_name="source_ref",
        db_column_name="source_ref",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 120,
            "default": "",
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
