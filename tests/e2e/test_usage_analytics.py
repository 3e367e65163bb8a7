"""The usage queries of docs/analytics.md, run with DuckDB as BigQuery's stand-in over the records
the services really emitted on the local chain (devtools/local_chain.py, batches=True): chats by
three users, streamed and not, and a batch with a line that fails. Each service's stdout lines
are wrapped as the log entries Cloud Logging makes of them (cloud.google.com/logging/docs/
structured-logging: the JSON becomes jsonPayload, its ``time`` the entry's timestamp), kept
where the sink's filter would keep them, and loaded under the tables the sink writes
(cloud.google.com/logging/docs/export/bigquery): run_googleapis_com_stdout for the
Cloud Run services, stdout for the worker's GKE container."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import openai
import psycopg
import pytest

from devtools.local_chain import LocalChain, local_chain
from devtools.standins.identity_platform import user_id

QUERIES = Path(__file__).resolve().parents[2] / "analysis" / "usage_queries"
# The one dialect difference: BigQuery's approximate quantiles against DuckDB's exact one.
P95_BIGQUERY = "APPROX_QUANTILES(jsonPayload.ttft_ms, 100)[OFFSET(95)]"
P95_DUCKDB = "quantile_disc(jsonPayload.ttft_ms, 0.95)"
USERS = {"ada@example.com": 3, "bo@example.com": 2, "cy@example.com": 1}  # chats each


@pytest.fixture(scope="module")
def chain(synth_dir: Path) -> Iterator[LocalChain]:
    """A chain of its own, not the batch page's (tests/conftest.py's ``chain``): the queries count
    every record its services logged. On the run's synthesis of dev (``synth_dir``)."""
    with local_chain(batches=True) as running:
        yield running


def token(chain: LocalChain, email: str) -> str:
    return str(chain["issuer"].token(user_id(email), email=email))


def chat(chain: LocalChain, email: str, stream: bool) -> None:
    body = {"model": chain["model"], "messages": [{"role": "user", "content": "how many tokens?"}], "stream": stream}
    headers = {"authorization": f"Bearer {token(chain, email)}"}
    with httpx.stream("POST", f"{chain['gateway']}/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
        r.read()
        assert r.status_code == 200, r.text


def run_batch(chain: LocalChain, email: str) -> Any:
    client = openai.OpenAI(base_url=f"{chain['gateway']}/v1", api_key=token(chain, email), max_retries=0)
    lines = [
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"question {i}"}]},
        }
        for i, model in enumerate([chain["model"], chain["model"], "no-such-model"])
    ]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    uploaded = client.files.create(file=("lines.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 240
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    return batch


def log_entries(log: Path) -> list[dict[str, Any]]:
    """The log's structured lines as the sink would route them: usage records only, as entries."""
    entries = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # not a structured line: Cloud Logging would make it a textPayload
        if isinstance(record, dict) and record.get("usage_record") in ("request", "batch_line"):
            entries.append({"timestamp": record.pop("time"), "severity": record.pop("severity"), "jsonPayload": record})
    return entries


def table(db: duckdb.DuckDBPyConnection, name: str, entries: list[dict[str, Any]], work: Path) -> None:
    path = work / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    db.execute(f"CREATE TABLE {name} AS SELECT * FROM read_json_auto('{path}', sample_size=-1)")


def query(db: duckdb.DuckDBPyConnection, name: str) -> list[tuple[Any, ...]]:
    sql = (QUERIES / f"{name}.sql").read_text()
    return db.execute(sql.replace(P95_BIGQUERY, P95_DUCKDB)).fetchall()


def settled_ledger(chain: LocalChain) -> dict[str, tuple[int, int]]:
    """Tokens per user in the ledger, once no row is still being written."""
    deadline = time.monotonic() + 30
    with psycopg.connect(chain["conninfo"]) as conn:
        while conn.execute("SELECT count(*) FROM usage_ledger WHERE outcome = 'started'").fetchone() != (0,):
            assert time.monotonic() < deadline, "ledger rows still started"
            time.sleep(0.5)
        rows = conn.execute(
            "SELECT user_id, sum(prompt_tokens), sum(completion_tokens) FROM usage_ledger GROUP BY user_id"
        ).fetchall()
    return {user: (int(p), int(c)) for user, p, c in rows}


def test_the_three_usage_queries_agree_with_the_ledger_and_the_batch(chain: LocalChain, tmp_path: Path) -> None:
    for email, chats in USERS.items():
        for i in range(chats):
            chat(chain, email, stream=bool(i % 2))
    batch = run_batch(chain, "ada@example.com")
    assert batch.status == "completed" and batch.request_counts is not None
    ledger = settled_ledger(chain)
    time.sleep(1)  # the services' last lines reach their log files

    logs: Path = chain["logs"]
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    table(db, "run_googleapis_com_stdout", log_entries(logs / "orchestrator.log"), tmp_path)
    table(db, "stdout", log_entries(logs / "worker.log"), tmp_path)

    per_user = {user: (p, c) for _day, user, p, c, _cost in query(db, "tokens_and_cost_per_user_per_day")}
    assert per_user == ledger
    assert set(per_user) == {user_id(email) for email in USERS}
    assert all(p > 0 and c > 0 for p, c in per_user.values())

    ((model, requests, p95),) = query(db, "p95_time_to_first_token_per_model")
    assert (model, requests) == (chain["model"], sum(USERS.values()))
    assert p95 > 0

    states = {(b, state): n for b, state, n in query(db, "batch_lines_per_state")}
    counts = batch.request_counts
    assert states == {(batch.id, "succeeded"): counts.completed, (batch.id, "failed"): counts.failed}
    assert (counts.completed, counts.failed) == (2, 1)


def test_no_usage_record_carries_what_a_user_wrote(chain: LocalChain) -> None:
    logs: Path = chain["logs"]
    for log in ("orchestrator.log", "worker.log"):
        for entry in log_entries(logs / log):
            assert "question" not in json.dumps(entry) and "how many tokens" not in json.dumps(entry)


def test_the_readme_and_docs_show_the_queries_verbatim() -> None:
    root = QUERIES.parents[1]
    for sql in QUERIES.glob("*.sql"):
        for doc in ("README.md", "docs/analytics.md"):
            assert sql.read_text().strip() in (root / doc).read_text(), f"{doc} lacks {sql.name}"
