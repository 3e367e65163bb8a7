"""The batch worker when its database goes away mid-batch: no line is acked before its result
is committed, so none is lost, and none is answered or charged twice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from devtools.batch_chain import BatchQueue
from devtools.harness import Postgres, Server, wait_for
from services.worker.app import create_app
from services.worker.ids import line_request_id
from test_ledger_faults import frozen, own_postgres  # noqa: F401 - a fixture
from test_worker import Batches, queue, read_file, with_batch_tables, worker_settings  # noqa: F401 - a fixture


def run_through_outage(
    own_postgres: Postgres, upstream: Server, gcs: Server, queue: BatchQueue, outage: Callable[[], None]
) -> None:
    database = with_batch_tables(own_postgres)
    batches = Batches(database.conninfo, queue)
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-lag"] * 200)
    settings = worker_settings(upstream, gcs, queue, max_outstanding_messages=8)
    with Server(create_app(settings, conninfo=database.conninfo)):
        assert wait_for(lambda: batches.lines(batch_id, "succeeded") >= 40, timeout=30)
        outage()
        batch = batches.finished(batch_id, timeout=90)
    assert batch["status"] == "completed"
    assert [line["custom_id"] for line in read_file(gcs, batch_id, "output")] == [f"request-{n}" for n in range(200)]
    assert sorted(c[0] for c in batches.charges(user)) == sorted(line_request_id(batch_id, n) for n in range(200))


def test_a_database_restart_mid_batch_loses_no_line(
    own_postgres: Postgres, upstream: Server, gcs: Server, queue: BatchQueue
) -> None:
    def restart() -> None:
        own_postgres.stop()  # immediate: every connection dies with lines in flight
        time.sleep(3)
        own_postgres.start()

    run_through_outage(own_postgres, upstream, gcs, queue, restart)


def test_a_hung_database_mid_batch_loses_no_line(
    own_postgres: Postgres, upstream: Server, gcs: Server, queue: BatchQueue
) -> None:
    def hang() -> None:
        with frozen(own_postgres):
            time.sleep(5)  # longer than the database timeout: the steps time out, and are tried again

    run_through_outage(own_postgres, upstream, gcs, queue, hang)
