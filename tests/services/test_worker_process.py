"""The batch worker as its image runs it (its image's files, packages and command line:
devtools/image_tree.py), killed and stopped the ways Kubernetes does: SIGKILL mid-batch loses no line and duplicates none; SIGTERM drains the
lines in flight within the grace period and hands back the rest.

MEASURED on this image: once a worker's stream is gone, killed or closed, the emulator holds
back the messages it had pushed to that stream (far more than the client's flow control lets it
begin) for minutes, and its deliveries to the next stream stall in waves, where Pub/Sub
redelivers them once their lease runs out (LEASE_EXTENSION_SECONDS). So the second worker here
reads a subscription of its own, on which the test delivers every line of the batch again, as
Pub/Sub redelivers the unacked ones (and, at least once, may the acked): what the worker owes
is then proven, no line lost, answered twice or charged twice.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.batch_chain import BatchQueue, wait_until_healthy
from devtools.harness import PASSWORD, Postgres, Server, free_port, wait_for
from devtools.image_tree import image_process
from devtools.pubsub_emulator import PubSubEmulator
from hybrid.service_contract import render
from servers import one
from services.worker.ids import line_request_id
from test_worker import Batches, batch_database, batches, queue, read_file, worker_settings  # noqa: F401 - fixtures

# How a worker ends after SIGTERM: uvicorn shuts the app down, then raises the signal it caught.
STOPPED = (0, -signal.SIGTERM)


class WorkerProcess:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process, self.log = process, log

    def terminate(self) -> float:
        """SIGTERM, as Kubernetes stops a pod; the seconds until the worker had exited."""
        stopped = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=15) in STOPPED
        return time.monotonic() - stopped

    def logged(self, message: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("message") == message]


@contextmanager
def worker_process(
    batch_database: Postgres,
    upstream: Server,
    gcs: Server,
    pubsub: PubSubEmulator,
    tmp_path: Path,
    queue: BatchQueue,
    **overrides: Any,
) -> Iterator[WorkerProcess]:
    port = free_port()
    params = psycopg.conninfo.conninfo_to_dict(batch_database.conninfo)
    settings = worker_settings(
        upstream,
        gcs,
        queue,
        database_auth="password",
        pghost=params["host"],
        pgport=int(str(params["port"])),
        pguser=params["user"],
        pgdatabase=params["dbname"],
        port=port,
        **overrides,
    )
    env = {**pubsub.environment, "PGPASSWORD": PASSWORD, **render(settings)}
    log = tmp_path / f"worker-{port}.log"
    with log.open("wb") as out, image_process("worker", env, stdout=out, stderr=subprocess.STDOUT) as process:
        wait_until_healthy(process, port, log, timeout=30)
        try:
            yield WorkerProcess(process, log)
        finally:
            process.kill()  # a test that stops it otherwise has done so by now


StartWorker = Callable[..., AbstractContextManager[WorkerProcess]]


@pytest.fixture
def start_worker(
    batch_database: Postgres, upstream: Server, gcs: Server, pubsub: PubSubEmulator, tmp_path: Path
) -> StartWorker:
    """Starts a worker process on a queue, with overrides of its settings, for a ``with`` block."""
    return functools.partial(worker_process, batch_database, upstream, gcs, pubsub, tmp_path)


def redelivered(pubsub: PubSubEmulator, queue: BatchQueue, batches: Batches, batch_id: str, lines: int) -> BatchQueue:
    """A subscription of its own for the next worker, with every line's message on it once more
    (see above)."""
    topic = queue.topic.rsplit("/", 1)[1]
    name = f"{queue.subscription.rsplit('/', 1)[1]}-again"
    pubsub.create_subscription(name, topic, ack_deadline_seconds=10)
    batches.publish(*({"kind": "line", "batch_id": batch_id, "line": n} for n in range(lines)))
    return replace(queue, subscription=pubsub.subscription_path(name))


def attempts(batches: Batches, batch_id: str) -> list[int]:
    with batches.connect() as conn:
        return [row[0] for row in conn.execute("SELECT attempts FROM batch_lines WHERE batch_id = %s", (batch_id,))]


def test_a_worker_killed_mid_batch_loses_no_line_and_duplicates_none(
    start_worker: StartWorker, gcs: Server, pubsub: PubSubEmulator, queue: BatchQueue, batches: Batches
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    # standin-lag answers in 0.2 s: 32 lines at a time, so the kill lands with lines in flight.
    batch_id = batches.create(user, ["standin-lag"] * 1000)
    options = {"max_outstanding_messages": 32, "claim_seconds": 6}
    with start_worker(queue, **options) as first:
        assert wait_for(lambda: batches.lines(batch_id, "succeeded") >= 300, timeout=60)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    with batches.connect() as conn:
        (stranded,) = one(
            conn.execute("SELECT count(*) FROM batch_lines WHERE batch_id = %s AND status = 'running'", (batch_id,))
        )
    assert stranded > 0  # the kill left lines claimed and unanswered
    again = redelivered(pubsub, queue, batches, batch_id, 1000)
    with start_worker(again, **options):
        batch = batches.finished(batch_id, timeout=60)
    assert batch["status"] == "completed"
    output = read_file(gcs, batch_id, "output")
    assert [line["custom_id"] for line in output] == [f"request-{n}" for n in range(1000)]
    charges = batches.charges(user)
    assert sorted(c[0] for c in charges) == sorted(line_request_id(batch_id, n) for n in range(1000))
    # The lines the kill stranded were claimed again by the second worker, once their claim ran out.
    assert sum(n > 1 for n in attempts(batches, batch_id)) >= stranded


def test_sigterm_drains_the_lines_in_flight_then_exits(
    start_worker: StartWorker, gcs: Server, pubsub: PubSubEmulator, queue: BatchQueue, batches: Batches
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-lag"] * 300)
    with start_worker(queue, max_outstanding_messages=16) as worker:
        assert wait_for(lambda: batches.lines(batch_id, "succeeded") >= 50, timeout=60)
        took = worker.terminate()
    assert took < 5 + 3  # shutdown_seconds, and the pulls' closing
    (drained,) = worker.logged("worker drained")
    assert drained["handed_back"] == 0 and drained["finished"] > 0  # 0.2 s lines all finished in time
    assert batches.lines(batch_id, "running") == 0
    with start_worker(redelivered(pubsub, queue, batches, batch_id, 300)):
        assert batches.finished(batch_id, timeout=60)["status"] == "completed"
    assert len(read_file(gcs, batch_id, "output")) == 300
    assert len(batches.charges(user)) == 300


def test_sigterm_hands_back_the_lines_that_outlast_the_deadline(
    start_worker: StartWorker, queue: BatchQueue, batches: Batches
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    # standin-stall waits 30 s: no line finishes within the 2 s the worker is given.
    batch_id = batches.create(user, ["standin-stall"] * 4)
    options = {"shutdown_seconds": 2, "first_byte_timeout_seconds": 60, "max_request_seconds": 60, "claim_seconds": 90}
    with start_worker(queue, **options) as worker:
        assert wait_for(lambda: batches.lines(batch_id, "running") == 4, timeout=30)
        took = worker.terminate()
    assert 2 <= took < 2 + 4
    (drained,) = worker.logged("worker drained")
    assert drained["handed_back"] == 4
    # Their claims were released: the next worker need not wait 90 s for them.
    assert batches.lines(batch_id, "queued") == 4 and batches.charges(user) == []
