"""A bursty trace replayed through the orchestrator against stand-in model servers, under the
three routing policies side by side: "fixed" (the route's backends in order, as before),
"health" (circuit breakers; spill when the pool's circuit is open) and "saturation" (breakers,
vLLM's queue and KV cache from /metrics, and spill past the threshold).

    make bench-routing
    make bench-routing ARGS="--seconds 6 --seed 2"

The self-hosted pool: devtools/standins/vllm_pool.py, two replicas running four requests each
and queueing the rest. The spill target: the same stand-in with room for all, its first token a
little later than an idle replica's (a hosted API is farther away). Three phases per policy:
  unsaturated  a third of the pool's capacity
  overloaded   three times its capacity, in bursts
  vanish       half its capacity; one replica vanishes (a preempted Spot node) mid-stream
The orchestrator runs on a core of its own, as its Cloud Run instance has vCPUs of its own; the
load generator, the stand-ins and PostgreSQL share the others. On a shared two-core machine their
work would otherwise be timed as the orchestrator's (one core: all share it, and the bench says so).
Prints the figures and whether the goals hold: overloaded p95 TTFT within 1.5x of the
unsaturated one, and no failed request when the replica vanishes (a stream it was serving may
end with an error event: retried only before the first byte)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import aiohttp
import httpx
import psycopg

from devtools.harness import PASSWORD, Postgres, free_port, wait_for
from devtools.image_tree import image_process
from devtools.standins.vllm_pool import PoolScript

POLICIES = ("fixed", "health", "saturation")
MODEL = "llama"
REPLICAS, CONCURRENCY = 2, 4
# A vanished replica still gets its share of new connections for a second, until the load
# balancer's health check sees it go.
POOL = PoolScript(
    replicas=REPLICAS, concurrency=CONCURRENCY, ttft_seconds=0.1, tokens=20, token_seconds=0.02, failover_seconds=1
)
SPILL = PoolScript(replicas=1, concurrency=10_000, ttft_seconds=0.12, tokens=20, token_seconds=0.02)
# Requests a second the pool completes when full: its slots over a request's time in one.
CAPACITY = REPLICAS * CONCURRENCY / (POOL.ttft_seconds + POOL.tokens * POOL.token_seconds)
# Above what the TTFT goal calls for (docs/routing.md, "Choosing a spill threshold": about 0.4
# here), as the count of a burst is cautious: lower, more of an idle pool's bursts spill.
SPILL_WAITING = 3
PHASES = {"unsaturated": 1 / 3, "overloaded": 3.0, "vanish": 0.5}  # load, as a share of capacity


@dataclass(frozen=True)
class Cores:
    orchestrator: set[int]
    others: set[int]

    @classmethod
    def split(cls) -> Cores | None:
        """The last core for the orchestrator, the rest for everything else; None on one core."""
        available = sorted(os.sched_getaffinity(0))
        return cls({available[-1]}, set(available[:-1])) if len(available) > 1 else None


@dataclass
class Result:
    ttfts: list[float] = field(default_factory=list)
    failed: int = 0  # no answer at all (an error status, or nothing before the connection ended)
    broken: int = 0  # began, then ended with an error event
    sent: int = 0
    spilled: int = 0

    def p(self, q: float) -> float:
        if len(self.ttfts) < 2:
            return float("nan")
        return statistics.quantiles(self.ttfts, n=100)[int(q) - 1]


def trace(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival times: bursts every half second, their sizes random around the mean rate."""
    times: list[float] = []
    burst = 0.0
    while burst < seconds:
        size = max(0, round(rng.gauss(rate / 2, rate / 6)))
        times += sorted(burst + rng.uniform(0, 0.05) for _ in range(size))
        burst += 0.5
    return times


async def one(client: aiohttp.ClientSession, url: str, user: str, result: Result) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = time.monotonic()
    first: float | None = None
    try:
        async with client.post(f"{url}/v1/chat/completions", json=body, headers={"x-user-id": user}) as response:
            if response.status != 200:
                result.failed += 1
                return
            stream = b""
            async for chunk in response.content.iter_any():
                if first is None and b"chat.completion.chunk" in chunk:
                    first = time.monotonic() - started
                stream += chunk
    except aiohttp.ClientError:
        pass
    if first is None:
        result.failed += 1
        return
    result.ttfts.append(first)
    if not stream.rstrip().endswith(b"data: [DONE]"):
        result.broken += 1


async def replay(url: str, arrivals: list[float], users: str, pool: str, vanish_at: float | None) -> Result:
    """The trace's requests, each of a user of its own (as many users' traffic is: the ledger
    admits one request of a user at a time)."""
    result = Result(sent=len(arrivals))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as client:
        # Not counted: the first request opens the ledger's connections and the client's.
        await one(client, url, f"{users}-warm-up", Result())
        await asyncio.sleep(1)
        start = time.monotonic()

        async def at(index: int, offset: float) -> None:
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            await one(client, url, f"{users}-{index}", result)

        async def vanish() -> None:
            if vanish_at is not None:
                await asyncio.sleep(vanish_at)
                async with client.post(f"{pool}/standin/vanish/0") as response:
                    response.raise_for_status()

        await asyncio.gather(vanish(), *(at(i, offset) for i, offset in enumerate(arrivals)))
    return result


@contextlib.contextmanager
def database() -> Iterator[Postgres]:
    directory = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    server = Postgres(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def standin(script: PoolScript) -> Iterator[str]:
    """The pool stand-in in a process of its own (the load generator's would slow it), its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "devtools.standins.vllm_pool", str(port), json.dumps(asdict(script))]
    with subprocess.Popen(command) as process:
        try:

            def up() -> bool:
                try:
                    return process.poll() is None and httpx.get(f"{url}/metrics", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            if not wait_for(up, timeout=30, interval=0.1):
                raise RuntimeError(f"the stand-in did not start (exit {process.poll()})")
            yield url
        finally:
            process.terminate()


def run_phase(
    postgres: Postgres,
    policy: str,
    phase: str,
    arrivals: list[float],
    vanish_at: float | None,
    target: PoolScript,
    cores: Cores | None,
) -> Result:
    """One phase of one policy, against stand-ins and an orchestrator of its own (fresh queues
    and circuits), the orchestrator (as its image runs it) and each stand-in in a process of its
    own, so the load generator does not slow them down."""
    with standin(POOL) as pool, standin(target) as spill:
        backends = {
            "pool": {"kind": "openai", "url": f"{pool}/v1", "metrics_url": f"{pool}/metrics"},
            "vertex": {"kind": "openai", "url": f"{spill}/v1"},
        }
        route = {
            "match": MODEL,
            "backends": ["pool"],
            "spill_to": "vertex",
            "spill_model": "google/gemini-standin",
            "spill_waiting": SPILL_WAITING,
        }
        database = psycopg.conninfo.conninfo_to_dict(postgres.conninfo)
        port = free_port()
        env = {
            "PORT": str(port),
            "BACKENDS": json.dumps(backends),
            "ROUTES": json.dumps([route]),
            "ROUTING_POLICY": policy,
            "METRICS_POLL_SECONDS": "0.25",
            "CALLER_AUTH": "none",
            "DAILY_TOKEN_QUOTA": "100000000",
            "DATABASE_AUTH": "password",
            "PGHOST": str(database["host"]),
            "PGPORT": str(database["port"]),
            "PGUSER": str(database["user"]),
            "PGDATABASE": str(database["dbname"]),
            "PGPASSWORD": PASSWORD,
            "LOG_LEVEL": "ERROR",
        }
        url = f"http://127.0.0.1:{port}"
        pin = functools.partial(os.sched_setaffinity, 0, cores.orchestrator) if cores else None
        with image_process(
            "orchestrator", env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin
        ) as process:

            def healthy() -> bool:
                try:
                    return process.poll() is None and httpx.get(f"{url}/health", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            if not wait_for(healthy, timeout=30, interval=0.1):
                raise RuntimeError(f"the orchestrator did not start (exit {process.poll()})")
            result = asyncio.run(replay(url, arrivals, f"bench-{policy}-{phase}", pool, vanish_at))
        # None for the warm-up: the pool was idle.
        result.spilled = httpx.get(f"{spill}/standin/requests").json()["count"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each phase's trace")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--spill-ttft-ms", type=float, default=SPILL.ttft_seconds * 1000, help="the spill target's first-token time"
    )
    args = parser.parse_args()
    target = replace(SPILL, ttft_seconds=args.spill_ttft_ms / 1000)
    rng = random.Random(args.seed)
    traces = {phase: trace(CAPACITY * load, args.seconds, rng) for phase, load in PHASES.items()}
    results: dict[tuple[str, str], Result] = {}
    cores = Cores.split()
    if cores:  # inherited by PostgreSQL and the stand-ins, started below
        os.sched_setaffinity(0, cores.others)
    with database() as postgres:
        for policy in POLICIES:
            for phase, arrivals in traces.items():
                vanish_at = args.seconds / 2 if phase == "vanish" else None
                results[policy, phase] = run_phase(postgres, policy, phase, arrivals, vanish_at, target, cores)

    print(
        f"pool: {REPLICAS} replicas x {CONCURRENCY} at once, first token {POOL.ttft_seconds * 1000:.0f} ms when idle, "
        f"capacity {CAPACITY:.0f} requests/s; spill target: first token {target.ttft_seconds * 1000:.0f} ms"
    )
    print(
        f"orchestrator on core {sorted(cores.orchestrator)}, everything else on {sorted(cores.others)}"
        if cores
        else "one core: the orchestrator shares it with the load generator, the stand-ins and PostgreSQL"
    )
    print(
        f"{'phase':<12} {'policy':<11} {'sent':>5} {'TTFT p50':>9} {'p95':>8} {'errors':>7} {'broken':>7} {'spilled':>8}"
    )
    for phase in PHASES:
        for policy in POLICIES:
            r = results[policy, phase]
            print(
                f"{phase:<12} {policy:<11} {r.sent:>5} {r.p(50) * 1000:>7.0f}ms {r.p(95) * 1000:>6.0f}ms "
                f"{r.failed / max(r.sent, 1):>7.1%} {r.broken:>7} {r.spilled / max(r.sent, 1):>8.1%}"
            )
    # The unsaturated figure: the lowest of the three policies' (they route alike below
    # saturation), so one slow sample on the shared machine does not loosen the goal.
    base = min(results[policy, "unsaturated"].p(95) for policy in POLICIES)
    loaded = results["saturation", "overloaded"].p(95)
    vanished = results["saturation", "vanish"].failed
    print(
        f"goal, p95 TTFT overloaded 3x within 1.5x of unsaturated: {loaded * 1000:.0f} ms vs "
        f"{base * 1000:.0f} ms x 1.5 = {base * 1500:.0f} ms: {'met' if loaded <= 1.5 * base else 'NOT met'}"
    )
    print(
        f"goal, no failed request when a replica vanishes mid-stream: {vanished} failed: "
        f"{'met' if vanished == 0 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
