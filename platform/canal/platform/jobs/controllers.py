"""The operator's jobs page (/operator/jobs): queue figures and the dead-letter list, with a
re-run button; and its JSON twin."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath

from canal.platform import clock
from canal.platform.access.services import access
from canal.platform.http.errors import CanalError
from canal.platform.http.tenancy import current_principal
from canal.platform.jobs import services
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]


def when(value: dt.datetime | None) -> str:
    """A moment as people here read it: Beijing time, to the minute."""
    return clock.local(value).strftime("%Y-%m-%d %H:%M") if value else "—"


READ = {"access": "platform", "permission": ("platform.tenants", "read")}
MANAGE = {"access": "platform", "permission": ("platform.tenants", "manage")}
TAGS = ["operator"]


class DeadJobOut(msgspec.Struct):
    id: uuid.UUID
    job_id: str
    function: str
    args: list[Any]
    error: str
    tries: int
    failed_at: dt.datetime
    rerun_at: dt.datetime | None
    rerun_job: uuid.UUID | None


class JobsOut(msgspec.Struct):
    waiting_for_push: int
    queued: int
    dead: int
    outcomes: dict[str, dict[str, int]]
    dead_jobs: list[DeadJobOut]


class RerunOut(msgspec.Struct):
    dead_job_id: uuid.UUID
    job_id: uuid.UUID


def client_ip(request: Req) -> str:
    return request.client.host if request.client else ""


def _can_manage(request: Req) -> bool:
    operator = request.scope.get("state", {}).get("operator")
    principal = current_principal(request)
    return operator is not None and access().enforce(
        principal.user_id, operator.id, "platform.tenants", "manage"
    )


async def _jobs_page(request: Req, status: int = 200) -> Response[str]:
    info = await services.overview(request.app.state.redis)
    return page(
        request,
        "jobs/operator_jobs.html",
        {"info": info, "can_manage": _can_manage(request), "when": when},
        status=status,
    )


@get("/operator/jobs", opt=READ, include_in_schema=False)
async def jobs_page(request: Req) -> Response[str]:
    return await _jobs_page(request)


@get("/api/v1/operator/jobs", opt=READ, tags=TAGS, summary="Job queue figures and dead jobs")
async def jobs_api(request: Req) -> JobsOut:
    info = await services.overview(request.app.state.redis)
    return JobsOut(
        waiting_for_push=info.waiting_for_push,
        queued=info.queued,
        dead=info.dead,
        outcomes=info.outcomes,
        dead_jobs=[DeadJobOut(**vars(d)) for d in info.dead_jobs],
    )


@post("/operator/jobs/dead/{dead_job_id:uuid}/rerun", opt=MANAGE, include_in_schema=False)
async def rerun_form(request: Req, dead_job_id: FromPath[uuid.UUID]) -> Response[Any]:
    try:
        await services.rerun_dead_job(
            dead_job_id, current_principal(request).user_id, ip=client_ip(request)
        )
    except CanalError as exc:
        if exc.status == 404:
            raise
        from canal.web.i18n import request_locale

        request.scope.setdefault("state", {})["flash"] = {
            "kind": "error",
            "message": exc.message(request_locale(request)),
        }
        return await _jobs_page(request, status=exc.status)
    return redirect(request, "/operator/jobs?done=rerun")


@post(
    "/api/v1/operator/jobs/dead/{dead_job_id:uuid}/rerun",
    opt=MANAGE,
    tags=TAGS,
    summary="Run a dead job again (through the outbox)",
    status_code=200,
)
async def rerun_api(request: Req, dead_job_id: FromPath[uuid.UUID]) -> RerunOut:
    job_id = await services.rerun_dead_job(
        dead_job_id, current_principal(request).user_id, ip=client_ip(request)
    )
    return RerunOut(dead_job_id=dead_job_id, job_id=job_id)


ROUTES = [jobs_page, jobs_api, rerun_form, rerun_api]
