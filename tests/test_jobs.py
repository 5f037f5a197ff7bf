"""The arq worker runs platform jobs against the real Redis and PostgreSQL, idempotently."""

import uuid

from canal.platform import db
from canal.platform.identity.tables import OutboxMessage
from canal.platform.jobs import JOB_STATS_KEY, enqueue, make_worker


async def _outbox_message() -> uuid.UUID:
    message = OutboxMessage(
        channel="email",
        recipient=f"{uuid.uuid4().hex[:8]}@example.cn",
        subject="测试邮件 test",
        body="正文 body",
    )
    async with db.transaction():
        await message.save()
    return message.id


async def test_worker_delivers_outbox_message_once(runtime, app, client, settings):
    message_id = await _outbox_message()
    first = await enqueue(runtime.redis_url, "deliver_message", str(message_id))
    # The same job twice (arq may run a job again after a crash): the second is a no-op.
    second = await enqueue(runtime.redis_url, "deliver_message", str(message_id))
    assert first is not None and second is not None
    before = await app.state.redis.hget(JOB_STATS_KEY, "deliver_message:ok")
    worker = make_worker(runtime, burst=True)
    await worker.main()
    await worker.close()
    # Other tests' jobs may share the queue; these two answer for themselves.
    results = sorted([await first.result(timeout=5), await second.result(timeout=5)])
    assert results == ["sent", "skipped"]
    row = await OutboxMessage.select().where(OutboxMessage.id == message_id).first()
    assert row is not None and row["sent_at"] is not None
    outbox_log = (settings.var_dir / "outbox.log").read_text(encoding="utf-8")
    assert outbox_log.count(row["recipient"]) == 1  # delivered exactly once
    after = await app.state.redis.hget(JOB_STATS_KEY, "deliver_message:ok")
    assert int(after) - int(before or 0) >= 2  # both runs counted (with any others')
    metrics = (await client.get("/metrics")).text
    assert 'canal_jobs_total{function="deliver_message",outcome="ok"}' in metrics
    assert "canal_jobs_queued" in metrics
    assert "canal_http_requests_total" in metrics
