"""The daily token quota under concurrency: admission reserves an estimate in PostgreSQL, so
simultaneous requests cannot all pass a check that only sees finished ones."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import psycopg

from chats import Body
from devtools.harness import Postgres, Server, orchestrator_settings, wait_for
from servers import one, query
from services.modelcalls.database import create_pool
from services.modelcalls.ledger import MIGRATIONS, Ledger
from services.orchestrator.app import create_app as create_orchestrator
from test_ledger_resilience import fresh_database

# standin-paced: 20 chunks over half a second, so simultaneous requests overlap; the stand-in
# counts 2 prompt tokens ("hello there") and 20 completion tokens.
ONE_REQUEST = 22


def stream_body(**extra: Any) -> Body:
    return {"model": "standin-paced", "messages": [{"role": "user", "content": "hello there"}], "stream": True, **extra}


async def at_once(url: str, user: str, count: int, body: Body) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/v1/chat/completions", json=body, headers={"x-user-id": user}) for _ in range(count))
        )


def used_today(conninfo: str, user: str) -> tuple[int, int]:
    """(tokens used, rows still started) for the user."""
    [row] = query(
        conninfo,
        "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0), count(*) FILTER (WHERE outcome = 'started') "
        "FROM usage_ledger WHERE user_id = %s",
        user,
    )
    return row


def settle(conninfo: str, user: str) -> int:
    assert wait_for(lambda: used_today(conninfo, user)[1] == 0)
    return used_today(conninfo, user)[0]


def check_refusals(responses: list[httpx.Response]) -> int:
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert all(r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded" for r in refused), refused
    assert admitted, "the quota had room for at least one request"
    return len(admitted)


def test_simultaneous_requests_of_a_new_user_stay_within_the_quota(postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, daily_token_quota=60)
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as server:
        user = f"burst-{uuid.uuid4().hex[:8]}"
        check_refusals(asyncio.run(at_once(server.url, user, 20, stream_body())))
        # Without max_tokens each request reserves the default estimate (more than 60): one
        # runs at a time, so the overspend is at most that one request.
        assert settle(postgres.conninfo, user) <= 60 + ONE_REQUEST


def test_max_tokens_lets_several_run_at_once_within_the_quota(postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, daily_token_quota=60)
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as server:
        user = f"bounded-{uuid.uuid4().hex[:8]}"
        admitted = check_refusals(asyncio.run(at_once(server.url, user, 20, stream_body(max_tokens=10))))
        assert admitted >= 2  # each reserves 10 completion tokens plus its prompt's estimate
        assert settle(postgres.conninfo, user) <= 60


def test_a_user_near_the_quota_gets_one_stream_not_twelve(postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, daily_token_quota=60)
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as server:
        user = f"near-{uuid.uuid4().hex[:8]}"
        with psycopg.connect(postgres.conninfo) as conn:
            conn.execute(
                "INSERT INTO usage_ledger (id, request_id, user_id, model, outcome, prompt_tokens, "
                "completion_tokens, finished_at) VALUES (%s, 'earlier', %s, 'standin-echo', 'completed', "
                "6, 50, now())",
                (uuid.uuid4(), user),
            )
        assert check_refusals(asyncio.run(at_once(server.url, user, 12, stream_body()))) == 1
        assert settle(postgres.conninfo, user) <= 56 + ONE_REQUEST


def test_migrations_upgrade_a_ledger_of_the_first_version(postgres: Postgres) -> None:
    """An instance of the first schema left rows behind, one still started: the upgrade keeps
    them, counts them against the quota and lets the started one be finished."""
    conninfo = fresh_database(postgres, "ledger_upgrade")
    started, user = uuid.uuid4(), "upgraded-user"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(MIGRATIONS[1])
        conn.execute("INSERT INTO schema_migrations (version) VALUES (1)")
        conn.execute(
            "INSERT INTO usage_ledger (id, request_id, user_id, model, outcome, prompt_tokens, "
            "completion_tokens, finished_at) VALUES (%s, 'old-done', %s, 'm', 'completed', 4, 4, now())",
            (uuid.uuid4(), user),
        )
        conn.execute(
            "INSERT INTO usage_ledger (id, request_id, user_id, model, outcome) "
            "VALUES (%s, 'old-started', %s, 'm', 'started')",
            (started, user),
        )

    async def upgrade_and_use() -> tuple[uuid.UUID | None, uuid.UUID | None]:
        from services.modelcalls.ledger import Outcome

        ledger = Ledger(create_pool("password", 2, 5, conninfo))
        await ledger.start()
        try:
            await ledger.migrate()
            ledger.close_entry(Outcome(started, "completed", "standin", 1, 1))
            await asyncio.sleep(0.5)
            # 10 used of 12, nothing in flight: one more request, then none while it runs.
            first = await ledger.open_entry("new-1", user, "m", quota=12, estimate=50)
            second = await ledger.open_entry("new-2", user, "m", quota=12, estimate=1)
            return first, second
        finally:
            await asyncio.wait_for(ledger.stop(), 30)

    first, second = asyncio.run(upgrade_and_use())
    assert first is not None and second is None
    with psycopg.connect(conninfo) as conn:
        assert one(conn.execute("SELECT max(version) FROM schema_migrations"))[0] == max(MIGRATIONS)
        assert conn.execute(
            "SELECT outcome, prompt_tokens + completion_tokens FROM usage_ledger WHERE id = %s", (started,)
        ).fetchone() == ("completed", 2)
        assert conn.execute("SELECT reserved_tokens FROM usage_ledger WHERE request_id = 'new-1'").fetchone() == (50,)
