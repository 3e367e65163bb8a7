"""The contract between the stacks and the services: each service loads, with its own
settings model from its environment, exactly the settings the stack rendered for it; a setting
nothing sets is refused before any stack is written."""

from __future__ import annotations

import os
from typing import TypeVar

import pytest
from pydantic_settings import BaseSettings

from hybrid.config import Environment, load_environment
from hybrid.service_contract import (
    ContractError,
    Wiring,
    container_env,
    render,
    service_settings,
    settings_model,
    url_settings,
)
from iac import ROOT, Json, Stacks, pointees
from services.gateway.settings import GatewaySettings
from services.orchestrator.settings import OrchestratorSettings
from services.worker.settings import WorkerSettings
from variants import DEV_ON_CLOUD_RUN

CLOUD_RUN_ROLES = ("frontend", "gateway", "orchestrator")

S = TypeVar("S", bound=BaseSettings)


@pytest.fixture
def environment(env: str) -> Environment:
    return load_environment(ROOT / "environments" / f"{env}.toml")


def load(role: str, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> BaseSettings:
    """What the service reads at start-up (its model's constructor) from exactly ``environ``."""
    with monkeypatch.context() as patch:
        for name in list(os.environ):
            patch.delenv(name)
        for name, value in environ.items():
            patch.setenv(name, value)
        return settings_model(role)()


def as_model(settings: BaseSettings, model: type[S]) -> S:
    """``settings``, checked to be the role's own model, so its fields can be read."""
    assert isinstance(settings, model)
    return settings


def declared_env(stack: Json, name: str, region: str | None = None) -> dict[str, str]:
    """The plain variables of the service ``name`` in ``region``, by default the environment's
    (a further region of [edge] regions runs it under the same name)."""
    (where,) = {p["region"] for p in stack["provider"]["google"]} if region is None else {region}
    services = stack["resource"]["google_cloud_run_v2_service"].values()
    (service,) = [s for s in services if s["name"] == name and s["location"] == where]
    return {e["name"]: e["value"] for e in service["template"]["containers"][0]["env"] if "value" in e}


@pytest.mark.parametrize("role", CLOUD_RUN_ROLES)
def test_each_service_loads_what_the_stack_rendered_for_it(
    env: str, role: str, environment: Environment, synth_json: Stacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = synth_json[f"{env}-services"]
    regions = {
        s["location"] for s in stack["resource"]["google_cloud_run_v2_service"].values() if s["name"] == f"{env}-{role}"
    }
    for region in sorted(regions):  # every region's copy, prod's us-east4 too
        declared = declared_env(stack, f"{env}-{role}", region)
        loaded = load(role, declared, monkeypatch)
        # Loading and rendering again gives the same variables: nothing was dropped or misread.
        assert render(loaded) == declared, region


def test_the_worker_loads_what_its_deployment_declares(synth_json: Stacks, monkeypatch: pytest.MonkeyPatch) -> None:
    (deployment,) = [
        d
        for d in synth_json["prod-workers-k8s"]["resource"]["kubernetes_deployment_v1"].values()
        if d["metadata"]["name"] == "worker"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["container"]
    declared = {e["name"]: e["value"] for e in container["env"]}
    loaded = as_model(load("worker", declared, monkeypatch), WorkerSettings)
    assert render(loaded) == declared
    assert (loaded.subscription, loaded.dead_letter_subscription) == (
        "projects/replace-me-prod/subscriptions/prod-batch-workers",
        "projects/replace-me-prod/subscriptions/prod-batch-dead-letters",
    )
    assert (loaded.topic, loaded.dead_letter_topic) == (
        "projects/replace-me-prod/topics/prod-batch-lines",
        "projects/replace-me-prod/topics/prod-batch-dead-letters",
    )
    assert loaded.batch_bucket == "replace-me-prod-prod-batch"
    assert (loaded.max_delivery_attempts, loaded.claim_seconds, loaded.max_outstanding_messages) == (5, 660, 16)
    # The same backends, routes and quota as the orchestrator: a batch line is an interactive request.
    orchestrator = as_model(
        load("orchestrator", declared_env(synth_json["prod-services"], "prod-orchestrator"), monkeypatch),
        OrchestratorSettings,
    )
    assert (loaded.backends, loaded.routes, loaded.daily_token_quota) == (
        orchestrator.backends,
        orchestrator.routes,
        orchestrator.daily_token_quota,
    )
    # Its own IAM database user, not the orchestrator's.
    assert loaded.database_auth == "iam" and loaded.pgsslmode == "verify-ca"
    assert loaded.database_server_ca == orchestrator.database_server_ca  # the instance's server CA
    assert loaded.pguser is not None and "worker_account" in loaded.pguser and loaded.pguser != orchestrator.pguser


def test_the_orchestrator_publishes_where_the_worker_pulls(synth_json: Stacks, monkeypatch: pytest.MonkeyPatch) -> None:
    orchestrator = as_model(
        load("orchestrator", declared_env(synth_json["prod-services"], "prod-orchestrator"), monkeypatch),
        OrchestratorSettings,
    )
    assert orchestrator.batch_bucket == "replace-me-prod-prod-batch"
    assert orchestrator.batch_topic == "projects/replace-me-prod/topics/prod-batch-lines"
    # The worker's IAM database user, whom the orchestrator grants the batch tables it owns.
    granted = declared_env(synth_json["prod-services"], "prod-orchestrator")["BATCH_WORKER_DATABASE_USER"]
    [account] = pointees(synth_json, "prod-services", granted)
    assert (account.stack, account.kind, account.config["account_id"], account.attr) == (
        "prod-database",
        "google_service_account",
        "prod-worker",
        "email",
    )
    # Without the workers tier, no batch settings: dev's batch routes answer "batches are not enabled".
    assert {"BATCH_BUCKET", "BATCH_TOPIC"}.isdisjoint(declared_env(synth_json["dev-services"], "dev-orchestrator"))


def test_no_worker_settings_without_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = load_environment(ROOT / "environments" / "dev.toml")
    assert "worker" not in service_settings(dev, Wiring.placeholder(dev))


def test_rendered_settings_round_trip_through_each_service(
    environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    for role, settings in service_settings(environment, Wiring.placeholder(environment)).items():
        assert load(role, render(settings), monkeypatch) == settings


def test_the_synths_own_environment_reaches_no_container(
    environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The models read the environment when a service starts; the contract validates only what
    the file and the stack give, so the shell that runs the synth changes no container's env."""
    wiring = Wiring.placeholder(environment)
    clean = {role: container_env(environment, wiring, role) for role in CLOUD_RUN_ROLES}
    shell = {"RATE_LIMIT_BURST": "99", "DAILY_TOKEN_QUOTA": "7", "DEV_TOKEN_SECONDS": "5", "LOG_LEVEL": "DEBUG"}
    for name, value in shell.items():
        monkeypatch.setenv(name, value)
    # What a service started from that shell would read:
    assert as_model(load("gateway", {**clean["gateway"], **shell}, monkeypatch), GatewaySettings).rate_limit_burst == 99
    assert {role: container_env(environment, wiring, role) for role in CLOUD_RUN_ROLES} == clean


def test_a_setting_nothing_sets_is_refused(environment: Environment) -> None:
    # The services' URLs are known (but the orchestrator's, first).
    urls = {
        callee: f"https://{callee}.example" for wired in url_settings(environment).values() for callee in wired.values()
    }
    but_the_orchestrator = {callee: url for callee, url in urls.items() if callee != "orchestrator"}
    with pytest.raises(ContractError) as refused:
        service_settings(environment, Wiring(urls=but_the_orchestrator), only=("gateway", "orchestrator"))
    assert refused.value.problems == [
        "services.gateway: the gateway needs ORCHESTRATOR_URL, which nothing sets",
        "services.orchestrator: BACKENDS: an openai backend needs url",
    ]
    with pytest.raises(ContractError) as refused:
        wiring = Wiring(urls=urls, inference_url="http://10.10.15.250:8000/v1")
        service_settings(environment, wiring, only=("orchestrator",))
    assert refused.value.problems == [
        "services.orchestrator: DATABASE_AUTH=iam needs PGHOST, PGDATABASE, PGUSER, DATABASE_SERVER_CA"
    ]


def test_the_self_hosted_model_is_routed_before_google_models() -> None:
    environment = DEV_ON_CLOUD_RUN  # google/gemma-3-4b-it on a Cloud Run GPU
    orchestrator = as_model(
        service_settings(environment, Wiring.placeholder(environment))["orchestrator"], OrchestratorSettings
    )
    from services.modelcalls.routing import backends_for

    assert backends_for("google/gemma-3-4b-it", orchestrator.routes) == ["self-hosted"]
    assert backends_for("google/gemini-2.5-flash", orchestrator.routes) == ["vertex"]
    assert orchestrator.backends["self-hosted"].auth == "google-id-token"


def test_request_limits_follow_cloud_runs_timeout(environment: Environment) -> None:
    settings = service_settings(environment, Wiring.placeholder(environment))
    assert (
        as_model(settings["gateway"], GatewaySettings).upstream_read_timeout_seconds
        == environment.services.gateway.timeout_seconds
    )
    assert (
        as_model(settings["orchestrator"], OrchestratorSettings).max_request_seconds
        == environment.services.orchestrator.timeout_seconds
    )


def test_prod_spills_its_self_hosted_model_to_vertex_and_its_batch_lines_wait() -> None:
    from services.modelcalls.routing import route_for

    prod = load_environment(ROOT / "environments" / "prod.toml")
    rendered = service_settings(prod, Wiring.placeholder(prod))
    orchestrator = as_model(rendered["orchestrator"], OrchestratorSettings)
    worker = as_model(rendered["worker"], WorkerSettings)
    for routes in (orchestrator.routes, worker.routes):
        route = route_for("meta-llama/Llama-3.1-8B-Instruct", routes)
        assert route is not None
        assert (route.spill_to, route.spill_model, route.spill_waiting, route.batch_spill) == (
            "vertex",
            "google/gemini-3.5-flash-lite",
            8,
            False,
        )
    assert orchestrator.backends["self-hosted"].metrics_url == "http://10.10.15.250:8000/metrics"
    # dev names no spill target: its self-hosted model's requests queue, as before.
    dev = load_environment(ROOT / "environments" / "dev.toml")
    dev_routes = as_model(service_settings(dev, Wiring.placeholder(dev))["orchestrator"], OrchestratorSettings).routes
    dev_route = route_for(dev.inference.gke_server.model, dev_routes)
    assert dev_route is not None and dev_route.spill_to is None
