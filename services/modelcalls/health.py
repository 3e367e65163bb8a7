"""Each backend's health (a circuit breaker fed by the answers it gives) and, for a self-hosted
vLLM server, its saturation (read from its /metrics in the background); and the order in which
a route's backends, then its spill target, are tried for a request of each priority band.

The breaker of a backend: closed (requests go) until ``failures`` errors, timeouts, 429s or 5xx
fall within ``window`` seconds; then open (requests skip it) for ``cooldown`` seconds; then
half-open, when one trial request goes and its outcome closes or reopens it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import aiohttp

from services.modelcalls.backends import Backend, BackendUnavailable
from services.modelcalls.settings import ModelCallerSettings, Route
from services.servicekit import logs

log = logging.getLogger("modelcalls.health")
Band = Literal["interactive", "batch"]
# vLLM's gauges (docs.vllm.ai/en/stable/usage/metrics/): requests queued for the engine, and the
# KV cache's use (1 = full). vLLM before 0.10 named the latter vllm:gpu_cache_usage_perc.
WAITING = "vllm:num_requests_waiting"
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
# A sample line: name, labels, value (prometheus.io/docs/instrumenting/exposition_formats/).
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?[ \t]+([-+0-9.eEinfNa]+)", re.MULTILINE)
# A reading older than this many polls is not trusted.
STALE_POLLS = 3


@dataclass
class Breaker:
    failures: int
    window: float
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    state: Literal["closed", "open", "half_open"] = "closed"
    recent: deque[float] = field(default_factory=deque)
    opened_at: float = 0.0
    trial_at: float | None = None  # when the half-open trial went

    def allows(self) -> bool:
        """Whether a request may go now; in half-open, true once (the trial) until its outcome,
        or until a cooldown passes without one (the trial's caller went away)."""
        now = self.clock()
        if self.state == "open" and now - self.opened_at >= self.cooldown:
            self.state, self.trial_at = "half_open", None
        if self.state == "closed":
            return True
        if self.state == "half_open" and (self.trial_at is None or now - self.trial_at >= self.cooldown):
            self.trial_at = now
            return True
        return False

    def succeeded(self) -> None:
        self.state, self.trial_at = "closed", None
        self.recent.clear()

    def failed(self) -> None:
        now = self.clock()
        if self.state == "half_open":
            self._open(now)
            return
        self.recent.append(now)
        while self.recent and now - self.recent[0] > self.window:
            self.recent.popleft()
        if self.state == "closed" and len(self.recent) >= self.failures:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state, self.opened_at, self.trial_at = "open", now, None
        self.recent.clear()


@dataclass
class Saturation:
    """The last /metrics reading of a backend, and this instance's requests to it since."""

    waiting: float = 0.0
    kv_cache: float = 0.0
    read_at: float | None = None  # when the poll that read them was sent
    # This instance's requests to the backend not yet begun (Backend.open: a stream's first bytes), by when each was sent.
    sent: dict[object, float] = field(default_factory=dict)

    def waiting_now(self) -> float:
        """The reading's queue, plus the requests this instance sent since the reading that are
        not yet answered: a burst between two polls counts at once. Cautious: those a free slot
        took at once count too, so an idle pool's bursts may spill a little (docs/routing.md)."""
        since = self.read_at or 0.0
        return self.waiting + sum(1 for at in self.sent.values() if at >= since)


def read_metrics(text: str) -> tuple[float, float]:
    """(requests waiting, KV cache use) from Prometheus' text format: the sum of the waiting
    gauge over its label sets (one per engine), the highest KV cache use."""
    waiting, kv_cache = 0.0, 0.0
    for name, value in SAMPLE.findall(text):
        if name == WAITING:
            waiting += float(value)
        elif name in KV_CACHE:
            kv_cache = max(kv_cache, float(value))
    return waiting, kv_cache


@dataclass(frozen=True)
class Attempt:
    """One backend to try for a request: ``model`` instead of the caller's when it spills."""

    backend: Backend
    model: str | None
    first_byte_timeout: float

    @property
    def label(self) -> str:
        """What the ledger records as the backend that served: with the model it was asked for
        when that is not the caller's, so a spilled request's row names the model it used."""
        return f"{self.backend.name}:{self.model}" if self.model else self.backend.name


class Wait(Exception):
    """A batch request finds its backends saturated and may not spill: try again later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"backends saturated; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class Router:
    def __init__(
        self,
        settings: ModelCallerSettings,
        backends: dict[str, Backend],
        on_failure: Callable[[str, str], None] = lambda backend, why: None,
    ) -> None:
        # on_failure(backend, why): the orchestrator counts each failure in its metrics; the
        # worker's image holds no orchestrator code, so this module names no metric itself.
        self.settings, self.backends, self.on_failure = settings, backends, on_failure
        self.breakers = {
            name: Breaker(settings.breaker_failures, settings.breaker_window_seconds, settings.breaker_cooldown_seconds)
            for name in backends
        }
        self.saturation = {name: Saturation() for name in backends}
        self.pollers: list[asyncio.Task[None]] = []

    def start(self, client: aiohttp.ClientSession) -> None:
        if self.settings.routing_policy != "saturation":
            return
        for backend in self.backends.values():
            if backend.settings.metrics_url:
                self.pollers.append(asyncio.create_task(self._poll(client, backend)))

    async def stop(self) -> None:
        for task in self.pollers:
            task.cancel()
        for task in self.pollers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def attempts(self, route: Route, band: Band) -> list[Attempt]:
        """The backends to try in order (Wait when a batch request should come back later).
        Saturated backends are skipped for the spill target; an interactive request with none
        to spill to tries them last (it queues there, as it did before saturation was read),
        while a batch line waits for room."""
        policy = self.settings.routing_policy
        share = route.batch_share if band == "batch" else 1.0
        spill_to = route.spill_to if policy != "fixed" and (band == "interactive" or route.batch_spill) else None
        busy = [n for n in route.backends if policy == "saturation" and self.saturated(n, route, share)]
        primaries = [n for n in route.backends if n not in busy]
        if band == "interactive" and spill_to is None:
            primaries += busy
        elif not primaries and spill_to is None:
            raise Wait(self.settings.metrics_poll_seconds * STALE_POLLS)
        timeout = self.settings.first_byte_timeout_seconds
        spill = [Attempt(self.backends[spill_to], route.spill_model, timeout)] if spill_to else []
        first_byte = self.settings.spill_first_byte_seconds if spill else timeout
        return [Attempt(self.backends[name], None, first_byte) for name in primaries] + spill

    def saturated(self, name: str, route: Route, share: float = 1.0) -> bool:
        reading = self.saturation[name]
        if (
            reading.read_at is None
            or time.monotonic() - reading.read_at > self.settings.metrics_poll_seconds * STALE_POLLS
        ):
            return False
        return reading.waiting_now() >= route.spill_waiting * share or reading.kv_cache >= route.spill_kv_cache * share

    def admits(self, attempt: Attempt) -> bool:
        """Whether the attempt may go now (its circuit closed, or this the half-open trial)."""
        return self.settings.routing_policy == "fixed" or self.breakers[attempt.backend.name].allows()

    @contextlib.contextmanager
    def sending(self, attempt: Attempt) -> Iterator[None]:
        """Counts the attempt in flight to its backend while the block runs."""
        sent, key = self.saturation[attempt.backend.name].sent, object()
        sent[key] = time.monotonic()
        try:
            yield
        finally:
            del sent[key]

    def answered(self, attempt: Attempt) -> None:
        self.breakers[attempt.backend.name].succeeded()

    def failed(self, attempt: Attempt, why: str) -> None:
        self.on_failure(attempt.backend.name, why)
        breaker = self.breakers[attempt.backend.name]
        was = breaker.state
        breaker.failed()
        if breaker.state == "open" and was != "open":
            logs.event(log, "backend circuit opened", logging.WARNING, backend=attempt.backend.name, error=why)

    async def _poll(self, client: aiohttp.ClientSession, backend: Backend) -> None:
        reading, url = self.saturation[backend.name], backend.settings.metrics_url or ""
        timeout = aiohttp.ClientTimeout(total=self.settings.metrics_poll_seconds * STALE_POLLS)
        while True:
            asked = time.monotonic()
            try:
                async with client.get(url, headers=await backend.headers(), timeout=timeout) as response:
                    response.raise_for_status()
                    reading.waiting, reading.kv_cache = read_metrics(await response.text())
                    reading.read_at = asked
            except (TimeoutError, aiohttp.ClientError, BackendUnavailable) as err:
                logs.event(log, "backend metrics unread", logging.DEBUG, backend=backend.name, error=type(err).__name__)
            await asyncio.sleep(self.settings.metrics_poll_seconds)
