"""Servers of the service tests' own: PostgreSQL clusters, gateways (imported from the test folder)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI

from devtools.harness import Postgres, ServedIssuer, Server, gateway_settings
from services.gateway.app import create_app as create_gateway

# A row as psycopg's dict_row reads it: column name to value.
Row = dict[str, Any]
# conftest's ledger_rows fixture: a request id's ledger rows.
LedgerRows = Callable[[str], list[Row]]


@contextmanager
def postgres_cluster(prefix: str, **options: Any) -> Iterator[Postgres]:
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


def served(app: FastAPI) -> Iterator[Server]:
    """A fixture's body: ``app`` served on loopback for as long as the fixture's scope lasts."""
    with Server(app) as server:
        yield server


def gateway_server(issuer: ServedIssuer, orchestrator_url: str, **overrides: Any) -> Server:
    """A gateway of its own (to start with ``with``), its settings ``overrides`` apart the tests'."""
    return Server(create_gateway(gateway_settings(issuer, orchestrator_url, **overrides)))


def query(conninfo: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """The rows ``sql`` selects, read on a connection of its own."""
    with psycopg.connect(conninfo) as conn:
        return conn.execute(sql, params).fetchall()


def one(cursor: psycopg.Cursor[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The row of a query that always reads one (a count, a max)."""
    row = cursor.fetchone()
    assert row is not None
    return row
