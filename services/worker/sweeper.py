"""What no message asks for: batches whose publisher died, ran out of time, were cancelled with
nothing left running, or were left half finalized. Every ``sweep_interval_seconds``, one worker at a
time (a PostgreSQL advisory lock) looks for them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.servicekit import logs
from services.worker.finalize import Finalizer

log = logging.getLogger("worker.sweeper")
# Any fixed number: one sweeper at a time across the workers.
SWEEP_LOCK = 7_310_241_013
# A batch left validating (its lines committed, its publisher gone) or finalizing this long is
# taken over.
STUCK_SECONDS = 120

STUCK_VALIDATING = """
    SELECT b.id, array_agg(l.line ORDER BY l.line) FILTER (WHERE l.status IN ('queued', 'running'))
    FROM batches AS b JOIN batch_lines AS l ON l.batch_id = b.id
    WHERE b.status = 'validating' AND b.created_at < now() - make_interval(secs => %s)
    GROUP BY b.id
"""
# Lines no worker will run now, of batches cancelled or past their expiry: those not begun, and
# those whose worker died (their claim ran out).
CLOSE_LINES = """
    UPDATE batch_lines AS l SET
        status = CASE WHEN b.status = 'cancelling' THEN 'cancelled' ELSE 'expired' END,
        error = CASE WHEN b.status = 'cancelling'
            THEN jsonb_build_object('code', 'batch_cancelled', 'message', 'the batch was cancelled before this line ran')
            ELSE jsonb_build_object('code', 'batch_expired', 'message', 'the batch expired before this line ran') END,
        finished_at = now(), claimed_by = NULL, claim_expires_at = NULL
    FROM batches AS b
    WHERE b.id = l.batch_id
      AND (b.status = 'cancelling' OR (b.status IN ('validating', 'in_progress') AND b.expires_at <= now()))
      AND (l.status = 'queued' OR (l.status = 'running' AND l.claim_expires_at < now()))
"""
OPEN_BATCHES = "SELECT id FROM batches WHERE status IN ('validating', 'in_progress', 'cancelling')"
# Being finalized: 'finalizing', or 'cancelling' with finalizing_at set (finalize.py).
STUCK_FINALIZING = """
    SELECT id FROM batches
    WHERE status IN ('finalizing', 'cancelling') AND finalizing_at < now() - make_interval(secs => %s)
"""


class Sweeper:
    def __init__(
        self, pool: AsyncConnectionPool, finalizer: Finalizer, publish: Callable[[bytes], Awaitable[None]]
    ) -> None:
        self.pool, self.finalizer, self.publish = pool, finalizer, publish

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.sweep()
            except (psycopg.Error, OSError) as err:  # OSError: TimeoutError too
                logs.event(log, "sweep deferred", logging.WARNING, error=type(err).__name__)
            await asyncio.sleep(interval)

    async def sweep(self) -> None:
        async with self.pool.connection() as lock:
            held = await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (SWEEP_LOCK,))).fetchone()
            if not (held and held[0]):
                return  # another worker sweeps now
            try:
                await self._republish()
                await self._close_and_finalize()
                await self._refinalize()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK,))

    async def _republish(self) -> None:
        """A batch left validating: its lines may never have been published. Duplicates of
        those that were are harmless (lines.py)."""
        async with self.pool.connection() as conn:
            stuck = await (await conn.execute(STUCK_VALIDATING, (STUCK_SECONDS,))).fetchall()
        for batch_id, lines in stuck:
            await asyncio.gather(
                *(
                    self.publish(json.dumps({"kind": "line", "batch_id": batch_id, "line": n}).encode())
                    for n in lines or []
                )
            )
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE batches SET status = 'in_progress', in_progress_at = now() WHERE id = %s AND status = 'validating'",
                    (batch_id,),
                )
            logs.event(log, "stuck batch published again", logging.WARNING, batch_id=batch_id, lines=len(lines or []))

    async def _close_and_finalize(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(CLOSE_LINES)
            batches = await (await conn.execute(OPEN_BATCHES)).fetchall()
        for (batch_id,) in batches:
            await self.finalizer.finish_if_done(batch_id)

    async def _refinalize(self) -> None:
        async with self.pool.connection() as conn:
            stuck = await (await conn.execute(STUCK_FINALIZING, (STUCK_SECONDS,))).fetchall()
        for (batch_id,) in stuck:
            logs.event(log, "stuck batch finalized again", logging.WARNING, batch_id=batch_id)
            await self.finalizer.finalize(batch_id)
