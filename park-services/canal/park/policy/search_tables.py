"""Tables of saved catalogue searches and the alerts they sent (person-owned, not tenant-owned:
a person saves a search of the public catalogue; every query filters on ``user_id``)."""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from canal.platform.identity.tables import User


class SavedSearch(Table, tablename="policy_saved_searches"):
    """A person's saved search of ``/policies``: keyword and filters, as the catalogue reads
    them (``controllers._catalogue_params``)."""

    id = UUID(primary_key=True, default=UUID4())
    user_id = ForeignKey(references=User, null=False, index=True)
    name = Varchar(length=60)
    query = Varchar(length=200, default="")
    level = Varchar(length=20, default="")
    support_type = Varchar(length=20, default="")
    open_now = Boolean(default=False)
    closing_soon = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class SearchAlert(Table, tablename="policy_search_alerts"):
    """One alert sent: a person, a policy version (``key`` = "user:policy:version", unique),
    so a re-run of the job or a second matching search never alerts twice."""

    id = UUID(primary_key=True, default=UUID4())
    key = Varchar(length=120, unique=True)
    user_id = ForeignKey(references=User, null=False, index=True)
    policy_id = UUID(index=True)
    version_number = Integer()
    search_id = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
