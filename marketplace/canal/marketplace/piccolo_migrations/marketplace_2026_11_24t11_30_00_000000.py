from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T11:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "two-party rows tied to their order's (and listing's) parties at the database"

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
    manager = MigrationManager(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

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
