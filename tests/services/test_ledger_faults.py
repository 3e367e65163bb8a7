"""The ledger when PostgreSQL misbehaves (issue 12): an outcome it refuses for ever, a server
that hangs with connections open, and a restart that kills every pooled connection."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from harness import wait_for
from orchestrator.database import create_pool
from orchestrator.ledger import Ledger, Outcome
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


def test_an_outcome_the_database_refuses_does_not_hold_up_the_rest(postgres, caplog):
    conninfo = fresh_database(postgres, "ledger_poison")

    async def run():
        ledger = Ledger(create_pool("password", 2, 5, conninfo), retry_seconds=0.1)
        await ledger.start()
        try:
            await ledger.migrate()
            async with ledger.pool.connection() as conn:
                await conn.execute(REFUSE_POISON)
            poison = await ledger.open_entry("poison", "poison-user", "m", quota=1000)
            after = await ledger.open_entry("after", "poison-user", "m", quota=1000)
            ledger.close_entry(Outcome(poison, "completed", "standin", 3, 5))
            ledger.close_entry(Outcome(after, "completed", "standin", 3, 5))
            await asyncio.wait_for(ledger.pending.join(), 10)
        finally:
            await asyncio.wait_for(ledger.stop(), 30)

    asyncio.run(run())
    assert outcomes(conninfo) == {"poison": "started", "after": "completed"}
    dropped = [r for r in caplog.records if r.getMessage() == "ledger outcome dropped"]
    assert len(dropped) == 1
    assert (dropped[0].fields["outcome"], dropped[0].fields["prompt_tokens"]) == ("completed", 3)
