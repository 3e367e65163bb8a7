"""The connection pool to PostgreSQL: Cloud SQL with IAM authentication in production
(the password is a fresh access token), or a password for local runs. Connection
settings come from libpq's own variables: PGHOST, PGDATABASE, PGUSER, PGSSLMODE, PGPASSWORD."""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool

from orchestrator.backends import GoogleAccessToken

# cloud.google.com/sql/docs/postgres/iam-logins: the token needs this scope.
SQL_LOGIN_SCOPE = "https://www.googleapis.com/auth/sqlservice.login"


def iam_connection_class(tokens: GoogleAccessToken) -> type[psycopg.AsyncConnection]:
    class IamConnection(psycopg.AsyncConnection):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs):
            return await super().connect(conninfo, password=await tokens.get(), **kwargs)

    return IamConnection


def create_pool(auth: str, size: int, timeout: float, conninfo: str = "") -> AsyncConnectionPool:
    connection_class = (
        iam_connection_class(GoogleAccessToken([SQL_LOGIN_SCOPE])) if auth == "iam" else psycopg.AsyncConnection
    )
    # The server gives up on a statement, or a wait for a lock (a user's admission lock), after
    # the time the ledger waits for it, and on a transaction whose client went quiet: work the
    # orchestrator stopped waiting for must not run later or hold locks meanwhile.
    ms = int(timeout * 1000)
    options = f"-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={2 * ms}"
    return AsyncConnectionPool(
        conninfo,
        min_size=0,  # start even while the database is down; connect on first use
        max_size=size,
        timeout=timeout,
        open=False,
        connection_class=connection_class,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout)), "options": options},
        check=AsyncConnectionPool.check_connection,  # drop connections that died with a restart
        reconnect_timeout=0,  # keep trying for ever: the database comes back
    )
