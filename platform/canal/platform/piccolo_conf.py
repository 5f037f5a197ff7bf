"""Piccolo's configuration. The engine's connection details are filled in at start-up by
``canal.platform.db.configure`` (embedded server or CANAL_DATABASE_URL); the app list comes
from the platform's own apps plus every registered module's."""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

# extensions=(): the application role may not CREATE EXTENSION; UUIDs are made in Python.
DB = PostgresEngine(config={}, extensions=())

PLATFORM_APPS = [
    "canal.platform.identity.piccolo_app",
    "canal.tenants.piccolo_app",
    "canal.platform.access.piccolo_app",
    "canal.platform.audit.piccolo_app",
    "canal.platform.jobs.piccolo_app",
    "canal.platform.notifications.piccolo_app",
    "canal.platform.billing.piccolo_app",
    "canal.platform.storage.piccolo_app",
    # Not a module: every organisation and verified resident has a data bank.
    "canal.exchange.bank.piccolo_app",
]


def _module_apps() -> list[str]:
    from canal.platform.modules import registry

    return [app for module in registry().values() for app in module.piccolo_apps]


APP_REGISTRY = AppRegistry(apps=PLATFORM_APPS + _module_apps())
