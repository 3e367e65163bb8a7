"""The usage ledger: one row per accepted request, finished exactly once with its outcome.

A request is accepted only once its row is written (else the caller gets 503). Its
outcome is queued and written by a background task that retries until the database
takes it, so an outage after acceptance loses nothing while the instance lives, and a
client that goes away does not cancel the write.

An instance that dies (SIGKILL, a crash) leaves its requests' rows started. Every instance,
at start-up and then every ``reconcile_seconds``, finishes the rows started more than
``stale_after`` seconds ago as ``abandoned``, with the tokens they record (a stream's
checkpoints: what had reached the client by the last one), which releases their quota
reservations. ``stale_after`` is the
longest a request lives (the backend's answer is cut there) plus a margin, so a row is
abandoned within stale_after + reconcile_seconds of its start: 300 + 60 + 60 = 420 s by
default. Should a live instance write the real outcome later (it waited out an outage), that
outcome replaces ``abandoned``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.servicekit import logs

log = logging.getLogger("orchestrator.ledger")
# And "abandoned", by reconciliation. "usage_invalid": the backend reported more tokens than the
# request could have used (usage.UsageBound); charged that bound, and logged as the backend's fault.
OUTCOMES = ("completed", "failed", "client_aborted", "upstream_aborted", "usage_invalid")
# Any fixed number: serializes migrations between instances starting at once.
MIGRATION_LOCK = 7_310_241_001
# Migrations may wait for other instances' transactions; requests may not wait that long.
MIGRATION_SECONDS = 30
T = TypeVar("T")
MIGRATIONS = {
    1: """
        CREATE TABLE usage_ledger (
            id uuid PRIMARY KEY,
            request_id text NOT NULL,
            user_id text NOT NULL,
            model text NOT NULL,
            backend text,
            outcome text NOT NULL CHECK (outcome IN ('started', 'completed', 'failed', 'client_aborted', 'upstream_aborted')),
            prompt_tokens integer NOT NULL DEFAULT 0,
            completion_tokens integer NOT NULL DEFAULT 0,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );
        CREATE INDEX usage_ledger_user_started ON usage_ledger (user_id, started_at);
    """,
    # An accepted request holds an estimate of its tokens against the quota until its outcome
    # replaces it with what it used: a check that saw only finished requests let a burst of
    # simultaneous ones all pass.
    2: "ALTER TABLE usage_ledger ADD COLUMN reserved_tokens integer NOT NULL DEFAULT 0",
    # Rows an instance that died left started are finished as abandoned (see the docstring).
    # NOT VALID: every existing row meets the narrower check already, so no scan of the table
    # under its exclusive lock. The index keeps each reconciliation to the started rows.
    3: """
        ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_outcome_check;
        ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_outcome_check CHECK (outcome IN
            ('started', 'completed', 'failed', 'client_aborted', 'upstream_aborted', 'abandoned')) NOT VALID;
        CREATE INDEX usage_ledger_started ON usage_ledger (started_at) WHERE outcome = 'started';
    """,
    # Batch jobs (services.orchestrator.batch, services.worker): uploaded files, batches and
    # their lines, each line finished once and charged with at most one usage_ledger row.
    4: """
        CREATE TABLE batch_files (
            id text PRIMARY KEY,                 -- 'file-' + 24 hex
            user_id text NOT NULL,
            purpose text NOT NULL CHECK (purpose IN ('batch', 'batch_output')),
            filename text NOT NULL,
            bytes bigint NOT NULL,
            line_count integer NOT NULL,
            object_name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX batch_files_user ON batch_files (user_id, created_at);
        CREATE TABLE batches (
            id text PRIMARY KEY,                 -- 'batch_' + 24 hex
            user_id text NOT NULL,
            input_file_id text NOT NULL REFERENCES batch_files (id),
            endpoint text NOT NULL,              -- '/v1/chat/completions' (the only one served)
            completion_window text NOT NULL,     -- '24h' (the only one OpenAI offers)
            metadata jsonb,
            status text NOT NULL CHECK (status IN ('validating', 'failed', 'in_progress', 'finalizing',
                                                    'completed', 'expired', 'cancelling', 'cancelled')),
            errors jsonb,                        -- OpenAI's {"object": "list", "data": [...]} when failed
            output_file_id text REFERENCES batch_files (id),
            error_file_id text REFERENCES batch_files (id),
            request_total integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,     -- created_at + 24 h
            in_progress_at timestamptz, finalizing_at timestamptz, completed_at timestamptz,
            failed_at timestamptz, expired_at timestamptz, cancelling_at timestamptz, cancelled_at timestamptz
        );
        CREATE INDEX batches_user ON batches (user_id, created_at);
        CREATE INDEX batches_open ON batches (status) WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling');
        CREATE TABLE batch_lines (
            batch_id text NOT NULL REFERENCES batches (id),
            line integer NOT NULL,               -- 0-based position in the input file
            custom_id text NOT NULL,
            body jsonb NOT NULL,                 -- the line's request body, as the backend is sent it
            status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded',
                                                                  'failed', 'cancelled', 'expired')),
            claimed_by text,
            claim_expires_at timestamptz,
            attempts integer NOT NULL DEFAULT 0,
            response jsonb,                      -- {"status_code", "request_id", "body"} of a backend answer
            error jsonb,                         -- {"code", "message"} when failed, cancelled or expired
            ledger_id uuid,                      -- the one usage_ledger row this line was charged with
            finished_at timestamptz,
            PRIMARY KEY (batch_id, line),
            UNIQUE (batch_id, custom_id)
        );
        CREATE INDEX batch_lines_open ON batch_lines (batch_id) WHERE status IN ('queued', 'running');
    """,
    # DELETE /v1/files/{id} deletes the file's row while batches may name it, as OpenAI lets a
    # file be deleted: a batch keeps the id (its lines are its own rows), which is then not found.
    5: """
        ALTER TABLE batches DROP CONSTRAINT batches_input_file_id_fkey,
            DROP CONSTRAINT batches_output_file_id_fkey, DROP CONSTRAINT batches_error_file_id_fkey;
    """,
    # Idempotency keys (services.orchestrator.idempotency): one per user and key, claimed by the
    # first request, holding its outcome for replays until expires_at.
    6: """
        CREATE TABLE idempotency_keys (
            user_id text NOT NULL,
            key text NOT NULL,
            fingerprint bytea NOT NULL,          -- SHA-256 of the route and the request body
            claim uuid NOT NULL,                 -- the request running under the key
            status integer,                      -- the outcome's HTTP status; null while in flight
            content_type text,
            body bytea,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,     -- created_at + the window: then the key is free again
            stale_at timestamptz NOT NULL,       -- an unfinished claim older than this died with its instance
            PRIMARY KEY (user_id, key)
        );
        CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
    """,
    # usage_invalid: a row whose backend reported impossible usage, charged at the request's bound.
    # NOT VALID, as in 3: the existing rows meet the wider check.
    7: """
        ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_outcome_check;
        ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_outcome_check CHECK (outcome IN
            ('started', 'completed', 'failed', 'client_aborted', 'upstream_aborted', 'abandoned', 'usage_invalid'))
            NOT VALID;
    """,
}
# An outcome written once; but the real outcome replaces a reconciliation's guess that the
# instance had died. Also how the batch worker writes an outcome an orchestrator handed over.
SETTLE = """
    UPDATE usage_ledger SET outcome = %s, backend = %s, prompt_tokens = %s, completion_tokens = %s, finished_at = now()
    WHERE id = %s AND outcome IN ('started', 'abandoned')
"""
# The first key of the per-user admission lock (the second is a hash of the user id).
QUOTA_LOCK = 7_310
# The user's tokens today (UTC): used (by finished requests, and as checkpointed by those in
# flight), and reserved by those in flight beyond what they have checkpointed.
TODAY = """
    SELECT coalesce(sum(prompt_tokens + completion_tokens), 0),
           coalesce(sum(greatest(reserved_tokens - prompt_tokens - completion_tokens, 0))
                    FILTER (WHERE outcome = 'started'), 0)
    FROM usage_ledger
    WHERE user_id = %s AND started_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
"""


async def reserve(
    conn: psycopg.AsyncConnection, request_id: str, user_id: str, model: str, quota: int, estimate: int
) -> uuid.UUID | None:
    """A started row reserving ``estimate`` tokens of the user's quota (see ``admits``), its id;
    None when the quota has no room for it. The orchestrator's requests and the batch worker's
    lines both reserve so, which bounds the overspend across all instances and workers."""
    entry = uuid.uuid4()
    async with conn.transaction():
        # One admission at a time per user, across connections and instances: the next
        # one reads the quota only after this one's row is committed (the lock is held
        # until then).
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (QUOTA_LOCK, user_id))
        used, reserved = await today(conn, user_id)
        if not admits(used, reserved, estimate, quota):
            return None
        await conn.execute(
            "INSERT INTO usage_ledger (id, request_id, user_id, model, outcome, reserved_tokens) "
            "VALUES (%s, %s, %s, %s, 'started', %s)",
            (entry, request_id, user_id, model, estimate),
        )
    return entry


async def today(conn: psycopg.AsyncConnection, user_id: str) -> tuple[int, int]:
    """The user's tokens today (UTC): used, and reserved by requests in flight (TODAY)."""
    row = await (await conn.execute(TODAY, (user_id,))).fetchone()
    if row is None:  # the query aggregates: it always returns one row
        raise RuntimeError("no row from TODAY")
    return int(row[0]), int(row[1])


def admits(used: int, reserved: int, estimate: int, quota: int) -> bool:
    """Admit a request whose estimate fits in what is left of the quota. One that does not fit
    is admitted only while none of the user's other requests is in flight: the last tokens of a
    quota stay usable (a request without max_tokens reserves more than a small remainder), and
    the overspend is at most that one request."""
    left = quota - used - reserved
    return left > 0 and (estimate <= left or reserved == 0)


# The database is away or too slow now; anything else it raises is about the statement itself.
UNREACHABLE = (psycopg.OperationalError, PoolTimeout, OSError)
REFUSALS_BEFORE_DROPPING = 3
# At shutdown, after drain_seconds: how long handing off the unwritten outcomes may take, and
# then closing the pool one second, within Cloud Run's ten (4 s + 3 s + 1.5 s + 1 s).
HANDOFF_SECONDS = 1.5


class LedgerUnavailable(Exception):
    """The database cannot be reached now; the request is not accepted."""


@dataclass(frozen=True)
class Outcome:
    entry: uuid.UUID
    outcome: str
    backend: str | None
    prompt_tokens: int
    completion_tokens: int

    def fields(self) -> dict[str, Any]:
        """For a log line that records an outcome the ledger could not."""
        return {
            "entry": str(self.entry),
            "outcome": self.outcome,
            "backend": self.backend,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class Ledger:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        retry_seconds: float = 1.0,
        timeout: float | None = None,
        stale_after: float = 360,
        reconcile_seconds: float = 60,
        drain_seconds: float = 3,
    ) -> None:
        self.pool = pool
        self.retry_seconds = retry_seconds
        # The longest one database operation may take (the pool's wait for a connection by default).
        self.timeout = timeout or pool.timeout
        self.stale_after, self.reconcile_seconds = stale_after, reconcile_seconds
        self.drain_seconds = drain_seconds
        self.migrated = False
        self.pending: asyncio.Queue[Outcome] = asyncio.Queue()
        self.writing: Outcome | None = None  # taken off the queue, not yet written
        self.writer: asyncio.Task[None] | None = None
        self.reconciler: asyncio.Task[None] | None = None
        # Where outcomes the database has not taken by shutdown go to outlive the instance (Pub/Sub,
        # for the batch workers to write: app.py); without one they are only logged.
        self.handoff: Callable[[list[Outcome]], Awaitable[None]] | None = None
        # Told each write's seconds and whether it succeeded: the orchestrator's metrics.
        self.on_write: Callable[[float, bool], None] = lambda seconds, ok: None

    async def start(self) -> None:
        await self.pool.open(wait=False)
        self.writer = asyncio.create_task(self._write_outcomes())
        self.reconciler = asyncio.create_task(self._reconcile_now_and_then())

    async def stop(self) -> None:
        """Write the queued outcomes, waiting at most ``drain_seconds`` for the database: Cloud
        Run kills the instance ten seconds after SIGTERM, and uvicorn gives requests the first
        four. Outcomes still unwritten then are handed off (``handoff``, within HANDOFF_SECONDS),
        to be written once the database is back; failing that, logged whole, for the record,
        and their rows stay started until reconciled."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pending.join(), self.drain_seconds)
        for task in (self.writer, self.reconciler):
            if task:
                task.cancel()
        unwritten = [self.writing] if self.writing else []
        while not self.pending.empty():
            unwritten.append(self.pending.get_nowait())
        if unwritten and self.handoff:
            try:
                await asyncio.wait_for(self.handoff(unwritten), HANDOFF_SECONDS)
                for outcome in unwritten:
                    logs.event(log, "ledger outcome handed off", logging.WARNING, **outcome.fields())
                unwritten = []
            except Exception as err:  # whatever it was, the outcomes are logged below
                logs.event(log, "ledger handoff failed", logging.ERROR, error=repr(err)[:500])
        for outcome in unwritten:
            logs.event(log, "ledger outcome lost", logging.ERROR, **outcome.fields())
        await self.pool.close(timeout=1)

    async def migrate(self) -> None:
        """Apply missing migrations; safe when several instances start at once."""
        await self._bounded(self._migrate(), MIGRATION_SECONDS)

    async def _migrate(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            # Longer than the connections' statement and lock timeouts: ALTER TABLE may wait for
            # other instances' transactions on the table.
            await conn.execute(f"SET LOCAL statement_timeout = '{MIGRATION_SECONDS}s'")
            await conn.execute(f"SET LOCAL lock_timeout = '{MIGRATION_SECONDS}s'")
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {row[0] async for row in await conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in sorted(MIGRATIONS.items()):
                if version not in applied:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    logs.event(log, "migration applied", version=version)
        self.migrated = True

    async def run(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]], seconds: float | None = None) -> T:
        """``work`` on a pooled connection, once the migrations are applied, bounded as the ledger's
        own operations are (``seconds``, the ledger's timeout by default); LedgerUnavailable when
        the database cannot be reached or does not answer in time. For the batch tables."""

        async def migrated_work() -> T:
            if not self.migrated:
                await self._migrate()
            async with self.pool.connection() as conn:
                return await work(conn)

        try:
            return await self._bounded(migrated_work(), seconds)
        except UNREACHABLE as err:  # TimeoutError too
            raise LedgerUnavailable(type(err).__name__) from None

    async def open_entry(
        self, request_id: str, user_id: str, model: str, quota: int, estimate: int = 0
    ) -> uuid.UUID | None:
        """The new entry's id, reserving ``estimate`` tokens of the user's daily quota until its
        outcome is written; None when the quota has no room for it (see ``admits``)."""
        try:
            return await self._timed(self._admit(request_id, user_id, model, quota, estimate))
        except (psycopg.Error, PoolTimeout, OSError) as err:  # OSError: TimeoutError too
            raise LedgerUnavailable(type(err).__name__) from None

    async def _admit(self, request_id: str, user_id: str, model: str, quota: int, estimate: int) -> uuid.UUID | None:
        if not self.migrated:
            await self._migrate()
        async with self.pool.connection() as conn:
            return await reserve(conn, request_id, user_id, model, quota, estimate)

    def close_entry(self, outcome: Outcome) -> None:
        """Queue the entry's outcome; written once, whatever happens to the request."""
        if outcome.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome.outcome!r}")
        self.pending.put_nowait(outcome)

    async def checkpoint(self, entry: uuid.UUID, prompt_tokens: int, completion_tokens: int) -> None:
        """Record the tokens a request in flight has used so far, which a reconciliation keeps
        should the instance die. Best effort: a checkpoint missed is only a later one's loss."""
        try:
            await self._bounded(self._checkpoint(entry, prompt_tokens, completion_tokens))
        except (psycopg.Error, PoolTimeout, OSError) as err:
            logs.event(log, "usage checkpoint skipped", logging.WARNING, error=type(err).__name__)

    async def _checkpoint(self, entry: uuid.UUID, prompt_tokens: int, completion_tokens: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE usage_ledger SET prompt_tokens = %s, completion_tokens = %s WHERE id = %s AND outcome = 'started'",
                (prompt_tokens, completion_tokens, entry),
            )

    async def _write_outcomes(self) -> None:
        while True:
            self.writing = await self.pending.get()
            await self._write(self.writing)
            self.writing = None
            self.pending.task_done()

    async def _write(self, outcome: Outcome) -> None:
        """Retry while the database is away, however long; give up on an outcome the database
        itself refuses after a few tries, as it may refuse it for ever and hold up the rest."""
        refusals = 0
        while True:
            try:
                await self._timed(self._settle(outcome))
                return
            except UNREACHABLE as err:
                logs.event(
                    log,
                    "ledger write deferred",
                    logging.WARNING,
                    error=type(err).__name__,
                    pending=self.pending.qsize() + 1,
                )
            except psycopg.Error as err:
                refusals += 1
                if refusals >= REFUSALS_BEFORE_DROPPING:
                    # Logged whole, for the record; the row stays started until reconciled.
                    logs.event(
                        log, "ledger outcome dropped", logging.ERROR, error=type(err).__name__, **outcome.fields()
                    )
                    return
            await asyncio.sleep(self.retry_seconds)

    async def _settle(self, outcome: Outcome) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                SETTLE,
                (outcome.outcome, outcome.backend, outcome.prompt_tokens, outcome.completion_tokens, outcome.entry),
            )

    async def reconcile(self) -> int:
        """Finish the rows started longer than ``stale_after`` ago as abandoned; how many."""
        return await self._bounded(self._reconcile())

    async def _reconcile(self) -> int:
        if not self.migrated:
            await self._migrate()
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE usage_ledger SET outcome = 'abandoned', finished_at = now() "
                "WHERE outcome = 'started' AND started_at < now() - make_interval(secs => %s)",
                (self.stale_after,),
            )
        if cursor.rowcount:
            logs.event(
                log,
                "stale ledger rows abandoned",
                logging.WARNING,
                rows=cursor.rowcount,
                stale_after_seconds=self.stale_after,
            )
        return cursor.rowcount

    async def _reconcile_now_and_then(self) -> None:
        while True:
            try:
                await self.reconcile()
            except (psycopg.Error, PoolTimeout, OSError) as err:
                logs.event(log, "reconciliation deferred", logging.WARNING, error=type(err).__name__)
            await asyncio.sleep(self.reconcile_seconds)

    async def _timed(self, write: Coroutine[Any, Any, T]) -> T:
        started, ok = time.perf_counter(), False
        try:
            result = await self._bounded(write)
            ok = True
            return result
        finally:
            self.on_write(time.perf_counter() - started, ok)

    async def _bounded(self, work: Coroutine[Any, Any, T], seconds: float | None = None) -> T:
        """The result of ``work``, or TimeoutError after ``seconds`` (the ledger's timeout by
        default). A server that hangs with its connections open answers nothing, ever, so
        neither the caller nor the statement's own timeout would end the wait. The work is
        cancelled, so it goes no further, but not waited for: psycopg may spend ten seconds
        trying to cancel a query the server does not answer."""
        seconds = seconds or self.timeout
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nobody may be left to read it
        try:
            done, _ = await asyncio.wait({task}, timeout=seconds)
        finally:
            task.cancel()  # nothing once it is done; and the caller's own cancellation ends it too
        if not done:
            raise TimeoutError(f"no answer from the database in {seconds} s")
        return task.result()
