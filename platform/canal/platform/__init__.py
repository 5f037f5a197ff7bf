"""Canal's shared platform: settings, app factory, database, identity, access, audit, jobs."""

import os

# Piccolo finds its engine and app list through this variable; it is ours to set, not a
# setting anyone should change.
os.environ.setdefault("PICCOLO_CONF", "canal.platform.piccolo_conf")
