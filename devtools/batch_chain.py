"""The batch path as it runs in production, on this machine: the gateway and the orchestrator
(in this process, on loopback), the batch worker as its image runs it (processes of their own,
devtools/image_tree.py), and Google's side as the emulator and stand-ins: PostgreSQL for Cloud
SQL, the Pub/Sub emulator, the Cloud Storage JSON API stand-in and the model stand-in. The official openai client talks to
the gateway with a development issuer's token. Used by the end-to-end test and the benchmark."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from devtools.harness import (
    PASSWORD,
    Postgres,
    ServedIssuer,
    Server,
    free_port,
    gateway_settings,
    orchestrator_settings,
    wait_for,
)
from devtools.image_tree import image_process
from devtools.pubsub_emulator import PubSubEmulator
from devtools.standins.gcs import create_app as create_gcs
from devtools.standins.openai_upstream import create_app as create_upstream
from hybrid.service_contract import render
from services.gateway.app import create_app as create_gateway
from services.gateway.dev_issuer import jwks_app
from services.orchestrator.app import create_app as create_orchestrator
from services.worker.settings import WorkerSettings

BUCKET = "bench-project-batch"


@dataclass(frozen=True)
class BatchQueue:
    """A batch queue on the emulator as the workers stack makes it (paths): the line topic, the
    workers' subscription with its retry backoff and dead-letter policy, the dead-letter topic and
    its subscription."""

    topic: str
    subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str


def batch_queue(
    pubsub: PubSubEmulator,
    suffix: str,
    *,
    ack_deadline_seconds: int,
    max_delivery_attempts: int,
    backoff_seconds: tuple[float, float],
) -> BatchQueue:
    """A new batch queue on ``pubsub``, its names ending in ``suffix``; retries back off between
    ``backoff_seconds`` (minimum, maximum)."""
    lines, dead, work = f"batch-lines-{suffix}", f"batch-dead-letters-{suffix}", f"batch-workers-{suffix}"
    pubsub.create_topic(lines)
    pubsub.create_topic(dead)
    pubsub.create_subscription(dead, dead)
    pubsub.create_subscription(
        work,
        lines,
        ack_deadline_seconds=ack_deadline_seconds,
        dead_letter_topic=dead,
        max_delivery_attempts=max_delivery_attempts,
        minimum_backoff_seconds=backoff_seconds[0],
        maximum_backoff_seconds=backoff_seconds[1],
    )
    return BatchQueue(
        pubsub.topic_path(lines),
        pubsub.subscription_path(work),
        pubsub.topic_path(dead),
        pubsub.subscription_path(dead),
    )


@dataclass
class BatchChain:
    gateway_url: str
    token: str
    postgres: Postgres
    pubsub: PubSubEmulator
    upstream: Server
    gcs: Server
    dead_letter_subscription: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_metrics: list[str] = field(default_factory=list)  # each worker's /metrics URL

    def rows(self, query: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.postgres.conninfo) as conn:
            return conn.execute(query, params).fetchall()


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def batch_chain(
    directory: Path, *, workers: int = 1, max_delivery_attempts: int = 5, **worker: object
) -> Iterator[BatchChain]:
    """``worker``: WorkerSettings fields to override (e.g. max_outstanding_messages)."""
    with ExitStack() as stack:
        # Not under ``directory``, which may be private to root: the server runs as postgres.
        database_directory = Path(tempfile.mkdtemp(prefix="batch-postgres-"))
        stack.callback(shutil.rmtree, database_directory, ignore_errors=True)
        postgres = Postgres(database_directory)
        postgres.start()
        stack.callback(postgres.stop)
        pubsub = PubSubEmulator(directory)
        stack.callback(pubsub.stop)
        # The orchestrator in this process publishes through the emulator: the client library
        # reads where it is from the environment, as the worker's does.
        _set_environment(stack, pubsub.environment)
        queue = batch_queue(
            pubsub,
            secrets.token_hex(3),
            ack_deadline_seconds=60,
            max_delivery_attempts=max_delivery_attempts,
            backoff_seconds=(0.5, 2),
        )
        upstream = stack.enter_context(Server(create_upstream()))
        gcs = stack.enter_context(Server(create_gcs()))
        issuer = ServedIssuer(directory / "issuer")
        keys = stack.enter_context(Server(jwks_app(issuer)))
        issuer.jwks_url = f"{keys.url}/jwks.json"
        orchestrator = stack.enter_context(
            Server(
                create_orchestrator(
                    orchestrator_settings(
                        upstream.url,
                        batch_bucket=BUCKET,
                        batch_topic=queue.topic,
                        storage_url=gcs.url,
                        storage_auth="none",
                        daily_token_quota=10**9,
                    ),
                    conninfo=postgres.conninfo,
                )
            )
        )
        gateway = stack.enter_context(
            Server(
                create_gateway(
                    gateway_settings(
                        issuer, orchestrator.url, rate_limit_per_minute=10**6, rate_limit_burst=10**5, max_messages=8
                    )
                )
            )
        )
        chain = BatchChain(
            gateway.url, issuer.token("batch-user"), postgres, pubsub, upstream, gcs, queue.dead_letter_subscription
        )
        for _ in range(workers):
            _start_worker(stack, chain, directory, queue, max_delivery_attempts=max_delivery_attempts, **worker)
        yield chain


def _start_worker(stack: ExitStack, chain: BatchChain, directory: Path, queue: BatchQueue, **overrides: object) -> None:
    """One worker as its image runs it, on ``chain``'s stand-ins and ``queue``, with ``overrides`` of its
    settings; returns once it is healthy, and ``stack`` stops it."""
    params = psycopg.conninfo.conninfo_to_dict(chain.postgres.conninfo)
    routing = orchestrator_settings(chain.upstream.url)
    port, metrics = free_port(), f"127.0.0.1:{free_port()}"
    settings = WorkerSettings.model_validate(
        {
            "backends": routing.backends,
            "routes": routing.routes,
            "database_auth": "password",
            "pghost": params["host"],
            "pgport": int(str(params["port"])),
            "pguser": params["user"],
            "pgdatabase": params["dbname"],
            "daily_token_quota": 10**9,
            "subscription": queue.subscription,
            "dead_letter_subscription": queue.dead_letter_subscription,
            "dead_letter_topic": queue.dead_letter_topic,
            "topic": queue.topic,
            "batch_bucket": BUCKET,
            "storage_url": chain.gcs.url,
            "storage_auth": "none",
            "port": port,
            "metrics_address": metrics,
            **overrides,
        }
    )
    env = {**chain.pubsub.environment, "PGPASSWORD": PASSWORD, **render(settings)}
    log_path = directory / f"worker-{port}.log"
    log = stack.enter_context(log_path.open("wb"))
    process = stack.enter_context(image_process("worker", env, stop_seconds=30, stdout=log, stderr=subprocess.STDOUT))
    chain.workers.append(process)
    chain.worker_metrics.append(f"http://{metrics}/metrics")
    wait_until_healthy(process, port, log_path, timeout=60)


def wait_until_healthy(process: subprocess.Popen[bytes], port: int, log: Path, *, timeout: float) -> None:
    """Until the worker ``process`` answers /health on ``port``; fails with the end of its ``log``
    if it exits or does not answer within ``timeout`` seconds."""

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_for(healthy, timeout=timeout), log.read_text()[-3000:]


def _set_environment(stack: ExitStack, values: dict[str, str]) -> None:
    """``values`` in this process's environment until ``stack`` closes, then what was there before."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    stack.callback(_restore_environment, saved)
