"""Broken copies of the synth's ways to the data stores (analysis/reachability/data.py): Memorystore
and Cloud SQL, each caught on the edge it breaks, for the reason it breaks it."""

from __future__ import annotations

import pytest

from analysis.reachability import evaluate
from iac import Stacks
from reachability_helpers import (
    REDIS_EDGE,
    add_rule,
    by_edge,
    container_env,
    explain,
    facts_for,
    failures,
    only_env,
    service,
)


def test_the_gateway_cannot_reach_memorystore_without_its_egress_rule(synth_json: Stacks) -> None:
    stacks = only_env(synth_json, "prod")
    rules = stacks["prod-network"]["resource"]["google_compute_firewall"]
    (key,) = [k for k, r in rules.items() if r["name"] == "prod-allow-gateway-egress-redis"]
    del rules[key]
    verdict = by_edge(stacks, facts_for("prod"))[REDIS_EDGE]
    assert not verdict.ok
    assert any("denied by prod-deny-all-egress" in text for text in failures(verdict)), explain([verdict])


def test_a_redis_auth_string_in_plain_text_is_refused(synth_json: Stacks) -> None:
    stacks = only_env(synth_json, "prod")
    entry = container_env(service(stacks, "gateway", "prod"))["REDIS_AUTH"]
    del entry["value_source"]
    entry["value"] = "in-plain-sight"
    verdict = by_edge(stacks, facts_for("prod"))[REDIS_EDGE]
    assert failures(verdict) == ["REDIS_AUTH comes from Secret Manager"]


@pytest.mark.parametrize("priority", [900, 1000])  # above the allow, and tied with it: deny wins ties
def test_deny_on_postgres_above_the_allow_blocks_the_database(synth_json: Stacks, priority: int) -> None:
    stacks = only_env(synth_json)
    add_rule(
        stacks,
        "dev-deny-postgres",
        direction="EGRESS",
        priority=priority,
        deny=[{"protocol": "tcp", "ports": ["5432"]}],
        destination_ranges=["10.32.0.0/16"],
    )
    verdicts = by_edge(stacks, facts_for("dev"))
    assert failures(verdicts["orchestrator -> Cloud SQL"]) == [
        "egress tcp:5432 10.8.0.0/28 [tags vpc-connector, vpc-connector-us-central1-dev-connector] -> 10.32.0.0/16: "
        f"denied by dev-deny-postgres (priority {priority})"
    ]
    # The bootstrap job reaches the database the same way.
    assert [edge for edge, v in verdicts.items() if not v.ok] == [
        "orchestrator -> Cloud SQL",
        "db-bootstrap job -> Cloud SQL",
    ]


def test_deny_on_postgres_below_the_allow_changes_nothing(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    add_rule(
        stacks,
        "dev-deny-postgres",
        direction="EGRESS",
        priority=2000,
        deny=[{"protocol": "tcp", "ports": ["5432"]}],
        destination_ranges=["10.32.0.0/16"],
    )
    verdicts = evaluate(stacks, facts_for("dev"))
    assert all(v.ok for v in verdicts), explain(verdicts)
