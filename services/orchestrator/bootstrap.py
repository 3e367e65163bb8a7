"""One-time, idempotent database bootstrap: let the orchestrator's IAM database user run
its own migrations. Run once per environment as the built-in admin, before (or after) the
orchestrator's first start: ``python -m orchestrator.bootstrap``.

Why it is needed:

- Cloud SQL creates an IAM database user with no privileges on any database; it can use
  only what is granted to PUBLIC (cloud.google.com/sql/docs/postgres/add-manage-iam-users,
  "Grant database privileges to an IAM user").
- PostgreSQL 15 removed PUBLIC's CREATE on schema ``public``
  (postgresql.org/docs/release/15.0, "Remove PUBLIC creation permission on the public
  schema"), so ``Ledger.migrate`` fails with "permission denied for schema public" and the
  orchestrator answers 503 for ever.
- No one is a superuser on Cloud SQL: the built-in ``postgres`` user is a member of
  ``cloudsqlsuperuser`` (cloud.google.com/sql/docs/postgres/users, "Superuser restrictions
  and privileges", "Default PostgreSQL users"), which owns the databases made through the
  Admin API, so it may grant on their ``public`` schema.

What it grants, and nothing else: USAGE and CREATE on schema ``public`` of PGDATABASE to
GRANTEE; no role attributes, memberships, database privileges or ownership. The
orchestrator then owns the tables it creates. Running it again changes nothing.

Environment:

- PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE: libpq's own variables, for the
  admin's login; DATABASE_SERVER_CA: the server's CA certificate (PEM), which PGSSLMODE
  verify-ca checks the server against. PGDATABASE is required (libpq would otherwise pick the database named
  like PGUSER and grant there).
- GRANTEE: the orchestrator's database user, e.g. ``prod-orchestrator@PROJECT.iam``.

Exit status: 0 granted (or already held), with one JSON line on stdout; 1 cannot connect or
the grant did not take, with one line on stderr; 2 GRANTEE or PGDATABASE missing. Connect
and statement timeouts: TIMEOUT_SECONDS.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from services.modelcalls.database import server_ca_file
from services.servicekit import logs

log = logging.getLogger("orchestrator.bootstrap")
TIMEOUT_SECONDS = 5
PRIVILEGES = ("USAGE", "CREATE")


def held(conn: psycopg.Connection, grantee: str) -> list[str]:
    """The privileges GRANTEE has on schema public, however it came by them."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (grantee,)).fetchone() is None:
        return []  # the GRANT below then fails with "role ... does not exist"
    return [p for p in PRIVILEGES if _one(conn, "SELECT has_schema_privilege(%s, 'public', %s)", (grantee, p))]


def _one(conn: psycopg.Connection, query: LiteralString, params: tuple[str, ...]) -> Any:
    """The single value of a query that returns one row (a function call, an aggregate)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query!r}")
    return row[0]


def main() -> int:
    missing = [name for name in ("GRANTEE", "PGDATABASE") if not os.environ.get(name)]
    if missing:
        print(f"orchestrator.bootstrap: {' and '.join(missing)} must be set", file=sys.stderr)
        return 2
    grantee, database = os.environ["GRANTEE"], os.environ["PGDATABASE"]
    if pem := os.environ.get("DATABASE_SERVER_CA"):
        os.environ["PGSSLROOTCERT"] = server_ca_file(pem)  # libpq's variable for sslrootcert
    try:
        with psycopg.connect(connect_timeout=TIMEOUT_SECONDS, autocommit=True) as conn:
            conn.execute(f"SET statement_timeout = '{TIMEOUT_SECONDS}s'")
            admin = conn.info.user
            before = held(conn, grantee)
            # Without the grant option this is only a WARNING and grants nothing: checked below.
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(grantee)))
            after = held(conn, grantee)
    except psycopg.Error as err:
        return fail(str(err))
    if after != list(PRIVILEGES):
        return fail(
            f"{admin!r} could not grant {' and '.join(PRIVILEGES)} on schema public "
            f"of {database!r} to {grantee!r}: it is not the schema's owner or a member of it"
        )
    logs.configure()
    logs.event(
        log,
        "schema privileges granted",
        database=database,
        schema="public",
        grantee=grantee,
        privileges=list(PRIVILEGES),
        newly_held=[p for p in PRIVILEGES if p not in before],
    )
    return 0


def fail(message: str) -> int:
    """One line on stderr, never the password (libpq does not echo it; this makes sure)."""
    line = " ".join(message.split())
    if password := os.environ.get("PGPASSWORD"):
        line = line.replace(password, "***")
    print(f"orchestrator.bootstrap: {line}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
