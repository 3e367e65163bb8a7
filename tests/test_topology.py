"""The topology is declared once (hybrid/topology.py): a service added there alone gets its
firewall flows, names, URL wiring, reachability edges and start order."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from types import ModuleType
from typing import Literal

import cdktf
import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from analysis.cost.estimate import estimate
from analysis.cost.prices import load_prices
from hybrid import service_contract, topology
from hybrid.config import (
    CloudRunServices,
    CloudRunSizing,
    ConfigError,
    Environment,
    load_environment,
    parse_environment,
    read_toml,
)
from hybrid.service_contract import Wiring, run_app_url, service_settings, url_settings
from hybrid.topology import TOPOLOGY, Call, Edge, Service, for_environment
from iac import ROOT, Json, resources
from scripts.deploy_steps import DEPLOY_STEPS
from services.orchestrator.settings import OrchestratorSettings
from stacks.database import DatabaseStack
from stacks.network import NetworkStack, firewall_rules
from stacks.registry import RegistryStack
from stacks.services import ServicesStack
from variants import DEV_ENV, DEV_ON_CLOUD_RUN

PROD = ROOT / "environments" / "prod.toml"
# prod's firewall as the declared topology makes it, before any test adds to it.
PROD_RULES = {rule.name for rule in firewall_rules(load_environment(PROD))}


class CallsEmbedder(OrchestratorSettings):
    """The orchestrator's settings as its code would declare the new service's URL."""

    embedder_url: str
    embedder_auth: Literal["google-id-token", "none"] = "none"


class EmbedderSettings(BaseSettings):
    """The new service's own settings model, as services/embedder/settings.py would define it."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")
    top_k: int = 20


def settings_module(**models: type[BaseSettings]) -> ModuleType:
    """A stand-in for a service's settings.py, defining ``models``."""
    module = ModuleType("settings")
    module.__dict__.update(models)
    return module


@pytest.fixture
def embedder(monkeypatch: pytest.MonkeyPatch) -> Environment:
    """prod, with one more internal Cloud Run service in the topology: the orchestrator calls it,
    and it reads the database. Its code (its settings, and the orchestrator's) is a stand-in,
    found where the contract's convention looks: services/<name>/settings.py's <Name>Settings."""
    monkeypatch.setitem(sys.modules, "services.embedder.settings", settings_module(EmbedderSettings=EmbedderSettings))
    monkeypatch.setitem(
        sys.modules, "services.orchestrator.settings", settings_module(OrchestratorSettings=CallsEmbedder)
    )
    monkeypatch.setattr(
        topology,
        "TOPOLOGY",
        replace(
            TOPOLOGY,
            services={**TOPOLOGY.services, "embedder": Service("cloud_run", built=True)},
            calls=(
                *TOPOLOGY.calls,
                Call("orchestrator", "embedder", "https"),
                Call("embedder", "postgres", "postgres", why="The embedder stores the documents' embeddings."),
            ),
        ),
    )
    return parse_environment(with_embedder({"max_instances": 20}), PROD)


def with_embedder(table: Json) -> Json:
    """prod's file with a [services.embedder] table: at the defaults' 100 instances its Direct
    VPC egress would not fit prod's run subnet beside the others'."""
    raw = read_toml(PROD)
    raw["services"]["embedder"] = table
    return raw


def test_a_new_service_gets_its_firewall_flow_in_the_synthesized_network(embedder: Environment) -> None:
    network = json.loads(cdktf.Testing.synth(NetworkStack(cdktf.Testing.app(), embedder)))
    rules = {rule["name"]: rule for rule in resources(network, "google_compute_firewall").values()}

    # Only an egress rule: Cloud SQL is Google's, peered in; the orchestrator's call goes by
    # run.app through private.googleapis.com, which a rule for every workload allows already.
    assert set(rules) - PROD_RULES == {"prod-allow-embedder-egress-postgres"}
    rule = rules["prod-allow-embedder-egress-postgres"]
    assert (rule["direction"], rule["target_tags"], rule["destination_ranges"]) == (
        "EGRESS",
        ["prod-run-embedder"],
        [str(embedder.network.psa_cidr)],
    )
    assert rule["allow"] == [{"protocol": "tcp", "ports": ["5432"]}]


def test_a_new_service_gets_its_names_checked(embedder: Environment) -> None:
    names = embedder.names
    assert (names.service["embedder"], names.run_tag["embedder"]) == ("prod-embedder", "prod-run-embedder")
    checked = names.rules()
    assert checked["Cloud Run service embedder"][0] == "prod-embedder"
    assert checked["embedder network tag"][0] == "prod-run-embedder"
    assert checked["allow-embedder-egress-postgres firewall rule"][0] == "prod-allow-embedder-egress-postgres"


def test_a_new_service_is_wired_to_its_caller(embedder: Environment) -> None:
    assert url_settings(embedder)["orchestrator"]["embedder_url"] == "embedder"
    wiring = Wiring.placeholder(embedder).with_url("embedder", "https://embedder.example")

    settings = service_settings(embedder, wiring, only=("orchestrator",))["orchestrator"]

    assert isinstance(settings, CallsEmbedder) and settings.embedder_url == "https://embedder.example"
    # Through run.invoker, with a Google ID token, though the model's own default is none.
    assert settings.embedder_auth == "google-id-token"
    assert Wiring.placeholder(embedder).urls["embedder"] == run_app_url(
        "prod-embedder", "PROJECT_NUMBER", embedder.region
    )


def test_a_caller_that_does_not_read_the_new_url_is_refused(
    embedder: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        sys.modules, "services.orchestrator.settings", settings_module(OrchestratorSettings=OrchestratorSettings)
    )
    with pytest.raises(service_contract.ContractError, match="EMBEDDER_URL: Extra inputs are not permitted"):
        service_settings(embedder, Wiring.placeholder(embedder), only=("orchestrator",))


def test_a_new_service_has_its_edges_for_the_reachability_checker(embedder: Environment) -> None:
    edges = for_environment(embedder).required_edges()
    assert Edge("orchestrator", "embedder", "https", "run.app") in edges
    assert Edge("embedder", "postgres", "postgres", "psa") in edges
    assert Edge("browser", "embedder", "https", "browser") not in edges  # internal


def test_a_new_service_starts_before_its_caller(embedder: Environment) -> None:
    order = topology.declared().start_order()
    assert order.index("embedder") < order.index("orchestrator") < order.index("gateway") < order.index("frontend")


def test_the_declared_order_is_the_rehearsals() -> None:
    order = TOPOLOGY.start_order()
    assert order.index("orchestrator") < order.index("gateway") < order.index("frontend")
    # Every Cloud Run service starts after the Cloud Run services it calls.
    run = set(order)
    for call in TOPOLOGY.calls:
        if {call.source, call.destination} <= run and not call.from_browser:
            assert order.index(call.destination) < order.index(call.source), call


def test_optional_tables_leave_their_services_and_flows_out() -> None:
    dev, prod = for_environment(DEV_ENV), for_environment(load_environment(PROD))
    assert "worker" not in dev.services and not {"redis", "batch-lines"} & dev.backends.keys()
    assert {"worker", "redis", "batch-lines"} <= prod.services.keys() | prod.backends.keys()
    assert Edge("orchestrator", "vertex-ai", "https", "google_api") in dev.required_edges()
    assert Edge("orchestrator", "batch-lines", "https", "google_api") not in dev.required_edges()
    dev_rules = {rule.name for rule in firewall_rules(DEV_ENV)}
    assert not {name for name in dev_rules if "workers" in name or "redis" in name}
    assert {flow.section for flow in prod.firewall_flows()} == {"services", "workers", "redis"}


def test_the_model_servers_on_cloud_run_are_called_by_run_app() -> None:
    edges = for_environment(DEV_ON_CLOUD_RUN).required_edges()
    assert Edge("orchestrator", "inference", "https", "run.app") in edges
    assert Edge("orchestrator", "inference", "inference", "ilb") in for_environment(DEV_ENV).required_edges()
    # Its URL goes into the orchestrator's backends, not into a setting of its own.
    assert "inference_url" not in url_settings(DEV_ON_CLOUD_RUN).get("orchestrator", {})
    # No rules to an internal load balancer that is not there (run.app goes by private.googleapis.com).
    on_cloud_run = {rule.name for rule in firewall_rules(DEV_ON_CLOUD_RUN)}
    on_gke = {rule.name for rule in firewall_rules(DEV_ENV)}
    # (dev's own file is in connector mode, whose rule to the internal load balancer the variant has not.)
    assert on_gke - on_cloud_run == {
        "dev-allow-cloud-run-to-inference",
        "dev-allow-orchestrator-egress-inference",
        "dev-allow-gateway-egress-orchestrator-lb",
    }


def test_cloud_run_calls_to_one_destination_share_its_rule() -> None:
    flows = [f for f in TOPOLOGY.firewall_flows() if f.destination.name == "postgres" and f.source.tags]
    assert [(f.egress_key, f.source.tags) for f in flows] == [
        ("allow-orchestrator-egress-postgres", ("orchestrator", "db-bootstrap"))
    ]


def test_each_built_service_has_its_settings_model_and_image() -> None:
    for name in TOPOLOGY.built():
        model = service_contract.settings_model(name)
        package = name.replace("-", "_")
        camel = "".join(part.capitalize() for part in package.split("_"))
        assert (model.__module__, model.__name__) == (f"services.{package}.settings", f"{camel}Settings")
    assert service_contract.settings_model("orchestrator") is OrchestratorSettings
    assert DEPLOY_STEPS[1].images == TOPOLOGY.built()


def test_a_built_service_without_its_settings_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "services.embedder.settings", settings_module(Settings=EmbedderSettings))
    with pytest.raises(TypeError, match=re.escape("services/embedder/settings.py: must define EmbedderSettings")):
        service_contract.settings_model("embedder")


def services_stack(env: Environment) -> Json:
    app = cdktf.Testing.app()
    network = NetworkStack(app, env)
    stack = ServicesStack(app, env, network, RegistryStack(app, env, network), DatabaseStack(app, env, network))
    synthesized: Json = json.loads(cdktf.Testing.synth(stack))
    return synthesized


def key_of(stack: Json, kind: str, **where: str) -> str:
    """The Terraform address (``kind.key``) of the one ``kind`` resource with these values."""
    (key,) = [k for k, r in resources(stack, kind).items() if all(r.get(f) == v for f, v in where.items())]
    return f"{kind}.{key}"


def test_a_new_service_is_built_by_the_services_stack(embedder: Environment) -> None:
    stack = services_stack(embedder)
    service_key = key_of(stack, "google_cloud_run_v2_service", name="prod-embedder")
    service = resources(stack, "google_cloud_run_v2_service")[service_key.split(".")[1]]

    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    template = service["template"]
    (container,) = template["containers"]
    assert container["image"].endswith("/prod-services/embedder:" + embedder.services.image_tag)
    # Its env is its settings model's, as the contract renders it: the stack decides none of it.
    assert "env" not in container
    assert template["vpc_access"]["network_interfaces"][0]["tags"] == ["prod-run-embedder"]
    # It logs in to Cloud SQL: its account is born in the database layer, with its IAM database user.
    app = cdktf.Testing.app()
    database = json.loads(cdktf.Testing.synth(DatabaseStack(app, embedder, NetworkStack(app, embedder))))
    account = key_of(database, "google_service_account", account_id="prod-embedder")
    assert template["service_account"] == f"${{{account}.email}}"
    assert not [a for a in resources(stack, "google_service_account").values() if a["account_id"] == "prod-embedder"]
    users = {u["name"] for u in resources(database, "google_sql_user").values()}
    assert f'${{trimsuffix({account}.email, ".gserviceaccount.com")}}' in users
    # The orchestrator alone may invoke it, and is told its URL and to send an ID token.
    grants = [
        (g["role"], g["member"])
        for g in resources(stack, "google_cloud_run_v2_service_iam_member").values()
        if g["name"] == f"${{{service_key}.name}}"
    ]
    orchestrator_account = key_of(database, "google_service_account", account_id="prod-orchestrator")
    assert grants == [("roles/run.invoker", f"${{{orchestrator_account}.member}}")]
    orchestrator = next(
        s for s in resources(stack, "google_cloud_run_v2_service").values() if s["name"] == "prod-orchestrator"
    )
    urls = {e["name"]: e["value"] for e in orchestrator["template"]["containers"][0]["env"]}
    assert (urls["EMBEDDER_URL"], urls["EMBEDDER_AUTH"]) == (f"${{{service_key}.uri}}", "google-id-token")


def test_a_new_service_has_a_table_of_its_own_or_the_defaults(embedder: Environment) -> None:
    sized = parse_environment(with_embedder({"max_instances": 3, "env": {"TOP_K": "5"}}), PROD)
    assert sized.services.sizing("embedder").max_instances == 3
    assert service_contract.container_env(sized, Wiring.placeholder(sized), "embedder") == {"TOP_K": "5"}
    # Internal unless the topology makes it public, with a table or without.
    default = CloudRunServices(deletion_protection=True).sizing("embedder")
    assert default.model_dump() == CloudRunSizing(ingress="INGRESS_TRAFFIC_INTERNAL_ONLY").model_dump()
    assert sized.services.sizing("embedder").ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY"

    with pytest.raises(
        ConfigError,
        match=re.escape(
            "services.embedder.env.TOP_N: unknown setting (did you mean 'TOP_K'?): must be one the embedder reads: TOP_K"
        ),
    ):
        parse_environment(with_embedder({"max_instances": 3, "env": {"TOP_N": "5"}}), PROD)
    with pytest.raises(ConfigError, match=re.escape("services.embedder.cpu = 3: must be 1, 2, 4, 6 or 8")):
        parse_environment(with_embedder({"max_instances": 3, "cpu": 3}), PROD)
    raw = with_embedder({})
    raw["services"]["embeder"] = raw["services"].pop("embedder")
    with pytest.raises(
        ConfigError,
        match=r"(?m)services\.embeder: unknown key \(did you mean 'embedder'\?\): must be one of .*orchestrator, .*embedder$",
    ):
        parse_environment(raw, PROD)


def test_a_new_service_is_in_the_cost_estimate(embedder: Environment) -> None:
    est = estimate(embedder, load_prices(embedder.region))
    assert any(i.stack == "prod-services" and i.resource == "Cloud Run prod-embedder" for i in est.items)


def test_connector_mode_calls_the_orchestrator_through_the_internal_load_balancer() -> None:
    direct, connector = for_environment(DEV_ON_CLOUD_RUN), for_environment(DEV_ENV)
    assert DEV_ENV.network.egress == "connector"
    assert Edge("gateway", "orchestrator", "https", "run.app") in direct.required_edges()
    assert Edge("gateway", "orchestrator", "https", "internal_alb") in connector.required_edges()
    assert connector.behind_internal_lb() == ("orchestrator",) and direct.behind_internal_lb() == ()
    # The gateway keeps its orchestrator_url (now the load balancer's) and its ID token.
    assert connector.url_settings()["gateway"] == {"orchestrator_url": "orchestrator"}
    assert connector.id_token_settings()["gateway"] == {"orchestrator_auth": "orchestrator"}
    (flow,) = [f for f in connector.firewall_flows() if f.destination.name == "orchestrator-lb"]
    assert (flow.port, flow.destination.ranges, flow.source.tags, flow.ingress_key) == (
        "http",
        ("internal_lb_cidr",),
        ("gateway",),
        None,
    )
