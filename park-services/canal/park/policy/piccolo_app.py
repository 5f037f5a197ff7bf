import os

from piccolo.conf.apps import AppConfig, table_finder

CURRENT_DIRECTORY = os.path.dirname(os.path.abspath(__file__))

APP_CONFIG = AppConfig(
    app_name="policy",
    migrations_folder_path=os.path.join(CURRENT_DIRECTORY, "piccolo_migrations"),
    table_classes=table_finder(
        modules=["canal.park.policy.tables", "canal.park.policy.search_tables"],
        exclude_imported=True,
    ),
    migration_dependencies=["canal.tenants.piccolo_app"],
    commands=[],
)
