"""The orchestrator's caller check as the services stack renders it: the gateway's own account is
the one allowed caller, and the gateway mints its ID tokens for the audience the orchestrator
checks (services/orchestrator/callers.py)."""

from __future__ import annotations

from iac import Stacks, pointee, pointees
from reachability_helpers import by_edge, container_env, explain, facts_for, failures, only_env, service
from test_services_stack import env_vars, services


def test_the_orchestrator_admits_the_gateways_account_for_its_own_url(env: str, synth_json: Stacks) -> None:
    here = f"{env}-services"
    deployed = services(synth_json[here])
    orchestrator, gateway = env_vars(deployed["orchestrator"]), env_vars(deployed["gateway"])
    assert orchestrator["CALLER_AUTH"] == "google-id-token"
    assert orchestrator["CALLER_CERTS_URL"] == "https://www.googleapis.com/oauth2/v3/certs"
    # The one caller: the account the gateway's Cloud Run service runs as.
    caller = pointee(synth_json, here, orchestrator["ALLOWED_CALLERS"])
    assert caller.brief == (here, "google_service_account", f"{env}-gateway", "email")
    assert pointee(synth_json, here, deployed["gateway"]["template"]["service_account"]) == caller
    # The audience: the orchestrator's deterministic URL (cloud.google.com/run/docs/triggering/https-request#deterministic),
    # the same string the gateway asks the metadata server to mint its token for.
    audience = orchestrator["CALLER_AUDIENCE"]
    assert gateway["ORCHESTRATOR_AUDIENCE"] == audience
    assert audience.startswith(f"https://{deployed['orchestrator']['name']}-${{")
    assert audience.endswith(".us-central1.run.app")
    assert [p.brief for p in pointees(synth_json, here, audience)] == [(here, "data.google_project", None, "number")]


def test_make_check_follows_the_gateways_token_through_the_orchestrators_caller_check(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    # dev's connector mode: the token's audience is still the run.app URL the orchestrator checks.
    edge = "gateway -> orchestrator (internal load balancer)"
    verdict = by_edge(stacks, facts_for("dev"))[edge]
    assert verdict.ok, explain([verdict])
    assert any("ALLOWED_CALLERS (serviceAccount:dev-gateway) admits dev-gateway" in s.text for s in verdict.steps)
    # Another account admitted, or another audience checked: the gateway's calls would be refused.
    orchestrator = container_env(service(stacks, "orchestrator"))
    orchestrator["ALLOWED_CALLERS"]["value"] = "someone@replace-me-dev.iam.gserviceaccount.com"
    orchestrator["CALLER_AUDIENCE"]["value"] = "https://elsewhere.run.app"
    blocked = by_edge(stacks, facts_for("dev"))[edge]
    assert not blocked.ok
    assert [text.split(":", 1)[0] for text in failures(blocked)] == ["dev-gateway", "dev-orchestrator"]
    assert "is the orchestrator's CALLER_AUDIENCE https://elsewhere.run.app" in failures(blocked)[0]
    assert "admits dev-gateway, serviceAccount:dev-gateway" in failures(blocked)[1]
