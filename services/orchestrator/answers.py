"""A backend's answer to a chat completion, passed on whole or as a stream, metered as it
passes, and its outcome charged to the ledger and recorded under its idempotency key."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from fastapi.responses import Response, StreamingResponse

from services.modelcalls.ledger import Ledger, Outcome
from services.modelcalls.usage import UsageBound, UsageInvalid, UsageMeter
from services.orchestrator import metrics
from services.orchestrator.idempotency import Claim
from services.servicekit import logs
from services.servicekit.errors import ApiError, stream_broke_event

log = logging.getLogger("orchestrator")
# The 502s of an answer that broke or could not be metered once the backend had begun it.
BACKEND_STOPPED = ("the model backend stopped answering", "api_error", "upstream_aborted")
USAGE_INVALID = ("the model backend reported usage that is not a token count", "api_error", "invalid_upstream_usage")


def charged(outcome: Outcome, bound: UsageBound) -> Outcome:
    """``outcome`` as it is charged: usage beyond what the request could have used is the
    backend's fault, so it is charged the bound and recorded usage_invalid."""
    prompt, completion, invalid = bound.charge(outcome.prompt_tokens, outcome.completion_tokens, outcome.backend)
    return Outcome(outcome.entry, "usage_invalid", outcome.backend, prompt, completion) if invalid else outcome


@dataclass
class BackendAnswer:
    """The answer of ``backend`` (its status sent, under 400) for the ledger's ``entry``."""

    upstream: aiohttp.ClientResponse
    backend: str
    entry: uuid.UUID
    ledger: Ledger
    claim: Claim
    bound: UsageBound
    checkpoint_seconds: float
    model: str  # the metrics' label (orchestrator.metrics.model_label)
    started: float  # when the request arrived (time.monotonic)
    meter: UsageMeter = field(default_factory=UsageMeter)
    checkpointed: float = field(default_factory=time.monotonic)
    checkpointing: asyncio.Task[None] | None = None
    broke: Callable[[], None] = lambda: None  # told when the backend's stream breaks (its circuit, the metric)
    user_id: str = ""  # the token's subject: a pseudonymous id, for the usage record
    ttft: float | None = None  # seconds from the request's arrival to the answer's first bytes
    head: bytes = b""  # a stream's first bytes, read already (Backend.open)

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": self.upstream.headers.get("content-type", "application/json")}

    def close_entry(self, outcome: str) -> None:
        charge = charged(
            Outcome(self.entry, outcome, self.backend, self.meter.prompt_tokens, self.meter.completion), self.bound
        )
        self.ledger.close_entry(charge)
        labels = (self.model, self.backend)
        metrics.DURATION.labels(*labels).observe(time.monotonic() - self.started)
        metrics.TOKENS.labels(*labels, "in").inc(charge.prompt_tokens)
        metrics.TOKENS.labels(*labels, "out").inc(charge.completion_tokens)
        if outcome == "failed":  # a broken stream is counted where its circuit is told (broke)
            metrics.BACKEND_ERRORS.labels(self.backend, "usage_invalid").inc()
        # The usage record the analytics layer's log sink routes to BigQuery (docs/analytics.md).
        logs.event(
            log,
            "usage",
            usage_record="request",
            user_id=self.user_id,
            model=self.model,
            backend=self.backend,
            prompt_tokens=charge.prompt_tokens,
            completion_tokens=charge.completion_tokens,
            ttft_ms=None if self.ttft is None else round(self.ttft * 1000),
            outcome=charge.outcome,
        )

    def first_byte(self) -> None:
        self.ttft = time.monotonic() - self.started
        metrics.TTFT.labels(self.model, self.backend).observe(self.ttft)

    async def whole(self) -> Response:
        """The answer read to its end, then passed on."""
        outcome: str = "client_aborted"  # unless the read below ends, one way or the other
        error: tuple[str, str, str] | None = None
        try:
            content = await self.upstream.read()
            self.first_byte()  # the whole answer: its first token came with the rest
            self.meter.read_body(content)
            outcome = "completed"
        except (TimeoutError, aiohttp.ClientError):
            outcome, error = "upstream_aborted", BACKEND_STOPPED
        except UsageInvalid:
            outcome, error = "failed", USAGE_INVALID
        finally:
            self.upstream.release()
            self.close_entry(outcome)
            if outcome == "client_aborted":  # cancelled (shutdown) before the answer was read: nothing billed
                self.claim.release_soon()
        if error:
            return await self.claim.settle(ApiError(502, *error).response)
        return await self.claim.settle(
            Response(content=content, status_code=self.upstream.status, headers=self.headers)
        )

    def streamed(self) -> StreamingResponse:
        headers = self.headers
        return StreamingResponse(
            self._relay(), status_code=self.upstream.status, headers=headers, media_type=headers["content-type"]
        )

    async def _relay(self) -> AsyncIterator[bytes]:
        outcome = "upstream_aborted"
        recorded = bytearray()  # what the caller is sent, for replays under its idempotency key
        first = True
        try:
            async for chunk in self._body():
                if first:
                    self.first_byte()
                    first = False
                self.meter.feed(chunk)
                if self.claim.key is not None:
                    recorded += chunk
                yield chunk
                self._checkpoint_now_and_then()
            outcome = "completed" if self.meter.done else "upstream_aborted"
            if not self.meter.done:  # the backend ended its stream without finishing the answer
                self.broke()
        except (TimeoutError, aiohttp.ClientError) as err:
            logs.event(log, "backend stream broke", logging.WARNING, backend=self.backend, error=type(err).__name__)
            self.broke()
        except UsageInvalid:
            # The reply cannot be metered: stop passing it on, and say so rather than [DONE].
            logs.event(log, "backend usage is not a token count", logging.WARNING, backend=self.backend)
            outcome = "failed"
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "client_aborted"
            raise
        finally:
            self.close_entry(outcome)
            self.upstream.close()  # drops the backend's stream too when the client has gone
            # Billed, so kept, even cut short; a replay then ends as the stream did, or with
            # the error event in place of the end the caller who left never got.
            whole = outcome == "completed"
            tail = b"" if whole else stream_broke_event()
            self.claim.record_soon(self.upstream.status, self.headers["content-type"], bytes(recorded) + tail)
        if outcome in ("upstream_aborted", "failed"):
            yield stream_broke_event()

    async def _body(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        async for chunk in self.upstream.content.iter_any():
            yield chunk

    def _checkpoint_now_and_then(self) -> None:
        """What reached the client is charged should the instance die (SIGKILL): at most one
        checkpoint a stream at a time, and one per interval."""
        if time.monotonic() - self.checkpointed < self.checkpoint_seconds:
            return
        if self.checkpointing is not None and not self.checkpointing.done():
            return
        self.checkpointed = time.monotonic()
        tokens = self.bound.clamp(self.meter.prompt_tokens, self.meter.completion)[:2]
        self.checkpointing = asyncio.create_task(self.ledger.checkpoint(self.entry, *tokens))
