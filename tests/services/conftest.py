"""Fixtures for the gateway and orchestrator: real PostgreSQL, real servers, a stand-in model server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from gateway.app import create_app as create_gateway
from gateway.dev_issuer import DevIssuer, jwks_app
from gateway.settings import GatewaySettings
from harness import Postgres, Server
from orchestrator.app import create_app as create_orchestrator
from orchestrator.settings import OrchestratorSettings
from standins.openai_upstream import create_app as create_upstream


@pytest.fixture(scope="session")
def postgres():
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="ledger-postgres-"))
    server = Postgres(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def issuer(tmp_path_factory):
    issuer = DevIssuer(tmp_path_factory.mktemp("issuer"))
    with Server(jwks_app(issuer)) as server:
        issuer.jwks_url = f"{server.url}/jwks.json"
        yield issuer


@pytest.fixture(scope="session")
def upstream():
    with Server(create_upstream()) as server:
        server.app = server.server.config.app
        yield server


def orchestrator_settings(upstream_url: str, **overrides) -> OrchestratorSettings:
    return OrchestratorSettings.model_validate({
        "backends": {
            "standin": {"kind": "openai", "url": f"{upstream_url}/v1"},
            "unreachable": {"kind": "openai", "url": "http://127.0.0.1:9/v1"},
        },
        "routes": [
            {"match": "fallback-*", "backends": ["unreachable", "standin"]},
            {"match": "standin-*", "backends": ["standin"]},
        ],
        "first_byte_timeout_seconds": 2,
        "database_timeout_seconds": 2,
        **overrides,
    })


@pytest.fixture(scope="session")
def orchestrator(postgres, upstream):
    with Server(create_orchestrator(orchestrator_settings(upstream.url), conninfo=postgres.conninfo)) as server:
        yield server


def gateway_settings(issuer: DevIssuer, orchestrator_url: str, **overrides) -> GatewaySettings:
    return GatewaySettings.model_validate({
        "jwks_url": issuer.jwks_url,
        "jwt_issuer": issuer.issuer,
        "jwt_audience": issuer.audience,
        "jwks_min_refresh_seconds": 1,
        "orchestrator_url": orchestrator_url,
        "orchestrator_auth": "none",
        "rate_limit_per_minute": 60,
        "rate_limit_burst": 5,
        "max_messages": 8,
        "max_message_chars": 2000,
        "max_body_bytes": 65536,
        **overrides,
    })


@pytest.fixture(scope="session")
def gateway(issuer, orchestrator):
    with Server(create_gateway(gateway_settings(issuer, orchestrator.url))) as server:
        yield server


@pytest.fixture
def ledger_rows(postgres):
    """The ledger rows of one request id, read straight from PostgreSQL."""

    def rows(request_id: str) -> list[dict]:
        with psycopg.connect(postgres.conninfo, row_factory=psycopg.rows.dict_row) as conn:
            return conn.execute("SELECT * FROM usage_ledger WHERE request_id = %s", (request_id,)).fetchall()

    return rows
