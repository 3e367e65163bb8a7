"""The ledger when PostgreSQL misbehaves: an outcome it refuses for ever, a server
that hangs with connections open, and a restart that kills every pooled connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest

from devtools.harness import Postgres, Server, last_event, orchestrator_settings, wait_for
from records import fields
from servers import LedgerRows, postgres_cluster
from services.modelcalls.database import create_pool
from services.modelcalls.ledger import Ledger, Outcome
from services.orchestrator.app import create_app as create_orchestrator
from test_ledger_resilience import fresh_database

REFUSE_POISON = """
    CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.request_id = 'poison' AND NEW.outcome <> 'started' THEN
            RAISE EXCEPTION 'this outcome is refused';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_poison BEFORE UPDATE ON usage_ledger FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def outcomes(conninfo: str) -> dict[str, str]:
    with psycopg.connect(conninfo) as conn:
        return dict(conn.execute("SELECT request_id, outcome FROM usage_ledger").fetchall())


def test_an_outcome_the_database_refuses_does_not_hold_up_the_rest(
    postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    conninfo = fresh_database(postgres, "ledger_poison")

    async def run() -> None:
        ledger = Ledger(create_pool("password", 2, 5, conninfo), retry_seconds=0.1)
        await ledger.start()
        try:
            await ledger.migrate()
            async with ledger.pool.connection() as conn:
                await conn.execute(REFUSE_POISON)
            poison = await ledger.open_entry("poison", "poison-user", "m", quota=1000)
            after = await ledger.open_entry("after", "poison-user", "m", quota=1000)
            assert poison is not None and after is not None
            ledger.close_entry(Outcome(poison, "completed", "standin", 3, 5))
            ledger.close_entry(Outcome(after, "completed", "standin", 3, 5))
            await asyncio.wait_for(ledger.pending.join(), 10)
        finally:
            await asyncio.wait_for(ledger.stop(), 30)

    asyncio.run(run())
    assert outcomes(conninfo) == {"poison": "started", "after": "completed"}
    dropped = [r for r in caplog.records if r.getMessage() == "ledger outcome dropped"]
    assert len(dropped) == 1
    assert (fields(dropped[0])["outcome"], fields(dropped[0])["prompt_tokens"]) == ("completed", 3)


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Postgres]:
    """A cluster of this module's own, to freeze and restart without disturbing the others."""
    with postgres_cluster("ledger-faults-") as server:
        yield server


@contextmanager
def frozen(server: Postgres) -> Iterator[None]:
    """Stop every process of the cluster (SIGSTOP): connections stay open and nothing answers,
    as with a server that hangs."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = os.popen(f"pgrep -P {postmaster}").read().split()
    pids = [postmaster, *map(int, children)]
    signal_all(pids, signal.SIGSTOP)
    try:
        yield
    finally:
        signal_all(pids, signal.SIGCONT)


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a backend whose client had just left
            os.kill(pid, signum)


def chat(server: Server, content: str, request_id: str, timeout: float = 30) -> httpx.Response:
    body = {"model": "standin-echo", "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={"x-user-id": "hung-db-user", "x-request-id": request_id},
        timeout=timeout,
    )


def test_a_hung_database_is_a_prompt_503_and_no_work_once_it_thaws(own_postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, database_timeout_seconds=2)
    with Server(create_orchestrator(settings, conninfo=own_postgres.conninfo)) as server:
        assert chat(server, "warm the pool", uuid.uuid4().hex).status_code == 200
        nonce, rid = uuid.uuid4().hex, uuid.uuid4().hex
        with frozen(own_postgres):
            started = time.monotonic()
            response = chat(server, f"hello {nonce}", rid, timeout=10)
            took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "ledger_unavailable"
        assert took < 4
        # Thawed: whatever the abandoned request had left in flight may run now; none of it
        # may reach a model or the ledger.
        time.sleep(3)
        assert not [r for r in upstream.app.state.requests if nonce in str(r["body"])]
        with psycopg.connect(own_postgres.conninfo) as conn:
            assert conn.execute("SELECT count(*) FROM usage_ledger WHERE request_id = %s", (rid,)).fetchone() == (0,)
        assert wait_for(lambda: chat(server, "after", uuid.uuid4().hex).status_code == 200, timeout=15, interval=0.5)


def test_a_hung_database_at_start_up_does_not_hold_the_start_up(own_postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, database_timeout_seconds=2)
    with frozen(own_postgres):
        started = time.monotonic()
        with Server(create_orchestrator(settings, conninfo=own_postgres.conninfo)) as server:
            took = time.monotonic() - started
            assert chat(server, "frozen", uuid.uuid4().hex, timeout=10).status_code == 503
    assert took < 8


def fill_the_pool(server: Server, postgres: Postgres, size: int) -> None:
    """Have ``size`` requests hold a connection each at once: the table is locked for a moment,
    so their admissions wait on it, and the pool grows to its full size."""
    with psycopg.connect(postgres.conninfo) as conn:
        conn.execute("LOCK TABLE usage_ledger IN ACCESS EXCLUSIVE MODE")

        async def requests() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                body = {"model": "standin-echo", "messages": [{"role": "user", "content": "hi"}]}
                sent = [
                    asyncio.create_task(
                        client.post(f"{server.url}/v1/chat/completions", json=body, headers={"x-user-id": f"pool-{n}"})
                    )
                    for n in range(size)
                ]
                await asyncio.sleep(0.7)
                conn.commit()  # unlock
                return await asyncio.gather(*sent)

        assert [r.status_code for r in asyncio.run(requests())] == [200] * size


def test_the_first_request_after_a_restart_succeeds_with_a_full_pool(own_postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, database_pool_size=4, database_timeout_seconds=2)
    app = create_orchestrator(settings, conninfo=own_postgres.conninfo)
    with Server(app) as server:
        assert chat(server, "migrate", uuid.uuid4().hex).status_code == 200
        fill_the_pool(server, own_postgres, 4)
        assert wait_for(lambda: app.state.ledger.pool.get_stats().get("pool_available") == 4)  # outcomes written
        own_postgres.stop()  # every pooled connection dies with the server
        own_postgres.start()
        started = time.monotonic()
        response = chat(server, "after the restart", uuid.uuid4().hex)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 1


def test_a_late_outcome_replaces_the_reconciliations_guess(postgres: Postgres) -> None:
    """An instance that waited out an outage longer than the stale bound still writes the real outcome."""
    conninfo = fresh_database(postgres, "ledger_late_outcome")

    async def run() -> None:
        ledger = Ledger(create_pool("password", 2, 5, conninfo), stale_after=0.1, reconcile_seconds=3600)
        await ledger.start()
        try:
            await ledger.migrate()
            entry = await ledger.open_entry("late", "late-user", "m", quota=1000, estimate=10)
            assert entry is not None
            await asyncio.sleep(0.3)
            assert await ledger.reconcile() == 1
            assert outcomes(conninfo) == {"late": "abandoned"}
            ledger.close_entry(Outcome(entry, "completed", "standin", 3, 5))
            await asyncio.wait_for(ledger.pending.join(), 10)
        finally:
            await asyncio.wait_for(ledger.stop(), 30)

    asyncio.run(run())
    assert outcomes(conninfo) == {"late": "completed"}


def test_no_request_outlives_max_request_seconds(postgres: Postgres, upstream: Server, ledger_rows: LedgerRows) -> None:
    """The bound on a row's time as started: a longer answer is cut, and recorded so."""
    settings = orchestrator_settings(upstream.url, max_request_seconds=1)
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as server:
        rid = uuid.uuid4().hex
        body = {"model": "standin-slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        started = time.monotonic()
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json=body,
            headers={"x-user-id": "long-user", "x-request-id": rid},
            timeout=30,
        )
        assert time.monotonic() - started < 2.5  # the stand-in takes 4 s
        assert last_event(response.content)["error"]["code"] == "upstream_aborted"
        assert wait_for(lambda: [r["outcome"] for r in ledger_rows(rid)] == ["upstream_aborted"])
