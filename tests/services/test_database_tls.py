"""The services verify the database server: IAM logins need PGSSLMODE verify-ca (or verify-full)
and the server's CA (DATABASE_SERVER_CA, a PEM), and a server whose certificate another CA
issued is refused, by the pool and by the bootstrap job alike."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import psycopg_pool
import pytest
from psycopg.conninfo import make_conninfo
from pydantic import ValidationError

from devtools.harness import PASSWORD, Postgres, certificate_authority
from devtools.image_tree import image_tree
from servers import postgres_cluster
from services.modelcalls.database import create_pool
from services.modelcalls.settings import ModelCallerSettings

ROUTING = {"backends": {"m": {"kind": "openai", "url": "http://127.0.0.1:9/v1"}}, "routes": []}
IAM = {"database_auth": "iam", "pghost": "10.0.0.3", "pgdatabase": "d", "pguser": "u"}


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with postgres_cluster("tls-postgres-", tls=True) as database:
        yield database


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        ({"pgsslmode": "require", "database_server_ca": "PEM"}, "PGSSLMODE verify-ca or verify-full"),
        ({"pgsslmode": "verify-ca"}, "DATABASE_SERVER_CA"),
    ],
)
def test_iam_login_must_verify_the_server(given: dict[str, str], refusal: str) -> None:
    with pytest.raises(ValidationError, match=refusal):
        ModelCallerSettings.model_validate({**ROUTING, **IAM, **given})
    ModelCallerSettings.model_validate({**ROUTING, **IAM, "pgsslmode": "verify-ca", "database_server_ca": "PEM"})


async def _connects(server: Postgres, ca_pem: str) -> None:
    conninfo = make_conninfo(server.conninfo, sslmode="verify-ca")
    pool = create_pool("password", 1, 2, conninfo, server_ca=ca_pem)
    await pool.open(wait=False)
    try:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
    finally:
        await pool.close()


def test_the_pool_trusts_the_server_ca_it_is_given_and_no_other(
    server: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(_connects(server, server.ca_pem))
    with pytest.raises(psycopg_pool.PoolTimeout):  # the pool keeps trying, and the request gives up
        asyncio.run(_connects(server, certificate_authority()[1]))
    assert "certificate verify failed" in caplog.text


def test_the_bootstrap_job_verifies_the_server_too(server: Postgres) -> None:
    def bootstrap(ca_pem: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PGHOST": server.host,
            "PGPORT": str(server.port),
            "PGDATABASE": "postgres",
            "PGUSER": "postgres",
            "PGPASSWORD": PASSWORD,
            "PGSSLMODE": "verify-ca",
            "DATABASE_SERVER_CA": ca_pem,
            "GRANTEE": "postgres",
        }
        with image_tree("orchestrator") as tree:  # the job runs the orchestrator's image
            return subprocess.run(
                **tree.popen_args(env, ["python", "-m", "orchestrator.bootstrap"]),
                capture_output=True,
                text=True,
                timeout=60,
            )

    refused = bootstrap(certificate_authority()[1])
    assert refused.returncode == 1 and "certificate verify failed" in refused.stderr, refused.stderr
    assert bootstrap(server.ca_pem).returncode == 0
