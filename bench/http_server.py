"""Serve one side of the HTTP baseline: ``bare`` (a plain Litestar JSON endpoint) or ``app``
(the whole Canal app). Started by bench/http_baseline.py; not meant to be run by hand."""

from __future__ import annotations

import sys

import uvicorn
from litestar import Litestar, get


@get("/bare")
async def bare() -> dict[str, str]:
    return {"tenant": "none", "status": "ok"}


def main() -> None:
    which, port = sys.argv[1], int(sys.argv[2])
    if which == "bare":
        app = Litestar(route_handlers=[bare], openapi_config=None)
    else:
        from canal.platform.app import create_app
        from canal.platform.runtime import prepare
        from canal.platform.settings import get_settings

        app = create_app(prepare(get_settings()))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
