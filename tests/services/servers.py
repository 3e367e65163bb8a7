"""Servers of the service tests' own: PostgreSQL clusters, gateways (imported from the test folder)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from devtools.harness import Postgres, Server, gateway_settings
from services.gateway.app import create_app as create_gateway


@contextmanager
def postgres_cluster(prefix: str, **options) -> Iterator[Postgres]:
    """A cluster of its own, started, then stopped and removed. Not under pytest's tmp_path:
    that is private to root, and the server runs as postgres."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    server = Postgres(directory, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def gateway_server(issuer, orchestrator_url: str, **overrides) -> Server:
    """A gateway of its own (to start with ``with``), its settings ``overrides`` apart the tests'."""
    return Server(create_gateway(gateway_settings(issuer, orchestrator_url, **overrides)))


def query(conninfo: str, sql: str, *params) -> list[tuple]:
    """The rows ``sql`` selects, read on a connection of its own."""
    with psycopg.connect(conninfo) as conn:
        return conn.execute(sql, params).fetchall()
