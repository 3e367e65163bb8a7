"""docs/observability.md's usage queries, run with DuckDB (BigQuery's stand-in) over the usage
records a real orchestrator process logged on stdout, shaped as the log sink writes them."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import duckdb

from devtools.harness import Postgres, Server
from test_ledger_resilience import fresh_database
from test_orchestrator_process import orchestrator_process

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def usage_queries() -> list[str]:
    """The section's SQL blocks, with BigQuery's one function DuckDB spells otherwise."""
    section = DOC.read_text().split("## Usage queries", 1)[1]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    return [re.sub(r"APPROX_QUANTILES\((.+?), 100\)\[OFFSET\(95\)\]", r"quantile_cont(\1, 0.95)", b) for b in blocks]


def test_the_usage_queries_answer_from_records_the_orchestrator_logged(
    postgres: Postgres, upstream: Server, tmp_path: Path
) -> None:
    conninfo = fresh_database(postgres, "usage_queries")
    users = [f"usage-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    with orchestrator_process(conninfo, upstream.url, tmp_path) as orchestrator:
        for n, user in enumerate(users):
            for stream in [False] * (n + 1) + [True]:
                assert orchestrator.chat(user, stream=stream).status_code == 200
        records = orchestrator.logged("usage")
    assert len(records) == 5, records
    # As the sink writes an entry: its time, and the rest of the record as jsonPayload.
    table = tmp_path / "usage.jsonl"
    table.write_text("".join(json.dumps({"timestamp": r["time"], "jsonPayload": r}) + "\n" for r in records))
    db = duckdb.connect()
    db.execute(f"CREATE TABLE usage AS SELECT * FROM read_json('{table}', format = 'newline_delimited')")
    # The third query (batch lines per state) reads the worker's "batch line" records: not run here.
    per_user, ttft = (db.execute(q).fetchall() for q in usage_queries()[:2])
    tokens = {
        user: sum(r["prompt_tokens"] + r["completion_tokens"] for r in records if r["user"] == user) for user in users
    }
    assert sorted((row[0], row[2]) for row in per_user) == sorted(tokens.items())
    assert all(row[2] > 0 and abs(float(row[3]) - row[2] * 0.000002) < 1e-9 for row in per_user)
    ((model, p95),) = ttft
    assert model == "standin-echo" and 0 < p95 < 5
