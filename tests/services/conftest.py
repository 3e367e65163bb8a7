"""Fixtures for the gateway and orchestrator: real PostgreSQL, real servers, a stand-in model server."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from devtools.harness import Postgres, ServedIssuer, Server, gateway_settings, orchestrator_settings
from devtools.pubsub_emulator import PubSubEmulator
from devtools.redis_server import RedisServer
from devtools.standins.gcs import create_app as create_gcs
from devtools.standins.openai_upstream import create_app as create_upstream
from servers import LedgerRows, Row, postgres_cluster, served
from services.gateway.app import create_app as create_gateway
from services.gateway.dev_issuer import jwks_app
from services.orchestrator.app import create_app as create_orchestrator


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster("ledger-postgres-") as server:
        yield server


@pytest.fixture(scope="session")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    """Google's Pub/Sub emulator for the session; clients find it through PUBSUB_EMULATOR_HOST."""
    emulator = PubSubEmulator(tmp_path_factory.mktemp("pubsub"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Debian's redis-server, with AUTH: the gateway's shared rate limit."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs() -> Iterator[Server]:
    """The Cloud Storage JSON API stand-in; ``gcs.app.state.objects`` holds what was written."""
    yield from served(create_gcs())


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedIssuer]:
    issuer = ServedIssuer(tmp_path_factory.mktemp("issuer"))
    with Server(jwks_app(issuer)) as server:
        issuer.jwks_url = f"{server.url}/jwks.json"
        yield issuer


@pytest.fixture(scope="session")
def upstream() -> Iterator[Server]:
    yield from served(create_upstream())


@pytest.fixture(scope="session")
def orchestrator(postgres: Postgres, upstream: Server) -> Iterator[Server]:
    yield from served(create_orchestrator(orchestrator_settings(upstream.url), conninfo=postgres.conninfo))


@pytest.fixture(scope="session")
def gateway(issuer: ServedIssuer, orchestrator: Server) -> Iterator[Server]:
    yield from served(create_gateway(gateway_settings(issuer, orchestrator.url)))


@pytest.fixture
def ledger_rows(postgres: Postgres) -> LedgerRows:
    """The ledger rows of one request id, read straight from PostgreSQL."""

    def rows(request_id: str) -> list[Row]:
        with psycopg.connect(postgres.conninfo, row_factory=dict_row) as conn:
            return conn.execute("SELECT * FROM usage_ledger WHERE request_id = %s", (request_id,)).fetchall()

    return rows
