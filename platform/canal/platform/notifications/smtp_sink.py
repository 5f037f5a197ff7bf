"""A local SMTP server that keeps what it receives: the demo's and the tests' mail server.

``MailSink`` runs aiosmtpd on 127.0.0.1 in a thread (its own event loop), keeps every message
in memory and, given a directory, also writes each one as an ``.eml`` file (``var/mail/``).
Run it alone with ``python -m canal.platform.notifications.smtp_sink [port] [dir]``.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMail:
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        return body.get_content() if body is not None else ""


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        message = message_from_bytes(raw, policy=policy.default)
        mail = ReceivedMail(
            sender=str(envelope.mail_from),
            recipients=tuple(str(r) for r in envelope.rcpt_tos),
            message=message,
        )
        self.sink.store(mail, raw)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MailSink:
    """Start with ``start()`` (or as a context manager); read ``messages``; ``stop()``."""

    def __init__(self, port: int = 0, directory: Path | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.directory = directory
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._controller = Controller(
            _Handler(self), hostname=self.host, port=self.port, enable_SMTPUTF8=True
        )

    def store(self, mail: ReceivedMail, raw: bytes) -> None:
        with self._lock:
            self.messages.append(mail)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
            (self.directory / name).write_bytes(raw)

    def to(self, address: str) -> list[ReceivedMail]:
        with self._lock:
            return [m for m in self.messages if address in m.recipients]

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else 2525
    directory = Path(argv[2]) if len(argv) > 2 else Path("var/mail")
    sink = MailSink(port, directory).start()
    print(f"SMTP sink on 127.0.0.1:{sink.port}, mail kept in {directory}/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
