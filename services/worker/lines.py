"""One batch line, run once: claimed in the database, admitted against the user's daily quota,
sent to the model backends, and finished with its ledger row in one transaction.

A line is claimed for ``claim_seconds`` under a token of this delivery; it is finished only by
``UPDATE ... WHERE status = 'running' AND claimed_by = <token>``, in the transaction that
inserts its ledger row. A redelivered message, or a second worker, finds the line finished or
claimed, so no line is answered or charged twice; a worker that died leaves a claim that runs
out, and the line's next delivery takes it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.modelcalls.backends import Backend
from services.modelcalls.health import Attempt, Router, Wait
from services.modelcalls.ledger import SETTLE, TODAY, reserve
from services.modelcalls.refusals import answer_head, backend_error
from services.modelcalls.routing import first_answer, route_for
from services.modelcalls.usage import UsageInvalid, UsageMeter, estimate_tokens, usage_bound
from services.servicekit import logs
from services.worker import metrics
from services.worker.finalize import Finalizer
from services.worker.ids import line_request_id
from services.worker.settings import WorkerSettings

log = logging.getLogger("worker.lines")
TERMINAL = ("succeeded", "failed", "cancelled", "expired")
# A line another delivery holds is looked at again this often, until it is finished or its claim runs out.
CLAIM_POLL_SECONDS = 2.0

CLAIM = """
    UPDATE batch_lines AS l
    SET status = 'running', claimed_by = %(token)s, attempts = l.attempts + 1,
        claim_expires_at = now() + make_interval(secs => %(lease)s)
    FROM batches AS b
    WHERE l.batch_id = %(batch)s AND l.line = %(line)s AND b.id = l.batch_id
      AND b.status IN ('validating', 'in_progress') AND b.expires_at > now()
      AND (l.status = 'queued' OR (l.status = 'running' AND (l.claim_expires_at < now() OR l.claimed_by = %(token)s)))
    RETURNING l.body, l.attempts, b.user_id
"""
STATE = """
    SELECT l.status, l.claim_expires_at - now(), b.status, b.expires_at <= now()
    FROM batch_lines AS l JOIN batches AS b ON b.id = l.batch_id
    WHERE l.batch_id = %s AND l.line = %s
"""
# A line of a batch that was cancelled or ran out of time while the line waited.
CLOSE = """
    UPDATE batch_lines SET status = %(status)s, error = %(error)s, finished_at = now(),
        claimed_by = NULL, claim_expires_at = NULL
    WHERE batch_id = %(batch)s AND line = %(line)s
      AND (status = 'queued' OR (status = 'running' AND claim_expires_at < now()))
"""
RELEASE = """
    UPDATE batch_lines SET status = 'queued', claimed_by = NULL, claim_expires_at = NULL
    WHERE batch_id = %s AND line = %s AND status = 'running' AND claimed_by = %s
"""
FINISH = """
    UPDATE batch_lines SET status = %(status)s, response = %(response)s, error = %(error)s,
        ledger_id = %(ledger)s, finished_at = now(), claim_expires_at = NULL
    WHERE batch_id = %(batch)s AND line = %(line)s AND status = 'running' AND claimed_by = %(token)s
"""
# The line's reservation (ledger.reserve) settled to what it used: an UPDATE by id, so a row a
# reconciliation took for abandoned gets the real outcome too.
CHARGE = """
    UPDATE usage_ledger SET backend = %s, outcome = %s, prompt_tokens = %s, completion_tokens = %s,
        finished_at = now()
    WHERE id = %s
"""
# A line's reservations not settled: a delivery that died with the line claimed left one started
# (or reconciled abandoned), which the next delivery's replaces, so a line has one ledger row.
UNSETTLED = "DELETE FROM usage_ledger WHERE request_id = %s AND outcome IN ('started', 'abandoned')"
# A line the quota has no room for while the user's other requests are in flight tries again this often.
QUOTA_POLL_SECONDS = 0.5
# The database is away or too slow now: the step is tried again, the message kept meanwhile.
UNREACHABLE = (psycopg.OperationalError, TimeoutError, OSError)
DATABASE_RETRY_SECONDS = 2.0
# At shutdown, how long a line's claim may take to be released before the process goes on.
RELEASE_SECONDS = 1.0


def closed_error(batch_status: str) -> tuple[str, dict[str, str]]:
    """The terminal status and error of a line its batch's cancel or expiry stopped."""
    if batch_status in ("cancelling", "cancelled"):
        return "cancelled", {"code": "batch_cancelled", "message": "the batch was cancelled before this line ran"}
    return "expired", {"code": "batch_expired", "message": "the batch expired before this line ran"}


@dataclass(frozen=True)
class Answer:
    """What became of a line's call: terminal (succeeded or failed, with what to record) or,
    ``transient``, nothing to record: the line is tried again later."""

    status: str  # "succeeded", "failed" or "transient"
    response: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_invalid: bool = False  # the backend reported more than the line could use: charged the bound
    entry: uuid.UUID | None = None  # the line's reservation in the usage ledger, once made

    @property
    def charged(self) -> bool:
        """A backend answered: the line has a ledger row, as an interactive request would."""
        return self.backend is not None


def failure(code: str, message: str) -> Answer:
    return Answer("failed", error={"code": code, "message": message})


class LineRunner:
    def __init__(
        self,
        settings: WorkerSettings,
        pool: AsyncConnectionPool,
        client: aiohttp.ClientSession,
        backends: dict[str, Backend],
        finalizer: Finalizer,
        worker_id: str,
    ) -> None:
        self.settings, self.pool, self.client, self.backends = settings, pool, client, backends
        self.finalizer, self.worker_id = finalizer, worker_id
        self.router = Router(settings, backends)

    async def run(self, batch_id: str, line: int) -> bool:
        """Whether the message may be acked: the line is finished, or never will be by this
        message. False: hand it back (nack), for Pub/Sub to deliver again with its backoff."""
        token = f"{self.worker_id}/{uuid.uuid4().hex[:12]}"  # this delivery's claim
        while True:
            claimed = await self._retrying(self._claim, batch_id, line, token)
            if claimed:
                break
            state = await self._retrying(self._state, batch_id, line)
            if state is None:
                logs.event(log, "line message for no such line; dropped", logging.WARNING, batch_id=batch_id, line=line)
                return True
            line_status, claim_left, batch_status, past_expiry = state
            if line_status in TERMINAL:  # a duplicate delivery; its batch may have been left unfinished
                await self.finalizer.finish_if_done(batch_id)
                return True
            if batch_status in ("cancelling", "cancelled", "expired") or past_expiry:
                await self._retrying(self._close, batch_id, line, batch_status)
                await self.finalizer.finish_if_done(batch_id)
                return True
            if line_status != "running" or batch_status not in ("validating", "in_progress"):
                logs.event(
                    log,
                    "line of a finished batch still open; dropped",
                    logging.ERROR,
                    batch_id=batch_id,
                    line=line,
                    batch_status=batch_status,
                )
                return True
            # Another delivery holds it: wait for it to finish, or for its claim to run out.
            metrics.LEASE_EXTENSIONS.inc()
            await asyncio.sleep(min(CLAIM_POLL_SECONDS, max(claim_left.total_seconds(), 0.1)))
        body, attempts, user_id = claimed
        try:
            answer = await self._answer(line_request_id(batch_id, line), body, attempts, user_id)
        except asyncio.CancelledError:  # shutdown: the next delivery need not wait out the claim
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._release(batch_id, line, token), RELEASE_SECONDS)
            raise
        if answer.status == "transient":
            await self._retrying(self._release, batch_id, line, token)
            return False
        if await self._retrying(self._finish, batch_id, line, token, answer):
            metrics.LINES.labels("done" if answer.status == "succeeded" else "failed").inc()
            # Also the usage record the analytics layer's log sink routes to BigQuery (docs/analytics.md).
            logs.event(
                log,
                "line finished",
                usage_record="batch_line",
                batch_id=batch_id,
                line=line,
                status=answer.status,
                code=(answer.error or {}).get("code"),
                user_id=user_id,
                model=body["model"],
                backend=answer.backend,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
            )
        await self.finalizer.finish_if_done(batch_id)
        return True

    async def settle(self, message: dict[str, Any]) -> bool:
        """Write a ledger outcome an orchestrator handed over at shutdown, its database away, as
        the orchestrator would have (once; the real outcome replaces abandoned). The message is
        kept while the database is away."""
        values = ("outcome", "backend", "prompt_tokens", "completion_tokens", "entry")
        await self._retrying(self._settle, tuple(message[key] for key in values))
        logs.event(log, "handed-off ledger outcome written", entry=message["entry"], outcome=message["outcome"])
        return True

    async def dead_letter(self, batch_id: str, line: int, delivered: int) -> None:
        """Pub/Sub gave up on the line's message: the line, unless it is finished, fails."""
        token = f"{self.worker_id}/{uuid.uuid4().hex[:12]}"
        answer = failure(
            "max_delivery_attempts",
            f"no model backend answered this line in {delivered} attempts; it was not retried further",
        )
        while True:
            claimed = await self._retrying(self._claim, batch_id, line, token)
            if claimed:
                if await self._retrying(self._finish, batch_id, line, token, answer):
                    metrics.LINES.labels("failed").inc()
                logs.event(
                    log,
                    "line failed after its last delivery",
                    logging.WARNING,
                    batch_id=batch_id,
                    line=line,
                    attempts=delivered,
                    dead_letter_topic=self.settings.dead_letter_topic,
                )
                break
            state = await self._retrying(self._state, batch_id, line)
            if state is None or state[0] in TERMINAL:
                break
            if state[0] == "running" and state[2] in ("validating", "in_progress"):
                metrics.LEASE_EXTENSIONS.inc()
                await asyncio.sleep(min(CLAIM_POLL_SECONDS, max(state[1].total_seconds(), 0.1)))
                continue
            await self._retrying(self._close, batch_id, line, state[2])
            break
        await self.finalizer.finish_if_done(batch_id)

    async def _answer(self, request_id: str, body: dict[str, Any], attempts: int, user_id: str) -> Answer:
        # Dead lettering is best effort (cloud.google.com/pubsub/docs/handling-failures): the
        # line's own count of attempts ends it too.
        if attempts >= self.settings.max_delivery_attempts + 2:
            return failure("max_delivery_attempts", f"no model backend answered this line in {attempts - 1} attempts")
        route = route_for(body["model"], self.settings.routes)
        if route is None:
            return failure("model_not_found", f"no backend serves model {body['model']!r}")
        settings = self.settings
        # The batch band: while the backends are saturated for it, the line waits here (no
        # reservation held, no delivery attempt spent) for as long as the quota wait below
        # may take, then goes back to Pub/Sub for later.
        patience = min(settings.max_request_seconds, settings.claim_seconds - settings.max_request_seconds)
        waited_until = time.monotonic() + patience
        while True:
            try:
                plan = self.router.attempts(route, "batch")
                break
            except Wait as wait:
                if time.monotonic() + wait.retry_after > waited_until:
                    logs.event(log, "backends saturated; line handed back", logging.INFO, model=body["model"])
                    return Answer("transient")
                await asyncio.sleep(wait.retry_after)
        # Reserved as the orchestrator reserves a request, under the same per-user lock: lines in
        # flight on every worker hold their estimates, so they cannot all pass a quota nearly spent.
        # A line that does not fit while others are in flight waits for them to settle (below
        # their estimates, usually): they end within max_request_seconds. The claim must outlive
        # the wait and then the line's own call.
        waited_until = time.monotonic() + patience
        while (entry := await self._retrying(self._reserve, request_id, user_id, body)) is None:
            if time.monotonic() > waited_until or not await self._retrying(self._in_flight, user_id):
                return failure("quota_exceeded", "daily token quota used up")
            await asyncio.sleep(QUOTA_POLL_SECONDS)
        for attempt in plan:
            answer = await self._call(attempt, body)
            if answer.status != "transient":
                return replace(answer, entry=entry)
        return Answer("transient")  # handing the line back drops its reservation

    async def _call(self, attempt: Attempt, body: dict[str, Any]) -> Answer:
        opened = await first_answer(self.client, self.router, [attempt], {**body, "stream": False})
        if opened is None:
            return Answer("transient")
        upstream, name = opened.response, attempt.label
        try:
            if upstream.status in (401, 403):  # our credentials refused: nothing the line did
                logs.event(log, "backend refused our credentials", logging.ERROR, backend=name, status=upstream.status)
                return Answer("transient")
            if upstream.status >= 400:
                raw = await asyncio.wait_for(answer_head(upstream), self.settings.first_byte_timeout_seconds)
                error = backend_error(raw)
                return Answer(
                    "failed",
                    response={"status_code": upstream.status, "body": _json_or_text(raw)},
                    error={
                        "code": error.get("code") or "upstream_refused",
                        "message": error.get("message")
                        or f"the model backend refused the line (HTTP {upstream.status})",
                    },
                    backend=name,
                )
            content = await upstream.read()
            meter = UsageMeter()
            meter.read_body(content)
            bound = usage_bound(body, self.settings.usage_bound_completion_tokens)
            prompt, completion, invalid = bound.charge(meter.prompt_tokens, meter.completion, name)
            return Answer(
                "succeeded",
                response={"status_code": upstream.status, "body": json.loads(content)},
                backend=name,
                prompt_tokens=prompt,
                completion_tokens=completion,
                usage_invalid=invalid,
            )
        except (TimeoutError, aiohttp.ClientError) as err:
            logs.event(log, "backend answer broke", logging.WARNING, backend=name, error=type(err).__name__)
            self.router.failed(attempt, "answer broke")
            return Answer("transient")
        except (UsageInvalid, ValueError):  # UsageInvalid first: it is a ValueError too
            return Answer(
                "failed",
                error={"code": "invalid_upstream_response", "message": "the model backend's answer could not be read"},
                backend=name,
            )
        finally:
            upstream.release()

    async def _retrying(self, step: Any, *args: Any) -> Any:
        """``step(*args)``, again and again while the database cannot be reached: the message is
        kept (the client extends its lease), so an outage neither loses the line nor spends its
        delivery attempts. Shutdown ends the wait by cancelling it."""
        while True:
            try:
                return await asyncio.wait_for(step(*args), self.settings.database_timeout_seconds * 2)
            except UNREACHABLE as err:
                logs.event(log, "database unreachable; retrying", logging.WARNING, error=type(err).__name__)
                metrics.LEASE_EXTENSIONS.inc()
                await asyncio.sleep(DATABASE_RETRY_SECONDS)

    async def _claim(self, batch_id: str, line: int, token: str) -> tuple[dict[str, Any], int, str] | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                CLAIM, {"token": token, "lease": self.settings.claim_seconds, "batch": batch_id, "line": line}
            )
            row = await cursor.fetchone()
        return (row[0], row[1], row[2]) if row else None

    async def _state(self, batch_id: str, line: int) -> tuple[Any, ...] | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(STATE, (batch_id, line))).fetchone()
        return tuple(row) if row else None

    async def _close(self, batch_id: str, line: int, batch_status: str) -> None:
        status, error = closed_error(batch_status)
        async with self.pool.connection() as conn:
            await conn.execute(CLOSE, {"status": status, "error": Jsonb(error), "batch": batch_id, "line": line})

    async def _release(self, batch_id: str, line: int, token: str) -> None:
        """Hand the line back, and its reservation with it (while the claim is still ours)."""
        async with self.pool.connection() as conn, conn.transaction():
            if (await conn.execute(RELEASE, (batch_id, line, token))).rowcount:
                await conn.execute(UNSETTLED, (line_request_id(batch_id, line),))

    async def _settle(self, values: tuple[Any, ...]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(SETTLE, values)

    async def _in_flight(self, user_id: str) -> bool:
        """Whether any of the user's requests or lines holds a reservation."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(TODAY, (user_id,))).fetchone()
        return bool(row and row[1])

    async def _reserve(self, request_id: str, user_id: str, body: dict[str, Any]) -> uuid.UUID | None:
        estimate = estimate_tokens(body, self.settings.quota_default_completion_tokens)
        async with self.pool.connection() as conn:
            await conn.execute(UNSETTLED, (request_id,))
            return await reserve(conn, request_id, user_id, body["model"], self.settings.daily_token_quota, estimate)

    async def _finish(self, batch_id: str, line: int, token: str, answer: Answer) -> bool:
        """Record the line's end and its charge together; False if another delivery finished it first."""
        request_id = line_request_id(batch_id, line)
        response = {**answer.response, "request_id": request_id} if answer.response else None
        ledger = answer.entry if answer.charged else None
        try:
            async with self.pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(
                    FINISH,
                    {
                        "status": answer.status,
                        "response": Jsonb(response) if response else None,
                        "error": Jsonb(answer.error) if answer.error else None,
                        "ledger": ledger,
                        "batch": batch_id,
                        "line": line,
                        "token": token,
                    },
                )
                if cursor.rowcount == 0:
                    return False
                if ledger is not None:
                    outcome = "completed" if answer.status == "succeeded" else "failed"
                    await conn.execute(
                        CHARGE,
                        (
                            answer.backend,
                            "usage_invalid" if answer.usage_invalid else outcome,
                            answer.prompt_tokens,
                            answer.completion_tokens,
                            ledger,
                        ),
                    )
                else:  # failed unsent (after its last delivery, say): a dead delivery's reservation goes
                    await conn.execute(UNSETTLED, (request_id,))
        except (psycopg.Error, OSError):  # OSError: TimeoutError too; _retrying tries again
            metrics.CHARGE_FAILURES.inc()
            raise
        return True


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
