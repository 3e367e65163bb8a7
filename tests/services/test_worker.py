"""The batch worker with real parts: PostgreSQL with the orchestrator's migrations, Google's
Pub/Sub emulator, the Cloud Storage stand-in and the model stand-in. Batches are made as the
orchestrator makes them: rows inserted, one message per line published."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg
import pytest
from google.cloud import pubsub_v1
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from devtools.batch_chain import BatchQueue, batch_queue
from devtools.harness import Postgres, Server, orchestrator_settings, wait_for
from devtools.pubsub_emulator import PubSubEmulator
from records import fields
from servers import Row, one
from services.modelcalls.ledger import Ledger
from services.servicekit.blobs import BlobStore
from services.worker.app import create_app
from services.worker.finalize import Finalizer
from services.worker.ids import line_request_id, output_file_id
from services.worker.settings import WorkerSettings
from services.worker.sweeper import Sweeper

BUCKET = "batch-bucket"
FINAL = ("completed", "failed", "cancelled", "expired")
names = itertools.count()


def with_batch_tables(server: Postgres) -> Postgres:
    """``server`` with the orchestrator's migrations and the batch tables."""

    async def migrate() -> None:
        async with AsyncConnectionPool(server.conninfo, open=False, kwargs={"autocommit": True}) as pool:
            await Ledger(pool).migrate()

    asyncio.run(migrate())
    return server


@pytest.fixture(scope="session")
def batch_database(postgres: Postgres) -> Postgres:
    return with_batch_tables(postgres)


@pytest.fixture
def queue(pubsub: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> BatchQueue:
    for name, value in pubsub.environment.items():
        monkeypatch.setenv(name, value)
    # Pub/Sub's retry policy backs off 10 s to 600 s in production; fast here.
    return batch_queue(
        pubsub, str(next(names)), ack_deadline_seconds=10, max_delivery_attempts=5, backoff_seconds=(0.1, 0.5)
    )


def worker_settings(upstream: Server, gcs: Server, queue: BatchQueue, **overrides: Any) -> WorkerSettings:
    routing = orchestrator_settings(upstream.url)
    return WorkerSettings.model_validate(
        {
            "backends": routing.backends,
            "routes": routing.routes,
            "first_byte_timeout_seconds": 2,
            "database_timeout_seconds": 2,
            "subscription": queue.subscription,
            "dead_letter_subscription": queue.dead_letter_subscription,
            "dead_letter_topic": queue.dead_letter_topic,
            "topic": queue.topic,
            "batch_bucket": BUCKET,
            "storage_url": gcs.url,
            "storage_auth": "none",
            "max_request_seconds": 5,
            "claim_seconds": 6,
            "sweep_interval_seconds": 1,
            "shutdown_seconds": 5,
            **overrides,
        }
    )


class Batches:
    """Batches made and read the way the orchestrator does, straight in PostgreSQL."""

    def __init__(self, conninfo: str, queue: BatchQueue) -> None:
        self.conninfo, self.queue = conninfo, queue
        self.publisher = pubsub_v1.PublisherClient()

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo, autocommit=True)

    def create(
        self, user: str, models: list[str], expires_in: float = 86400, publish: bool = True, padding: str = ""
    ) -> str:
        """A batch of a line per model; ``padding`` lengthens every line's prompt."""
        batch_id, file_id = f"batch_{uuid.uuid4().hex[:24]}", f"file-{uuid.uuid4().hex[:24]}"
        with self.connect() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO batch_files (id, user_id, purpose, filename, bytes, line_count, object_name) "
                "VALUES (%s, %s, 'batch', 'input.jsonl', 1, %s, %s)",
                (file_id, user, len(models), f"inputs/{file_id}.jsonl"),
            )
            conn.execute(
                "INSERT INTO batches (id, user_id, input_file_id, endpoint, completion_window, status, "
                "request_total, expires_at) VALUES (%s, %s, %s, '/v1/chat/completions', '24h', 'validating', %s, "
                "now() + make_interval(secs => %s))",
                (batch_id, user, file_id, len(models), expires_in),
            )
            with conn.cursor().copy("COPY batch_lines (batch_id, line, custom_id, body) FROM STDIN") as copy:
                for line, model in enumerate(models):
                    content = self.prompt(batch_id, line) + padding
                    body = {"model": model, "messages": [{"role": "user", "content": content}]}
                    copy.write_row((batch_id, line, f"request-{line}", json.dumps(body)))
        if publish:
            self.publish(*({"kind": "line", "batch_id": batch_id, "line": n} for n in range(len(models))))
            with self.connect() as conn:
                conn.execute(
                    "UPDATE batches SET status = 'in_progress', in_progress_at = now() WHERE id = %s", (batch_id,)
                )
        return batch_id

    @staticmethod
    def prompt(batch_id: str, line: int) -> str:
        """Each line's own prompt, to count what the model stand-in was sent for it."""
        return f"{batch_id} line {line}"

    def publish(self, *messages: dict[str, Any] | bytes) -> None:
        futures = [
            self.publisher.publish(self.queue.topic, m if isinstance(m, bytes) else json.dumps(m).encode())
            for m in messages
        ]
        for future in futures:
            future.result(timeout=30)

    def cancel(self, batch_id: str) -> None:
        """POST /v1/batches/{id}/cancel as the contract has it."""
        with self.connect() as conn, conn.transaction():
            conn.execute(
                "UPDATE batches SET status = 'cancelling', cancelling_at = now() WHERE id = %s AND status = 'in_progress'",
                (batch_id,),
            )
            conn.execute(
                "UPDATE batch_lines SET status = 'cancelled', finished_at = now(), "
                """error = '{"code": "batch_cancelled", "message": "the batch was cancelled"}' """
                "WHERE batch_id = %s AND status = 'queued'",
                (batch_id,),
            )
        self.publish({"kind": "check", "batch_id": batch_id})

    def batch(self, batch_id: str) -> Row:
        with self.connect() as conn:
            batch = (
                conn.cursor(row_factory=dict_row).execute("SELECT * FROM batches WHERE id = %s", (batch_id,)).fetchone()
            )
        assert batch is not None, f"no batch {batch_id}"
        return batch

    def finished(self, batch_id: str, timeout: float = 120) -> Row:
        def final() -> Row | None:
            batch = self.batch(batch_id)
            return batch if batch["status"] in FINAL else None

        batch = wait_for(final, timeout=timeout, interval=0.2)
        if batch is None:
            with self.connect() as conn:
                lines = conn.execute(
                    "SELECT status, attempts, count(*) FROM batch_lines WHERE batch_id = %s GROUP BY 1, 2", (batch_id,)
                ).fetchall()
            raise AssertionError(
                f"batch {batch_id} not finished in {timeout} s; its lines (status, attempts, count): {lines}"
            )
        return batch

    def lines(self, batch_id: str, status: str) -> int:
        with self.connect() as conn:
            (count,) = one(
                conn.execute("SELECT count(*) FROM batch_lines WHERE batch_id = %s AND status = %s", (batch_id, status))
            )
            return int(count)

    def charges(self, user: str) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(
                "SELECT request_id, outcome, prompt_tokens + completion_tokens FROM usage_ledger WHERE user_id = %s",
                (user,),
            ).fetchall()


@pytest.fixture
def batches(batch_database: Postgres, queue: BatchQueue) -> Batches:
    return Batches(batch_database.conninfo, queue)


# A worker in this process, its settings overrides given (``worker_of(**settings)``).
WorkerOf = Callable[..., Server]


@pytest.fixture
def worker_of(batch_database: Postgres, upstream: Server, gcs: Server, queue: BatchQueue) -> WorkerOf:
    """A worker in this process (``worker_of(**settings)``), stopped as SIGTERM stops it."""

    def start(**overrides: Any) -> Server:
        server = Server(
            create_app(worker_settings(upstream, gcs, queue, **overrides), conninfo=batch_database.conninfo)
        )
        return server

    return start


def read_file(gcs: Server, batch_id: str, kind: str) -> list[dict[str, Any]]:
    data = gcs.app.state.objects[(BUCKET, f"outputs/{batch_id}/{kind}.jsonl")].data
    return [json.loads(line) for line in data.splitlines()]


def requests_for(upstream: Server, batches: Batches, batch_id: str, line: int) -> int:
    """How often the model stand-in was sent this line."""
    prompt = batches.prompt(batch_id, line)
    return sum(r["body"]["messages"][-1]["content"] == prompt for r in upstream.app.state.requests)


def test_a_thousand_line_batch_ends_with_a_thousand_results_and_charges(
    worker_of: WorkerOf, batches: Batches, gcs: Server
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-echo"] * 1000)
    with worker_of(max_outstanding_messages=32):
        batch = batches.finished(batch_id)
    assert batch["status"] == "completed" and batch["completed_at"] and batch["finalizing_at"]
    output = read_file(gcs, batch_id, "output")
    assert [line["custom_id"] for line in output] == [f"request-{n}" for n in range(1000)]
    assert {line["id"] for line in output} == {line_request_id(batch_id, n) for n in range(1000)}
    first = output[0]
    assert first["error"] is None and first["response"]["status_code"] == 200
    assert first["response"]["request_id"] == first["id"]
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "Hello from the stand-in."
    # One ledger row a line, under the line's request id, with the tokens the backend reported.
    charges = batches.charges(user)
    assert sorted(c[0] for c in charges) == sorted(line["id"] for line in output)
    assert {c[1] for c in charges} == {"completed"} and all(c[2] > 0 for c in charges)
    # The output file is recorded for the batch's owner; no line failed, so there is no error file.
    assert batch["output_file_id"] == output_file_id(batch_id, "output") and batch["error_file_id"] is None
    with batches.connect() as conn:
        row = conn.execute(
            "SELECT user_id, purpose, line_count, object_name FROM batch_files WHERE id = %s",
            (batch["output_file_id"],),
        ).fetchone()
    assert row == (user, "batch_output", 1000, f"outputs/{batch_id}/output.jsonl")


def test_a_redelivered_line_is_answered_and_charged_once(
    worker_of: WorkerOf, batches: Batches, upstream: Server, gcs: Server
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-lag"] * 3, publish=False)
    line = {"kind": "line", "batch_id": batch_id, "line": 0}
    # Line 0 twice before any worker runs: the two deliveries may run at once.
    batches.publish(
        line, line, {"kind": "line", "batch_id": batch_id, "line": 1}, {"kind": "line", "batch_id": batch_id, "line": 2}
    )
    with worker_of():
        batches.finished(batch_id)
        batches.publish(line)  # and once more after the line is done
        wait_for(lambda: False, timeout=2)
    assert requests_for(upstream, batches, batch_id, 0) == 1
    assert len(read_file(gcs, batch_id, "output")) == 3
    assert sorted(c[0] for c in batches.charges(user)) == sorted(line_request_id(batch_id, n) for n in range(3))


def test_a_poison_line_is_dead_lettered_and_in_the_error_file(
    worker_of: WorkerOf, batches: Batches, upstream: Server, gcs: Server
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    # standin-fail answers 503: no backend answers, the line is handed back each time.
    batch_id = batches.create(user, ["standin-echo", "standin-fail", "standin-echo"])
    with worker_of():
        batch = batches.finished(batch_id, timeout=60)
    assert batch["status"] == "completed"
    assert [line["custom_id"] for line in read_file(gcs, batch_id, "output")] == ["request-0", "request-2"]
    (error,) = read_file(gcs, batch_id, "errors")
    assert error["custom_id"] == "request-1" and error["response"] is None
    assert error["error"]["code"] == "max_delivery_attempts" and "5 attempts" in error["error"]["message"]
    # Pub/Sub delivered it the subscription's max_delivery_attempts times, then dead-lettered it.
    assert requests_for(upstream, batches, batch_id, 1) == 5
    assert batch["error_file_id"] == output_file_id(batch_id, "errors")
    # No backend answered the poison line: nothing was charged for it.
    assert sorted(c[0] for c in batches.charges(user)) == sorted(line_request_id(batch_id, n) for n in (0, 2))


def test_cancel_stops_new_work_and_keeps_the_finished_lines(
    worker_of: WorkerOf, batches: Batches, upstream: Server, gcs: Server
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-lag"] * 200)
    with worker_of(max_outstanding_messages=4):
        assert wait_for(lambda: batches.lines(batch_id, "succeeded") >= 8, timeout=30)
        batches.cancel(batch_id)
        batch = batches.finished(batch_id, timeout=30)
    assert batch["status"] == "cancelled" and batch["cancelled_at"] and batch["completed_at"] is None
    done = batches.lines(batch_id, "succeeded")
    assert 8 <= done < 200 and batches.lines(batch_id, "cancelled") == 200 - done
    # The lines not begun at the cancel were never sent to the model.
    assert sum(requests_for(upstream, batches, batch_id, n) for n in range(200)) == done
    assert len(read_file(gcs, batch_id, "output")) == done
    errors = read_file(gcs, batch_id, "errors")
    assert len(errors) == 200 - done and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert len(batches.charges(user)) == done


def test_a_batch_past_its_expiry_ends_expired(worker_of: WorkerOf, batches: Batches, gcs: Server) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-lag"] * 100, expires_in=2)
    with worker_of(max_outstanding_messages=2):
        batch = batches.finished(batch_id, timeout=30)
    assert batch["status"] == "expired" and batch["expired_at"]
    done, expired = batches.lines(batch_id, "succeeded"), batches.lines(batch_id, "expired")
    assert done > 0 and expired > 0 and done + expired == 100
    assert len(read_file(gcs, batch_id, "output")) == done
    assert {e["error"]["code"] for e in read_file(gcs, batch_id, "errors")} == {"batch_expired"}


def test_a_message_no_worker_can_act_on_is_dropped_once(
    worker_of: WorkerOf, batches: Batches, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with worker_of():
        batches.publish(
            b"not json",
            {"kind": "line", "batch_id": "batch_no_such_batch", "line": 0},
            {"kind": "line", "batch_id": "batch_x", "line": "seven"},
            {"kind": "fetch", "batch_id": "batch_x"},
            # An orchestrator's handed-off outcome (issue 20, point 8), but a token count is not one.
            {"kind": "outcome", "entry": str(uuid.uuid4()), "outcome": "completed", "backend": None}
            | {"prompt_tokens": -1, "completion_tokens": 3},
        )
        wait_for(lambda: False, timeout=4)  # time for redeliveries, were they nacked
    dropped = [r for r in caplog.records if r.getMessage() == "message dropped"]
    no_line = [r for r in caplog.records if r.getMessage() == "line message for no such line; dropped"]
    assert sorted(fields(r)["reason"] for r in dropped) == [
        "no line number",
        "not JSON",
        "not a ledger outcome",
        "unknown kind 'fetch'",
    ]
    assert len(no_line) == 1


def test_a_handed_off_outcome_the_database_refuses_is_dropped_and_logged_after_its_last_delivery(
    worker_of: WorkerOf, batches: Batches, caplog: pytest.LogCaptureFixture
) -> None:
    """An orchestrator's outcome (issue 20, point 8) the database refuses at every try is nacked,
    for Pub/Sub to deliver again; dead-lettered, it is logged whole and acked, not looped for ever."""
    entry = uuid.uuid4()
    with batches.connect() as conn:
        conn.execute(
            "INSERT INTO usage_ledger (id, request_id, user_id, model, outcome) "
            "VALUES (%s, 'refused-outcome', %s, 'standin-echo', 'started')",
            (entry, f"user-{uuid.uuid4().hex[:8]}"),
        )
        conn.execute("""
            CREATE OR REPLACE FUNCTION refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.request_id = 'refused-outcome' AND NEW.outcome <> 'started' THEN
                    RAISE EXCEPTION 'this outcome is refused';
                END IF;
                RETURN NEW;
            END $$;
            CREATE OR REPLACE TRIGGER refuse_outcome BEFORE UPDATE ON usage_ledger
                FOR EACH ROW EXECUTE FUNCTION refuse_outcome();
        """)
    outcome = {"kind": "outcome", "entry": str(entry), "outcome": "completed", "backend": "standin"}
    with worker_of():
        batches.publish(outcome | {"prompt_tokens": 3, "completion_tokens": 5})
        assert wait_for(lambda: [r for r in caplog.records if r.getMessage() == "ledger outcome dropped"], 30)
        wait_for(lambda: False, timeout=2)  # time for another delivery, were it nacked
    dropped = [fields(r) for r in caplog.records if r.getMessage() == "ledger outcome dropped"]
    assert [(d["entry"], d["completion_tokens"]) for d in dropped] == [(str(entry), 5)]


def test_finalizing_twice_at_once_or_after_a_storage_outage_records_one_set_of_files(
    batch_database: Postgres, batches: Batches, gcs: Server
) -> None:
    """Two finalizers at once (a worker and the sweeper) write the same objects and rows once;
    one that found Cloud Storage down leaves the batch finalizing, for the next to finish."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-echo"] * 2, publish=False)
    with batches.connect() as conn:
        conn.execute(
            "UPDATE batch_lines SET status = 'succeeded', response = '{\"status_code\": 200, \"body\": {}}' WHERE batch_id = %s",
            (batch_id,),
        )
        conn.execute("UPDATE batches SET status = 'finalizing', finalizing_at = now() WHERE id = %s", (batch_id,))

    async def finalize(url: str, times: int) -> list[bool]:
        async with (
            AsyncConnectionPool(batch_database.conninfo, open=False, kwargs={"autocommit": True}) as pool,
            aiohttp.ClientSession() as session,
        ):
            finalizer = Finalizer(pool, BlobStore(BUCKET, session, None, url))
            return list(await asyncio.gather(*(finalizer.finalize(batch_id) for _ in range(times))))

    started = time.monotonic()
    assert asyncio.run(finalize("http://127.0.0.1:9", 1)) == [False]  # nothing listens there
    assert time.monotonic() - started >= 3  # it tried again before giving up
    assert batches.batch(batch_id)["status"] == "finalizing"
    assert asyncio.run(finalize(gcs.url, 2)) == [True, True]
    batch = batches.batch(batch_id)
    assert batch["status"] == "completed" and batch["output_file_id"] == output_file_id(batch_id, "output")
    with batches.connect() as conn:
        (files,) = one(
            conn.execute(
                "SELECT count(*) FROM batch_files WHERE id LIKE 'file-%%' AND object_name LIKE %s",
                (f"outputs/{batch_id}/%",),
            )
        )
    assert files == 1
    assert len(read_file(gcs, batch_id, "output")) == 2


def test_a_refused_line_fails_at_once_and_is_charged_as_a_failure(
    worker_of: WorkerOf, batches: Batches, upstream: Server, gcs: Server
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-refuse", "standin-echo"])
    with worker_of():
        batch = batches.finished(batch_id)
    assert batch["status"] == "completed"  # as OpenAI's: a batch whose lines failed still completes
    (error,) = read_file(gcs, batch_id, "errors")
    assert error["custom_id"] == "request-0" and error["response"]["status_code"] == 400
    assert error["error"] == {"code": "context_length_exceeded", "message": "this model's context is too short"}
    assert requests_for(upstream, batches, batch_id, 0) == 1  # a refusal is not tried again
    assert sorted(c[:2] for c in batches.charges(user)) == sorted(
        [(line_request_id(batch_id, 0), "failed"), (line_request_id(batch_id, 1), "completed")]
    )


def test_a_line_whose_backend_reports_impossible_usage_is_charged_its_bound_as_usage_invalid(
    worker_of: WorkerOf, batches: Batches, gcs: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 20, point 9: 2**40 prompt tokens reported for a few words is the backend's fault; the
    line's answer is the user's, its charge the most the line could have used."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-liar"])
    with worker_of():
        batches.finished(batch_id)
    (result,) = read_file(gcs, batch_id, "output")
    assert result["response"]["status_code"] == 200
    body = {"model": "standin-liar", "messages": [{"role": "user", "content": batches.prompt(batch_id, 0)}]}
    assert batches.charges(user) == [(line_request_id(batch_id, 0), "usage_invalid", len(json.dumps(body)) + 5)]
    assert [fields(r)["backend"] for r in caplog.records if r.getMessage().startswith("backend reported usage beyond")]


def test_a_line_failed_after_its_last_delivery_leaves_no_reservation_behind(
    worker_of: WorkerOf, batches: Batches, gcs: Server
) -> None:
    """A delivery that died after reserving the line's estimate left its row started; the line's
    failure after its last delivery drops it, so the line is not charged (nor its quota held)."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-echo"], publish=False)
    with batches.connect() as conn:
        conn.execute("UPDATE batches SET status = 'in_progress' WHERE id = %s", (batch_id,))
        conn.execute(
            "INSERT INTO usage_ledger (id, request_id, user_id, model, outcome, reserved_tokens) "
            "VALUES (%s, %s, %s, 'standin-echo', 'started', 1000)",
            (uuid.uuid4(), line_request_id(batch_id, 0), user),
        )
    message = json.dumps({"kind": "line", "batch_id": batch_id, "line": 0}).encode()
    batches.publisher.publish(batches.queue.dead_letter_topic, message).result(timeout=30)
    with worker_of():
        batches.finished(batch_id)
    assert [e["error"]["code"] for e in read_file(gcs, batch_id, "errors")] == ["max_delivery_attempts"]
    assert batches.charges(user) == []


def test_a_user_past_the_daily_quota_has_the_lines_fail_unsent(
    worker_of: WorkerOf, batches: Batches, upstream: Server, gcs: Server
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    with batches.connect() as conn:  # the whole of today's quota used interactively
        conn.execute(
            "INSERT INTO usage_ledger (id, request_id, user_id, model, outcome, prompt_tokens, completion_tokens) "
            "VALUES (%s, 'interactive', %s, 'standin-echo', 'completed', 1000000, 0)",
            (uuid.uuid4(), user),
        )
    batch_id = batches.create(user, ["standin-echo"] * 3)
    with worker_of():
        batches.finished(batch_id)
    errors = read_file(gcs, batch_id, "errors")
    assert [e["error"]["code"] for e in errors] == ["quota_exceeded"] * 3
    assert sum(requests_for(upstream, batches, batch_id, n) for n in range(3)) == 0
    assert [c[0] for c in batches.charges(user)] == ["interactive"]


def test_lines_on_several_workers_overspend_the_quota_by_one_line_at_most(
    worker_of: WorkerOf, batches: Batches, gcs: Server
) -> None:
    """Issue 20, point 7: 30 lines of 1,006 tokens (the stand-in counts the prompt's 1,001 words and
    answers 5 tokens, 0.2 s late) on three workers, against a 5,000-token quota. Each line reserves
    its estimate under the user's lock before it is sent, so at most one line goes beyond the quota;
    lines that wait for others in flight to settle still run while there is room."""
    user, line_tokens, quota = f"user-{uuid.uuid4().hex[:8]}", 1006, 5000
    batch_id = batches.create(user, ["standin-lag"] * 30, padding=" w" * 998)
    # A claim long enough for a line to wait out the others (claim_seconds - max_request_seconds).
    settings = {"daily_token_quota": quota, "claim_seconds": 15}
    with worker_of(**settings), worker_of(**settings), worker_of(**settings):
        batches.finished(batch_id)
    charges = batches.charges(user)
    assert {c[1:] for c in charges} == {("completed", line_tokens)}
    assert quota <= sum(c[2] for c in charges) <= quota + line_tokens  # the quota used, by one line beyond at most
    errors = read_file(gcs, batch_id, "errors")
    assert len(errors) == 30 - len(charges) and {e["error"]["code"] for e in errors} == {"quota_exceeded"}


def test_a_batch_its_publisher_left_validating_is_published_by_the_sweeper(
    worker_of: WorkerOf, batches: Batches, gcs: Server
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    batch_id = batches.create(user, ["standin-echo"] * 5, publish=False)  # the orchestrator died here
    with batches.connect() as conn:
        conn.execute("UPDATE batches SET created_at = now() - interval '3 minutes' WHERE id = %s", (batch_id,))
    with worker_of():
        batch = batches.finished(batch_id, timeout=30)
    assert batch["status"] == "completed" and batch["in_progress_at"]
    assert len(read_file(gcs, batch_id, "output")) == 5


def test_the_sweeper_finishes_a_cancelled_batch_a_dead_worker_left_half_finalized(
    batch_database: Postgres, batches: Batches, gcs: Server
) -> None:
    """A cancelled batch being finalized stays 'cancelling' (finalize.py): one whose finalizer
    died is taken over like one left 'finalizing'; one finalized now is left to its finalizer."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    stuck, busy = (batches.create(user, ["standin-echo"] * 2, publish=False) for _ in range(2))
    with batches.connect() as conn:
        for batch_id, began in ((stuck, "now() - interval '1 hour'"), (busy, "now()")):
            conn.execute(
                "UPDATE batch_lines SET status = 'cancelled', finished_at = now(), "
                """error = '{"code": "batch_cancelled", "message": "m"}' WHERE batch_id = %s""",
                (batch_id,),
            )
            conn.execute(
                f"UPDATE batches SET status = 'cancelling', cancelling_at = now(), finalizing_at = {began} "
                "WHERE id = %s",
                (batch_id,),
            )

    async def sweep() -> None:
        async with (
            AsyncConnectionPool(batch_database.conninfo, open=False, kwargs={"autocommit": True}) as pool,
            aiohttp.ClientSession() as session,
        ):
            finalizer = Finalizer(pool, BlobStore(BUCKET, session, None, gcs.url))
            await Sweeper(pool, finalizer, publish=lambda data: asyncio.sleep(0)).sweep()  # no batch left validating

    asyncio.run(sweep())
    assert batches.batch(stuck)["status"] == "cancelled" and batches.batch(stuck)["error_file_id"]
    assert batches.batch(busy)["status"] == "cancelling"
    assert len(read_file(gcs, stuck, "errors")) == 2
