"""The ``canal`` command: demo, serve, worker, migrate, audit verify."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys

from canal.platform.settings import get_settings


def _prepare_and_migrate():
    from canal.platform.runtime import migrate, prepare

    runtime = prepare(get_settings())
    asyncio.run(migrate(runtime))
    return runtime


def _serve(runtime, host: str, port: int) -> None:
    import uvicorn

    from canal.platform.app import create_app

    app = create_app(runtime)
    # uvicorn handles SIGTERM/SIGINT: stops accepting, finishes in-flight requests, runs the
    # lifespan shutdown (pool and Redis closed).
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def cmd_migrate(_: argparse.Namespace) -> int:
    _prepare_and_migrate()
    print("migrations applied")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from canal.platform.runtime import prepare

    settings = get_settings()
    _serve(prepare(settings), args.host or settings.host, args.port or settings.port)
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    from canal.platform.jobs import run_worker
    from canal.platform.runtime import prepare

    run_worker(prepare(get_settings()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = get_settings()
    runtime = _prepare_and_migrate()
    from canal.platform.demo import print_logins, seed_demo

    logins = asyncio.run(seed_demo(runtime))
    env = dict(os.environ)
    sink = None
    if not settings.smtp_host:
        # A local SMTP sink: the demo's mail is really sent over SMTP, and kept in var/mail/.
        from canal.platform.notifications.smtp_sink import MailSink

        sink = MailSink(0, settings.var_dir / "mail").start()
        env.update(CANAL_SMTP_HOST="127.0.0.1", CANAL_SMTP_PORT=str(sink.port))
    worker = subprocess.Popen([sys.executable, "-m", "canal.platform.cli", "worker"], env=env)
    host, port = args.host or settings.host, args.port or settings.port
    print_logins(logins, f"http://{host}:{port}")
    try:
        _serve(runtime, host, port)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        if sink is not None:
            sink.stop()
        if args.stop_embedded:
            runtime.stop_embedded()
    return 0


def cmd_search_reindex(_: argparse.Namespace) -> int:
    """Rebuild every search index from the database (after a restore, or a settings change)."""
    from canal.platform import db
    from canal.platform.search import services as search_services

    runtime = _prepare_and_migrate()

    async def run() -> dict[str, int]:
        await db.start_pool(runtime.app_dsn, min_size=1, max_size=4)
        service = search_services.SearchService(
            runtime.meili_url, runtime.meili_key, prefix=runtime.settings.meili_index_prefix
        )
        await service.setup()
        search_services.configure(service)
        try:
            return await search_services.reindex_all()
        finally:
            search_services.configure(None)
            await db.close_pool()

    for kind, count in asyncio.run(run()).items():
        print(f"{kind}: {count} 条 documents")
    return 0


def cmd_audit_verify(_: argparse.Namespace) -> int:
    from canal.platform.audit.verify import verify_command

    return verify_command(_prepare_and_migrate())


def cmd_exchange_identify(args: argparse.Namespace) -> int:
    """Trace a leaked dataset file to the grant it was delivered under (its fingerprint)."""
    from canal.exchange.cli import identify_command

    return identify_command(_prepare_and_migrate(), args.file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="canal", description="Canal — 数字东昌生态门户")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the portal with demo data on the embedded stack")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument(
        "--stop-embedded",
        action="store_true",
        help="stop the embedded PostgreSQL and Redis on exit",
    )
    demo.set_defaults(func=cmd_demo)
    serve = sub.add_parser("serve", help="run the web server (migrations not applied)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="run the arq background worker").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="create the database and apply migrations").set_defaults(
        func=cmd_migrate
    )
    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="check the audit hash chain").set_defaults(
        func=cmd_audit_verify
    )
    search = sub.add_parser("search", help="search index tools")
    search_sub = search.add_subparsers(dest="search_command", required=True)
    search_sub.add_parser("reindex", help="rebuild every index from the database").set_defaults(
        func=cmd_search_reindex
    )
    exchange = sub.add_parser("exchange", help="data trading tools")
    exchange_sub = exchange.add_subparsers(dest="exchange_command", required=True)
    identify = exchange_sub.add_parser("identify", help="which grant a leaked CSV came from")
    identify.add_argument("file")
    identify.set_defaults(func=cmd_exchange_identify)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
