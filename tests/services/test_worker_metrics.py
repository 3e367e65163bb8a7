"""Each of the batch worker's metrics moves when its event happens."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest
from prometheus_client import REGISTRY

from services.worker import lines
from services.worker.lines import Answer, LineRunner
from test_worker import Batches, WorkerOf, batch_database, batches, queue, worker_of  # noqa: F401 (fixtures)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_counts_its_lines_done_and_failed_and_its_finalization(
    worker_of: WorkerOf, batches: Batches, caplog: pytest.LogCaptureFixture
) -> None:
    before = (value("worker_lines_total", outcome="done"), value("worker_lines_total", outcome="failed"))
    finalized = value("worker_finalize_seconds_count")
    batch_id = batches.create(f"user-{uuid.uuid4().hex[:8]}", ["standin-refuse", "standin-echo", "standin-echo"])
    with caplog.at_level(logging.INFO, logger="worker"), worker_of():
        assert batches.finished(batch_id)["status"] == "completed"
    after = (value("worker_lines_total", outcome="done"), value("worker_lines_total", outcome="failed"))
    # The worker's sweeper may also run lines and finish batches an earlier test left in the shared
    # database: every line and finalization the worker logs is counted once, this batch's included.
    lines = [r.__dict__["fields"] for r in caplog.records if r.getMessage() == "line finished"]
    ours = sorted(f["status"] for f in lines if f["batch_id"] == batch_id)
    assert ours == ["failed", "succeeded", "succeeded"]
    done = sum(f["status"] == "succeeded" for f in lines)
    assert (after[0] - before[0], after[1] - before[1]) == (done, len(lines) - done)
    finished = [r for r in caplog.records if r.name == "worker.finalize" and r.getMessage() == "batch finalized"]
    assert len(finished) >= 1
    assert value("worker_finalize_seconds_count") - finalized == len(finished)


class DatabaseAway:
    """A pool whose every connection fails, as while Cloud SQL is unreachable."""

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        if self:  # always: a generator that never yields
            raise psycopg.OperationalError("connection refused")
        yield None


def runner(pool: object) -> LineRunner:
    settings = SimpleNamespace(database_timeout_seconds=1)
    return LineRunner(cast(Any, settings), cast(Any, pool), cast(Any, None), {}, cast(Any, None), "test-worker")


def test_a_charge_the_database_does_not_take_is_counted() -> None:
    failures = value("worker_charge_failures_total")
    with pytest.raises(psycopg.OperationalError):
        asyncio.run(runner(DatabaseAway())._finish("batch_x", 0, "token", Answer("succeeded")))
    assert value("worker_charge_failures_total") - failures == 1


def test_each_wait_that_keeps_a_message_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines, "DATABASE_RETRY_SECONDS", 0)
    kept = value("worker_lease_extensions_total")
    tries = iter([OSError("unreachable"), OSError("unreachable"), None])

    async def step() -> str:
        if failure := next(tries):
            raise failure
        return "done"

    assert asyncio.run(runner(DatabaseAway())._retrying(step)) == "done"
    assert value("worker_lease_extensions_total") - kept == 2
