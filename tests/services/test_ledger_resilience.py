"""The ledger under stress: migrations racing, quotas, and PostgreSQL going away and back."""

from __future__ import annotations

import asyncio
import functools
import uuid

import httpx
import psycopg

from devtools.harness import Postgres, Server, orchestrator_settings, wait_for
from servers import LedgerRows, one
from services.modelcalls.database import create_pool
from services.modelcalls.ledger import MIGRATIONS, Ledger
from services.orchestrator.app import create_app as create_orchestrator


def fresh_database(postgres: Postgres, name: str) -> str:
    with psycopg.connect(postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.conninfo.replace("dbname=postgres", f"dbname={name}")


def test_instances_starting_at_once_migrate_once(postgres: Postgres) -> None:
    conninfo = fresh_database(postgres, "migration_race")

    async def race() -> None:
        ledgers = [Ledger(create_pool("password", 2, 5, conninfo)) for _ in range(8)]
        for ledger in ledgers:
            await ledger.pool.open(wait=False)
        try:
            await asyncio.gather(*(ledger.migrate() for ledger in ledgers))
        finally:
            for ledger in ledgers:
                await ledger.pool.close()

    asyncio.run(race())
    with psycopg.connect(conninfo) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == sorted(MIGRATIONS)
        assert one(conn.execute("SELECT count(*) FROM usage_ledger"))[0] == 0


def test_daily_quota_refuses_once_used_up(postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, daily_token_quota=10)
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as server:
        user = f"quota-{uuid.uuid4().hex[:8]}"
        body = {"model": "standin-echo", "messages": [{"role": "user", "content": "one two three"}]}

        def settled_rows_are(expected: int) -> bool:
            with psycopg.connect(postgres.conninfo) as conn:
                settled = one(
                    conn.execute(
                        "SELECT count(*) FROM usage_ledger WHERE user_id = %s AND outcome <> 'started'", (user,)
                    )
                )
            return bool(settled[0] == expected)

        statuses = []
        for _ in range(4):  # 3 prompt + 5 completion tokens each: the second request passes 10
            statuses.append(
                httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"x-user-id": user}, timeout=10)
            )
            expected = sum(r.status_code == 200 for r in statuses)
            assert wait_for(functools.partial(settled_rows_are, expected))
        assert [r.status_code for r in statuses] == [200, 200, 429, 429]
        assert statuses[-1].json()["error"]["code"] == "quota_exceeded"


def test_database_down_gives_503_and_recovers_by_itself(
    postgres: Postgres, orchestrator: Server, ledger_rows: LedgerRows
) -> None:
    body = {"model": "standin-echo", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{orchestrator.url}/v1/chat/completions"
    postgres.stop()
    try:
        response = httpx.post(url, json=body, headers={"x-user-id": "outage"}, timeout=30)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == {
            "message": "usage ledger unavailable; retry shortly",
            "type": "api_error",
            "param": None,
            "code": "ledger_unavailable",
        }
    finally:
        postgres.start()
    rid = uuid.uuid4().hex
    recovered = wait_for(
        lambda: (
            httpx.post(url, json=body, headers={"x-user-id": "outage", "x-request-id": rid}, timeout=30).status_code
            == 200
        ),
        timeout=30,
        interval=0.5,
    )
    assert recovered
    assert wait_for(lambda: [r for r in ledger_rows(rid) if r["outcome"] == "completed"])


def test_outcome_of_an_accepted_request_survives_an_outage(
    postgres: Postgres, orchestrator: Server, ledger_rows: LedgerRows
) -> None:
    rid = uuid.uuid4().hex
    body = {"model": "standin-slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream(
        "POST",
        f"{orchestrator.url}/v1/chat/completions",
        json=body,
        headers={"x-user-id": "outage", "x-request-id": rid},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        next(chunks)
        assert [r["outcome"] for r in ledger_rows(rid)] == ["started"]
        postgres.stop()  # accepted, then the database goes away
        try:
            rest = b"".join(chunks)
        finally:
            postgres.start()
    assert rest.rstrip().endswith(b"data: [DONE]")
    row = wait_for(lambda: [r for r in ledger_rows(rid) if r["outcome"] != "started"], timeout=30, interval=0.3)
    assert [r["outcome"] for r in row] == ["completed"]
    assert row[0]["completion_tokens"] == 200
