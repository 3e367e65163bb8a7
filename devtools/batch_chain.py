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
        saved = {name: os.environ.get(name) for name in pubsub.environment}
        os.environ.update(pubsub.environment)
        stack.callback(_restore_environment, saved)
        suffix = secrets.token_hex(3)
        lines, dead = f"lines-{suffix}", f"dead-{suffix}"
        pubsub.create_topic(lines)
        pubsub.create_topic(dead)
        pubsub.create_subscription(dead, dead)
        pubsub.create_subscription(
            f"work-{suffix}",
            lines,
            ack_deadline_seconds=60,
            dead_letter_topic=dead,
            max_delivery_attempts=max_delivery_attempts,
            minimum_backoff_seconds=0.5,
            maximum_backoff_seconds=2,
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
                        batch_topic=pubsub.topic_path(lines),
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
            gateway.url, issuer.token("batch-user"), postgres, pubsub, upstream, gcs, pubsub.subscription_path(dead)
        )
        params = psycopg.conninfo.conninfo_to_dict(postgres.conninfo)
        routing = orchestrator_settings(upstream.url)
        for _ in range(workers):
            port = free_port()
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
                    "subscription": pubsub.subscription_path(f"work-{suffix}"),
                    "dead_letter_subscription": pubsub.subscription_path(dead),
                    "dead_letter_topic": pubsub.topic_path(dead),
                    "topic": pubsub.topic_path(lines),
                    "batch_bucket": BUCKET,
                    "storage_url": gcs.url,
                    "storage_auth": "none",
                    "max_delivery_attempts": max_delivery_attempts,
                    "port": port,
                    **worker,
                }
            )
            env = {**pubsub.environment, "PGPASSWORD": PASSWORD, **render(settings)}
            log = stack.enter_context((directory / f"worker-{port}.log").open("wb"))
            process = stack.enter_context(
                image_process("worker", env, stop_seconds=30, stdout=log, stderr=subprocess.STDOUT)
            )
            chain.workers.append(process)

            def healthy(port: int = port, process: subprocess.Popen[bytes] = process) -> bool:
                assert process.poll() is None, (directory / f"worker-{port}.log").read_text()[-3000:]
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            assert wait_for(healthy, timeout=60), (directory / f"worker-{port}.log").read_text()[-3000:]
        yield chain
