"""The job outbox, the dead-letter list and the probe jobs' record (global tables)."""

from piccolo.columns import JSONB, UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table


class JobOutbox(Table, tablename="job_outbox"):
    """A job written in the same transaction as the change that needs it.

    Pushed to arq after commit (``_job_id`` = this row's id); the worker's relay pushes any
    row whose push was lost. ``dedup_key`` makes a second enqueue of the same work a no-op.
    """

    id = UUID(primary_key=True, default=UUID4())
    function = Varchar(length=100)
    args = JSONB(default=[])
    dedup_key = Varchar(length=200, null=True, default=None, unique=True)
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    enqueued_at = Timestamptz(null=True, default=None, index=True)
    attempts = Integer(default=0)
    last_error = Text(default="")
    finished_at = Timestamptz(null=True, default=None)
    dead_at = Timestamptz(null=True, default=None)


class DeadJob(Table, tablename="dead_jobs"):
    """A job that exhausted its retries; the operator can look at it and run it again."""

    id = UUID(primary_key=True, default=UUID4())
    job_id = Varchar(length=64, unique=True)  # the arq job id (= outbox row id)
    function = Varchar(length=100, index=True)
    args = JSONB(default=[])
    error = Text(default="")
    tries = Integer(default=0)
    failed_at = Timestamptz(default=TimestamptzNow(), index=True)
    rerun_at = Timestamptz(null=True, default=None)
    rerun_by = UUID(null=True, default=None)
    rerun_job = UUID(null=True, default=None)  # the outbox row of the re-run


class JobProbe(Table, tablename="job_probes"):
    """One line per probe job run (the operator's end-to-end check, and the crash test)."""

    id = UUID(primary_key=True, default=UUID4())
    probe_key = Varchar(length=100, index=True)
    ran_at = Timestamptz(default=TimestamptzNow())
