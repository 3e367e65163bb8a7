"""The one-time database bootstrap (``python -m orchestrator.bootstrap``) against a real
PostgreSQL set up as Cloud SQL sets it up: no superuser in play, the admin a member of
``cloudsqlsuperuser``, which owns the database, and an IAM-like user that starts with no
privileges. The orchestrator's own migrations and ledger are what must work afterwards."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devtools.harness import Postgres, free_port
from devtools.image_tree import image_tree
from servers import one
from services.modelcalls.database import create_pool
from services.modelcalls.ledger import MIGRATIONS, Ledger, LedgerUnavailable, Outcome

CLOUDSQLSUPERUSER = "cloudsqlsuperuser"


@dataclass(frozen=True)
class CloudSql:
    port: int
    database: str  # owned by cloudsqlsuperuser, as the Admin API makes it
    other_database: str  # another database on the same instance
    admin: str  # like Cloud SQL's built-in postgres user: a member of cloudsqlsuperuser
    admin_password: str
    iam_user: str  # like prod-orchestrator@PROJECT.iam
    iam_password: str  # stands in for the IAM access token

    def conninfo(self, user: str, password: str, database: str | None = None) -> str:
        return make_conninfo(
            host="127.0.0.1", port=self.port, dbname=database or self.database, user=user, password=password
        )

    def as_admin(self, database: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo(self.admin, self.admin_password, database), autocommit=True)

    def as_iam_user(self, database: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo(self.iam_user, self.iam_password, database), autocommit=True)

    def job_env(self, **overrides: str | None) -> dict[str, str]:
        """Exactly what the Cloud Run job gives the process (PGSSLMODE=require there: the test
        server has no TLS)."""
        env = {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGDATABASE": self.database,
            "PGUSER": self.admin,
            "PGPASSWORD": self.admin_password,
            "PGSSLMODE": "disable",
            "GRANTEE": self.iam_user,
            **overrides,
        }
        return {name: value for name, value in env.items() if value is not None}


@pytest.fixture(scope="module")
def cloudsqlsuperuser(postgres: Postgres) -> Iterator[str]:
    """Cloud SQL's admin role: no login, CREATEROLE and CREATEDB, not a superuser."""
    with psycopg.connect(postgres.conninfo, autocommit=True) as conn:
        created = not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (CLOUDSQLSUPERUSER,)).fetchone()
        if created:
            conn.execute(f"CREATE ROLE {CLOUDSQLSUPERUSER} NOLOGIN NOSUPERUSER CREATEROLE CREATEDB")
    yield CLOUDSQLSUPERUSER
    if created:
        with psycopg.connect(postgres.conninfo, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {CLOUDSQLSUPERUSER}")


@pytest.fixture
def cloud_sql(postgres: Postgres, cloudsqlsuperuser: str) -> Iterator[CloudSql]:
    tag = uuid.uuid4().hex[:8]
    instance = CloudSql(
        port=postgres.port,
        database=f"bootstrap_{tag}",
        other_database=f"bootstrap_{tag}_other",
        admin=f"cloudsql-admin-{tag}",
        admin_password=f"admin-{uuid.uuid4().hex}",
        iam_user=f"dev-orchestrator-{tag}@replace-me-dev.iam",
        iam_password=f"iam-{uuid.uuid4().hex}",
    )
    ident, literal = sql.Identifier, sql.Literal
    with psycopg.connect(postgres.conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CREATEROLE CREATEDB PASSWORD {} IN ROLE {}").format(
                ident(instance.admin), literal(instance.admin_password), ident(cloudsqlsuperuser)
            )
        )
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident(instance.iam_user), literal(instance.iam_password))
        )
        for database in (instance.database, instance.other_database):
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(database), ident(cloudsqlsuperuser)))
    yield instance
    with psycopg.connect(postgres.conninfo, autocommit=True) as conn:
        for database in (instance.database, instance.other_database):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(database)))
        for role in (instance.iam_user, instance.admin):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


def bootstrap(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The job as Cloud Run runs it: the orchestrator's image with the job's command
    (hybrid/components/database_bootstrap.py)."""
    with image_tree("orchestrator") as tree:
        return subprocess.run(
            **tree.popen_args(env, ["python", "-m", "orchestrator.bootstrap"]),
            capture_output=True,
            text=True,
            timeout=60,
        )


def granted_line(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    granted: dict[str, Any] = json.loads(lines[0])
    return granted


def migrate(conninfo: str) -> None:
    """The orchestrator's migrations, as its start-up runs them."""

    async def run() -> None:
        ledger = Ledger(create_pool("password", 2, 5, conninfo))
        await ledger.pool.open(wait=False)
        try:
            await ledger.migrate()
        finally:
            await ledger.pool.close()

    asyncio.run(run())


def open_and_close_entry(conninfo: str, request_id: str) -> None:
    """One request's ledger life: accepted (row written), then its outcome written."""

    async def run() -> None:
        ledger = Ledger(create_pool("password", 2, 5, conninfo))
        await ledger.start()
        try:
            entry = await ledger.open_entry(request_id, "bootstrap-user", "standin-echo", quota=1000)
            assert entry is not None
            ledger.close_entry(Outcome(entry, "completed", "standin", 3, 5))
        finally:
            await asyncio.wait_for(ledger.stop(), 30)

    asyncio.run(run())


def public_schema_privileges(conn: psycopg.Connection[tuple[Any, ...]], role: str) -> list[str]:
    """The privileges granted to ``role`` itself on schema public (not via PUBLIC)."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = 'public' AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s) "
            "ORDER BY 1",
            (role,),
        )
    ]


def test_migrations_fail_until_the_bootstrap_and_then_the_ledger_works(cloud_sql: CloudSql) -> None:
    iam = cloud_sql.conninfo(cloud_sql.iam_user, cloud_sql.iam_password)

    # (a) As Cloud SQL leaves it, the orchestrator cannot create its tables (PostgreSQL 15+).
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema public"):
        migrate(iam)
    with pytest.raises(LedgerUnavailable, match="InsufficientPrivilege"):  # the 503 for ever
        open_and_close_entry(iam, uuid.uuid4().hex)

    # (b) The job: its environment only, run as the admin.
    logged = granted_line(bootstrap(cloud_sql.job_env()))
    assert logged["severity"] == "INFO"
    assert logged["message"] == "schema privileges granted"
    assert (logged["database"], logged["schema"], logged["grantee"]) == (
        cloud_sql.database,
        "public",
        cloud_sql.iam_user,
    )
    assert logged["privileges"] == ["USAGE", "CREATE"]
    assert logged["newly_held"] == ["CREATE"]  # USAGE it had through PUBLIC already

    # (c) Now the orchestrator migrates and records a request, as the IAM-like user.
    migrate(iam)
    request_id = uuid.uuid4().hex
    open_and_close_entry(iam, request_id)
    with cloud_sql.as_iam_user() as conn:  # its tables: the admin (no superuser) may not read them
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")] == sorted(MIGRATIONS)
        row = conn.execute(
            "SELECT outcome, backend, prompt_tokens, completion_tokens, finished_at IS NOT NULL "
            "FROM usage_ledger WHERE request_id = %s",
            (request_id,),
        ).fetchall()
        assert row == [("completed", "standin", 3, 5, True)]
        owners = {
            r[0]
            for r in conn.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename IN ('usage_ledger', 'schema_migrations')"
            )
        }
        assert owners == {cloud_sql.iam_user}


def test_a_second_run_succeeds_and_changes_nothing(cloud_sql: CloudSql) -> None:
    granted_line(bootstrap(cloud_sql.job_env()))
    migrate(cloud_sql.conninfo(cloud_sql.iam_user, cloud_sql.iam_password))

    def state() -> tuple[tuple[Any, ...] | None, ...]:
        with cloud_sql.as_admin() as conn:
            return (
                conn.execute("SELECT nspowner, nspacl::text FROM pg_namespace WHERE nspname = 'public'").fetchone(),
                conn.execute(
                    "SELECT datdba, datacl::text FROM pg_database WHERE datname = %s", (cloud_sql.database,)
                ).fetchone(),
                conn.execute(
                    "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
                    "FROM pg_roles WHERE rolname = %s",
                    (cloud_sql.iam_user,),
                ).fetchone(),
                conn.execute(
                    "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s",
                    (cloud_sql.iam_user,),
                ).fetchone(),
            )

    before = state()
    logged = granted_line(bootstrap(cloud_sql.job_env()))
    assert logged["newly_held"] == []
    assert state() == before
    open_and_close_entry(cloud_sql.conninfo(cloud_sql.iam_user, cloud_sql.iam_password), uuid.uuid4().hex)


def test_the_grantee_gets_schema_public_of_its_database_and_nothing_else(cloud_sql: CloudSql) -> None:
    granted_line(bootstrap(cloud_sql.job_env()))
    with cloud_sql.as_admin() as conn:
        assert public_schema_privileges(conn, cloud_sql.iam_user) == ["CREATE", "USAGE"]
        assert conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = %s",
            (cloud_sql.iam_user,),
        ).fetchone() == (False, False, False, False, False)
        memberships = conn.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s",
            (cloud_sql.iam_user,),
        )
        assert one(memberships)[0] == 0
        assert conn.execute(
            "SELECT pg_get_userbyid(datdba), has_database_privilege(%s, datname, 'CREATE') "
            "FROM pg_database WHERE datname = %s",
            (cloud_sql.iam_user, cloud_sql.database),
        ).fetchone() == (CLOUDSQLSUPERUSER, False)
        conn.execute("CREATE SCHEMA reporting")  # someone else's schema in the same database
    with cloud_sql.as_admin(cloud_sql.other_database) as conn:
        assert public_schema_privileges(conn, cloud_sql.iam_user) == []

    refused = {
        "create a database": (None, f'CREATE DATABASE "{cloud_sql.database}_mine"'),
        "create a role": (None, 'CREATE ROLE "someone-else"'),
        "create a schema": (None, "CREATE SCHEMA mine"),
        "create in another schema": (None, "CREATE TABLE reporting.mine (id integer)"),
        "create in another database": (cloud_sql.other_database, "CREATE TABLE public.mine (id integer)"),
    }
    for what, (database, statement) in refused.items():
        with cloud_sql.as_iam_user(database) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
            pytest.fail(f"the grantee could {what}")


@pytest.mark.parametrize("case", ["wrong password", "nothing listening", "unknown grantee", "admin without rights"])
def test_a_failure_is_one_line_on_stderr_with_status_1(cloud_sql: CloudSql, case: str) -> None:
    wrong_password = f"wrong-{uuid.uuid4().hex}"
    overrides, expected = {
        "wrong password": ({"PGPASSWORD": wrong_password}, "password authentication failed"),
        "nothing listening": ({"PGPORT": str(free_port())}, "Connection refused"),
        "unknown grantee": ({"GRANTEE": f"nobody-{uuid.uuid4().hex[:8]}@replace-me-dev.iam"}, "does not exist"),
        # Not a member of the owner: PostgreSQL only warns and grants nothing.
        "admin without rights": (
            {"PGUSER": cloud_sql.iam_user, "PGPASSWORD": cloud_sql.iam_password},
            "could not grant USAGE and CREATE on schema public",
        ),
    }[case]
    env = cloud_sql.job_env(**overrides)
    result = bootstrap(env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("orchestrator.bootstrap: ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    for secret in {env["PGPASSWORD"], cloud_sql.admin_password}:
        assert secret not in result.stdout + result.stderr
    if case == "admin without rights":
        with cloud_sql.as_admin() as conn:
            assert public_schema_privileges(conn, cloud_sql.iam_user) == []


def test_a_server_that_never_answers_fails_within_the_connect_timeout(cloud_sql: CloudSql) -> None:
    with socket.socket() as silent:  # the kernel accepts the connection; no one ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        result = bootstrap(cloud_sql.job_env(PGPORT=str(silent.getsockname()[1])))
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "timeout" in result.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("variable", ["GRANTEE", "PGDATABASE"])
def test_a_missing_variable_exits_2_and_names_it(cloud_sql: CloudSql, variable: str) -> None:
    result = bootstrap(cloud_sql.job_env(**{variable: None}))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"orchestrator.bootstrap: {variable} must be set"]
