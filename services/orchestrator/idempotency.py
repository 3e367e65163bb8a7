"""Idempotency keys: a client that sends ``Idempotency-Key`` with a chat completion, a file upload
or a new batch may send the same request again (a retry after a timeout, a double click, eight
copies at once) and have it run, and billed, once.

Keys are the user's own (another user's same key is another key), and live
``idempotency_window_seconds`` (24 h by default) from the first request. They are rows of the
ledger's database (migration 6, services.modelcalls.ledger), so every instance sees them. The
first request with a key claims it; then, while the key lives, the same key

* with the same request (route and body) replays the first one's outcome: its status, its
  content type and its body, with ``Idempotent-Replayed: true``. A streamed chat completion's
  replay is the recorded stream, its events as the first caller got them, in one answer (an
  event stream cut short is replayed with the error event that ended it);
* while the first is still running: 409 ``idempotency_key_in_use``, with Retry-After;
* with a different request: 422 ``idempotency_key_reused``. This follows the IETF draft "The
  Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header, "Error
  Scenarios": 409 for a request still being processed, 422 for a key reused with another
  payload); Stripe answers the same case as an ``idempotency_error`` too.

Only outcomes are kept that a retry must not change: an answer, or a refusal of the request
itself (4xx). A 5xx or 429 (no backend answered, the ledger, storage or the quota said "not now")
ran nothing that was billed, so it frees the key and the retry runs. A stream that has begun is
always kept, whole or cut short: its tokens were billed.

An instance that dies with a request in flight leaves its key claimed; the claim goes stale after
the longest a request lives (max_request_seconds + stale_margin_seconds, as the ledger's rows),
and the next request with the key runs it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import psycopg
from fastapi import Request
from fastapi.responses import Response

from services.modelcalls.ledger import Ledger, LedgerUnavailable
from services.servicekit import logs
from services.servicekit.errors import Answered, ApiError

log = logging.getLogger("orchestrator.idempotency")
HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"  # Stripe's name for the header that marks a replay
# Stripe's keys are up to 255 characters; printable ASCII without spaces takes UUIDs, ULIDs and
# the OpenAI SDK's "stainless-python-retry-<uuid>", and nothing a log or header could trip on.
KEY = re.compile(r"[\x21-\x7e]{1,255}")
INVALID_KEY = "Idempotency-Key must be 1 to 255 printable ASCII characters, without spaces"
PURGE_EVERY_SECONDS = 300
RECORD_ATTEMPTS = 3

CLAIM = """
    INSERT INTO idempotency_keys (user_id, key, fingerprint, claim, expires_at, stale_at)
    VALUES (%(user)s, %(key)s, %(fingerprint)s, %(claim)s,
            now() + make_interval(secs => %(window)s), now() + make_interval(secs => %(stale)s))
    ON CONFLICT (user_id, key) DO UPDATE
        SET fingerprint = excluded.fingerprint, claim = excluded.claim, status = NULL, content_type = NULL,
            body = NULL, created_at = now(), expires_at = excluded.expires_at, stale_at = excluded.stale_at
        -- Only a key whose window has passed, or whose first request died with its instance.
        WHERE idempotency_keys.expires_at <= now()
           OR (idempotency_keys.status IS NULL AND idempotency_keys.stale_at <= now())
    RETURNING claim
"""


@dataclass
class Claim:
    """The right to run a request under its key, and to record its outcome; ``key`` None: the
    request came without one, and nothing is recorded."""

    keys: IdempotencyKeys | None = None
    user_id: str = ""
    key: str | None = None
    claim: uuid.UUID = field(default_factory=uuid.uuid4)

    async def settle(self, response: Response) -> Response:
        """Record ``response`` as the key's outcome, or free the key (see the module's docstring)."""
        if self.key is not None and self.keys is not None:
            if response.status_code >= 500 or response.status_code == 429:
                await self.keys.release(self)
            else:
                content_type = response.headers.get("content-type", "")
                await self.keys.record(self, response.status_code, content_type, bytes(response.body))
        return response

    def release_soon(self) -> None:
        """For a request being cancelled: released in a task of its own."""
        if self.key is not None and self.keys is not None:
            self.keys.in_background(self.keys.release(self))

    def record_soon(self, status: int, content_type: str, body: bytes) -> None:
        """For a stream's end, where the request's task may be cancelled: recorded in a task of its own."""
        if self.key is not None and self.keys is not None:
            self.keys.in_background(self.keys.record(self, status, content_type, body))


NO_KEY = Claim()


def of(request: Request) -> IdempotencyKeys:
    """The app's idempotency keys (made at start-up, beside the ledger)."""
    keys: IdempotencyKeys = request.app.state.idempotency
    return keys


class IdempotencyKeys:
    def __init__(self, ledger: Ledger, window_seconds: float, stale_seconds: float) -> None:
        self.ledger, self.window, self.stale = ledger, window_seconds, stale_seconds
        self.purged_at = time.monotonic()
        self.tasks: set[asyncio.Task[None]] = set()

    async def begin(self, request: Request, user_id: str, route: str, payload: bytes) -> Claim:
        """The claim to run the request under its Idempotency-Key (NO_KEY without one); else the
        answer to give instead, raised: the recorded outcome (Replayed), 409, 422, 400 for a
        malformed key, 503."""
        key = request.headers.get(HEADER)
        if key is None:
            return NO_KEY
        if not KEY.fullmatch(key):
            raise ApiError(400, INVALID_KEY, "invalid_request_error", "invalid_idempotency_key")
        # The route is part of what must match: one key is one request, whichever route it names.
        fingerprint = hashlib.sha256(route.encode() + b"\n" + payload).digest()
        claim = Claim(self, user_id, key)
        try:
            found = await self.ledger.run(lambda conn: self._claim(conn, claim, fingerprint))
        except LedgerUnavailable as err:
            logs.event(log, "idempotency keys unavailable", logging.ERROR, error=str(err))
            raise ApiError(
                503, "usage ledger unavailable; retry shortly", "api_error", "ledger_unavailable", {"Retry-After": "5"}
            ) from None
        self._purge_now_and_then()
        if found is None:
            return claim
        recorded_fingerprint, status, content_type, body = found
        if bytes(recorded_fingerprint) != fingerprint:
            raise ApiError(
                422,
                "this Idempotency-Key was used with a different request; send a new key for a new request",
                "invalid_request_error",
                "idempotency_key_reused",
            )
        if status is None:
            raise ApiError(
                409,
                "a request with this Idempotency-Key is still in progress; retry shortly",
                "invalid_request_error",
                "idempotency_key_in_use",
                {"Retry-After": "1"},
            )
        logs.event(log, "idempotent replay", route=route, status=status)
        raise Answered(
            Response(
                bytes(body or b""), status_code=status, media_type=content_type or None, headers={REPLAYED: "true"}
            )
        )

    async def run(
        self, request: Request, user_id: str, route: str, payload: bytes, work: Callable[[], Awaitable[Response]]
    ) -> Response:
        """``work``'s answer, run once per Idempotency-Key: for the routes whose answer is whole
        (not a stream). An error it raises is an answer, recorded as any other."""
        claim = await self.begin(request, user_id, route, payload)
        try:
            response = await work()
        except Answered as answered:
            return await claim.settle(answered.response)
        except BaseException:
            claim.release_soon()
            raise
        return await claim.settle(response)

    async def _claim(
        self, conn: psycopg.AsyncConnection, claim: Claim, fingerprint: bytes
    ) -> tuple[bytes, int | None, str | None, bytes | None] | None:
        """None when this request claimed the key; else what the key holds."""
        params = {
            "user": claim.user_id,
            "key": claim.key,
            "fingerprint": fingerprint,
            "claim": claim.claim,
            "window": self.window,
            "stale": self.stale,
        }
        if await (await conn.execute(CLAIM, params)).fetchone():
            return None
        cursor = await conn.execute(
            "SELECT fingerprint, status, content_type, body FROM idempotency_keys WHERE user_id = %s AND key = %s",
            (claim.user_id, claim.key),
        )
        row = await cursor.fetchone()
        if row is None:  # purged between the two statements (its window passed): claim it afresh
            return await self._claim(conn, claim, fingerprint)
        return row[0], row[1], row[2], row[3]

    async def record(self, claim: Claim, status: int, content_type: str, body: bytes) -> None:
        """The key's outcome, for replays. Should the database not take it, the key stays claimed
        until its claim goes stale, and then a retry runs the request again: logged, as that
        retry is billed again."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                await self.ledger.run(
                    lambda conn: conn.execute(
                        "UPDATE idempotency_keys SET status = %s, content_type = %s, body = %s "
                        "WHERE user_id = %s AND key = %s AND claim = %s",
                        (status, content_type, body, claim.user_id, claim.key, claim.claim),
                    )
                )
                return
            except (LedgerUnavailable, psycopg.Error) as err:
                if attempt == RECORD_ATTEMPTS:
                    logs.event(log, "idempotent outcome not recorded", logging.ERROR, error=type(err).__name__)
                    return
                await asyncio.sleep(0.5 * attempt)

    async def release(self, claim: Claim) -> None:
        try:
            await self.ledger.run(
                lambda conn: conn.execute(
                    "DELETE FROM idempotency_keys WHERE user_id = %s AND key = %s AND claim = %s",
                    (claim.user_id, claim.key, claim.claim),
                )
            )
        except (LedgerUnavailable, psycopg.Error) as err:  # the claim goes stale in its time
            logs.event(log, "idempotency key not released", logging.WARNING, error=type(err).__name__)

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _purge_now_and_then(self) -> None:
        """Expired keys go within PURGE_EVERY_SECONDS of some instance's next claim."""
        if time.monotonic() - self.purged_at < PURGE_EVERY_SECONDS:
            return
        self.purged_at = time.monotonic()
        self.in_background(self._purge())

    async def _purge(self) -> None:
        try:
            await self.ledger.run(lambda conn: conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()"))
        except (LedgerUnavailable, psycopg.Error) as err:
            logs.event(log, "idempotency purge deferred", logging.WARNING, error=type(err).__name__)
