"""Notifications tests: a real SMTP server (the sink) and a worker that mails to it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import msgspec
import pytest

from canal.platform.notifications.smtp_sink import MailSink


@pytest.fixture(scope="session")
def mail_sink(tmp_path_factory) -> Iterator[MailSink]:
    with MailSink(directory=tmp_path_factory.mktemp("mail")) as sink:
        yield sink


@pytest.fixture(scope="session")
def mailing_runtime(runtime, mail_sink):
    """The test runtime with SMTP pointed at the sink (what the demo's settings do)."""
    settings = msgspec.structs.replace(
        runtime.settings, smtp_host=mail_sink.host, smtp_port=mail_sink.port
    )
    return dataclasses.replace(runtime, settings=settings)
