"""The topology is declared once (hybrid/topology.py): a service added there alone gets its
firewall flows, names, URL wiring, reachability edges and start order."""

from __future__ import annotations

import json
from dataclasses import replace

import cdktf
import pytest

from hybrid import service_contract, topology
from hybrid.config import Environment, load_environment
from hybrid.service_contract import Wiring, run_app_url, service_settings, url_settings
from hybrid.topology import TOPOLOGY, Call, Edge, Service, for_environment
from iac import ROOT, resources
from scripts.deploy_steps import DEPLOY_STEPS
from services.orchestrator.settings import OrchestratorSettings
from stacks.network import NetworkStack, firewall_rules
from variants import DEV_ENV, DEV_ON_CLOUD_RUN

PROD = ROOT / "environments" / "prod.toml"
# prod's firewall as the declared topology makes it, before any test adds to it.
PROD_RULES = {rule.name for rule in firewall_rules(load_environment(PROD))}


class CallsReranker(OrchestratorSettings):
    """The orchestrator's settings as its code would declare the new service's URL."""

    reranker_url: str


@pytest.fixture
def reranker(monkeypatch) -> Environment:
    """prod, loaded with one more internal Cloud Run service in the topology: the orchestrator
    calls it, and it reads the database. Its code (the orchestrator's setting) is a stand-in."""
    monkeypatch.setitem(service_contract.RUNTIME_SETTINGS, "orchestrator", CallsReranker)
    monkeypatch.setattr(
        topology,
        "TOPOLOGY",
        replace(
            TOPOLOGY,
            services={**TOPOLOGY.services, "reranker": Service("cloud_run")},
            calls=(
                *TOPOLOGY.calls,
                Call("orchestrator", "reranker", "https"),
                Call("reranker", "postgres", "postgres", why="The reranker reads the documents' embeddings."),
            ),
        ),
    )
    return load_environment(PROD)


def test_a_new_service_gets_its_firewall_flow_in_the_synthesized_network(reranker):
    network = json.loads(cdktf.Testing.synth(NetworkStack(cdktf.Testing.app(), reranker)))
    rules = {rule["name"]: rule for rule in resources(network, "google_compute_firewall").values()}

    # Only an egress rule: Cloud SQL is Google's, peered in; the orchestrator's call goes by
    # run.app through private.googleapis.com, which a rule for every workload allows already.
    assert set(rules) - PROD_RULES == {"prod-allow-reranker-egress-postgres"}
    rule = rules["prod-allow-reranker-egress-postgres"]
    assert (rule["direction"], rule["target_tags"], rule["destination_ranges"]) == (
        "EGRESS",
        ["prod-run-reranker"],
        [str(reranker.network.psa_cidr)],
    )
    assert rule["allow"] == [{"protocol": "tcp", "ports": ["5432"]}]


def test_a_new_service_gets_its_names_checked(reranker):
    names = reranker.names
    assert (names.service["reranker"], names.run_tag["reranker"]) == ("prod-reranker", "prod-run-reranker")
    checked = names.rules()
    assert checked["Cloud Run service reranker"][0] == "prod-reranker"
    assert checked["reranker network tag"][0] == "prod-run-reranker"
    assert checked["allow-reranker-egress-postgres firewall rule"][0] == "prod-allow-reranker-egress-postgres"


def test_a_new_service_is_wired_to_its_caller(reranker):
    assert url_settings(reranker)["orchestrator"] == {"reranker_url": "reranker"}
    wiring = replace(Wiring.placeholder(reranker), urls={"reranker": "https://reranker.example"})

    settings = service_settings(reranker, wiring, only=("orchestrator",))["orchestrator"]

    assert isinstance(settings, CallsReranker) and settings.reranker_url == "https://reranker.example"
    assert Wiring.placeholder(reranker).urls["reranker"] == run_app_url(
        "prod-reranker", "PROJECT_NUMBER", reranker.region
    )


def test_a_caller_that_does_not_read_the_new_url_is_refused(reranker, monkeypatch):
    monkeypatch.setitem(service_contract.RUNTIME_SETTINGS, "orchestrator", OrchestratorSettings)
    with pytest.raises(service_contract.ContractError, match="RERANKER_URL: Extra inputs are not permitted"):
        service_settings(reranker, Wiring.placeholder(reranker), only=("orchestrator",))


def test_a_new_service_has_its_edges_for_the_reachability_checker(reranker):
    edges = for_environment(reranker).required_edges()
    assert Edge("orchestrator", "reranker", "https", "run.app") in edges
    assert Edge("reranker", "postgres", "postgres", "psa") in edges
    assert Edge("browser", "reranker", "https", "browser") not in edges  # internal


def test_a_new_service_starts_before_its_caller(reranker):
    order = topology.declared().start_order()
    assert order.index("reranker") < order.index("orchestrator") < order.index("gateway") < order.index("frontend")


def test_the_declared_order_is_the_rehearsals():
    assert TOPOLOGY.start_order() == ("orchestrator", "gateway", "frontend")


def test_optional_tables_leave_their_services_and_flows_out():
    dev, prod = for_environment(DEV_ENV), for_environment(load_environment(PROD))
    assert "worker" not in dev.services and not {"redis", "batch-lines"} & dev.backends.keys()
    assert {"worker", "redis", "batch-lines"} <= prod.services.keys() | prod.backends.keys()
    assert Edge("orchestrator", "vertex-ai", "https", "google_api") in dev.required_edges()
    assert Edge("orchestrator", "batch-lines", "https", "google_api") not in dev.required_edges()
    dev_rules = {rule.name for rule in firewall_rules(DEV_ENV)}
    assert not {name for name in dev_rules if "workers" in name or "redis" in name}
    assert {flow.section for flow in prod.firewall_flows()} == {"services", "workers", "redis"}


def test_the_model_servers_on_cloud_run_are_called_by_run_app():
    edges = for_environment(DEV_ON_CLOUD_RUN).required_edges()
    assert Edge("orchestrator", "inference", "https", "run.app") in edges
    assert Edge("orchestrator", "inference", "inference", "ilb") in for_environment(DEV_ENV).required_edges()
    # Its URL goes into the orchestrator's backends, not into a setting of its own.
    assert "inference_url" not in url_settings(DEV_ON_CLOUD_RUN).get("orchestrator", {})
    # No rules to an internal load balancer that is not there (run.app goes by private.googleapis.com).
    on_cloud_run = {rule.name for rule in firewall_rules(DEV_ON_CLOUD_RUN)}
    on_gke = {rule.name for rule in firewall_rules(DEV_ENV)}
    assert on_gke - on_cloud_run == {"dev-allow-cloud-run-to-inference", "dev-allow-orchestrator-egress-inference"}


def test_cloud_run_calls_to_one_destination_share_its_rule():
    flows = [f for f in TOPOLOGY.firewall_flows() if f.destination.name == "postgres" and f.source.tags]
    assert [(f.egress_key, f.source.tags) for f in flows] == [
        ("allow-orchestrator-egress-postgres", ("orchestrator", "db-bootstrap"))
    ]


def test_each_built_service_has_its_settings_model_and_image():
    assert set(service_contract.RUNTIME_SETTINGS) == set(TOPOLOGY.built())
    assert DEPLOY_STEPS[1].images == TOPOLOGY.built()
    assert all((ROOT / "services" / name / "settings.py").is_file() for name in TOPOLOGY.built())
