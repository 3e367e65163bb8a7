"""The connection pool to PostgreSQL: Cloud SQL with IAM authentication in production
(the password is a fresh access token), or a password for local runs. Connection
settings come from libpq's own variables: PGHOST, PGDATABASE, PGUSER, PGSSLMODE, PGPASSWORD; the
server's CA comes as a PEM (DATABASE_SERVER_CA) and is written to a file for libpq."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Self

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from services.modelcalls.backends import GoogleAccessToken

# cloud.google.com/sql/docs/postgres/iam-logins: the token needs this scope.
SQL_LOGIN_SCOPE = "https://www.googleapis.com/auth/sqlservice.login"


def iam_connection_class(tokens: GoogleAccessToken) -> type[psycopg.AsyncConnection]:
    class IamConnection(psycopg.AsyncConnection):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            return await super().connect(conninfo, password=await tokens.get(), **kwargs)

    return IamConnection


class CheckingPool(AsyncConnectionPool):
    """Checks each connection as it hands it out, and on finding one dead replaces all the idle
    ones at once: a restart kills every pooled connection together, and psycopg_pool's own
    check backs off a second, then two, per dead one, so with a full pool the first requests
    after a restart waited out their timeout and got 503."""

    async def getconn(self, timeout: float | None = None) -> psycopg.AsyncConnection:
        conn = await super().getconn(timeout)
        if await self._alive(conn):
            return conn
        await self.drain()  # the other idle connections most likely died with this one
        conn = await super().getconn(timeout)  # a new one, or one back from use just now
        if await self._alive(conn):
            return conn
        raise psycopg.OperationalError("no live connection to the database")

    async def _alive(self, conn: psycopg.AsyncConnection) -> bool:
        try:
            await conn.execute("")  # one round trip
            return True
        except psycopg.OperationalError:
            await self.putconn(conn)  # broken: the pool closes it and opens another
            return False
        except BaseException:
            await self.putconn(conn)
            raise


def server_ca_file(pem: str) -> str:
    """A file holding the server's CA certificate: libpq's sslrootcert names a file, not the PEM
    itself (postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-SSLROOTCERT)."""
    fd, path = tempfile.mkstemp(prefix="database-server-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as file:
        file.write(pem)
    return path


def create_pool(
    auth: str, size: int, timeout: float, conninfo: str = "", server_ca: str | None = None
) -> AsyncConnectionPool:
    if server_ca:
        conninfo = make_conninfo(conninfo, sslrootcert=server_ca_file(server_ca))
    connection_class = (
        iam_connection_class(GoogleAccessToken([SQL_LOGIN_SCOPE])) if auth == "iam" else psycopg.AsyncConnection
    )
    # The server gives up on a statement, or a wait for a lock (a user's admission lock), after
    # the time the ledger waits for it, and on a transaction whose client went quiet: work the
    # orchestrator stopped waiting for must not run later or hold locks meanwhile.
    ms = int(timeout * 1000)
    options = f"-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={2 * ms}"
    return CheckingPool(
        conninfo,
        min_size=0,  # start even while the database is down; connect on first use
        max_size=size,
        timeout=timeout,
        open=False,
        connection_class=connection_class,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout)), "options": options},
        reconnect_timeout=0,  # keep trying for ever: the database comes back
    )
