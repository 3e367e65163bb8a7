"""The edges to the models: the self-hosted server (Cloud Run or GKE) and Vertex AI."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analysis.reachability.cloudrun import (
    RunService,
    attachment,
    reach_internal_service,
    run_service,
    service_target,
)
from analysis.reachability.core import ANYWHERE, Chain, EnvironmentFacts, Json, Net, Verdict, host, net, within
from analysis.reachability.firewall import Packet, allows, firewall_rules
from analysis.reachability.kubernetes import Workload, batch_worker, labels_select, network_policy_admits, workloads
from analysis.reachability.routing import check_route, check_spill_route
from analysis.reachability.synth import Synth


def orchestrator_to_inference(s: Synth, facts: EnvironmentFacts) -> Verdict:
    return _orchestrator_to_inference(s, facts, Chain("orchestrator -> inference"), None)


def regional_orchestrator_to_inference(region: str) -> Callable[[Synth, EnvironmentFacts], Verdict]:
    """The orchestrator of a further region calling the models: on GKE, through the internal load
    balancer in the environment's region, which admits other regions' clients only with global
    access (cloud.google.com/kubernetes-engine/docs/concepts/service-load-balancer-parameters#global_access)."""

    def check(s: Synth, facts: EnvironmentFacts) -> Verdict:
        c = Chain(f"orchestrator ({region}) -> inference")
        if facts.placement == "gke":
            found = _internal_load_balancer(s)
            annotations = ((found[0].get("metadata") or {}).get("annotations") or {}) if found else {}
            c.check(
                annotations.get(GLOBAL_ACCESS) == "true",
                f"the internal load balancer's {GLOBAL_ACCESS} is {annotations.get(GLOBAL_ACCESS, 'unset')!r}"
                + ("" if annotations.get(GLOBAL_ACCESS) == "true" else f": clients in {region} cannot reach it"),
            )
        return _orchestrator_to_inference(s, facts, c, region)

    return check


def _orchestrator_to_inference(s: Synth, facts: EnvironmentFacts, c: Chain, region: str | None) -> Verdict:
    orchestrator = run_service(s, "orchestrator", region=region)
    if not c.present(orchestrator, f"the orchestrator service exists{f' in {region}' if region else ''}"):
        return c.verdict()
    backends, routes = orchestrator.json(c, "BACKENDS"), orchestrator.json(c, "ROUTES")
    if backends is None or routes is None:
        return c.verdict()
    if facts.placement == "cloud_run":
        _to_cloud_run_model(s, c, orchestrator, backends, routes, facts.self_hosted_model)
    else:
        _to_gke_model(s, c, orchestrator, backends, routes, facts.self_hosted_model)
    return c.verdict()


def _to_cloud_run_model(
    s: Synth, c: Chain, orchestrator: RunService, backends: Json, routes: list[Any], model: str
) -> None:
    found = _cloud_run_backend(s, c, backends, "inference", "placement cloud_run")
    if found:
        inference, name = found
        check_route(c, routes, model, name)
        reach_internal_service(s, c, orchestrator, inference)


def orchestrator_to_spill(s: Synth, facts: EnvironmentFacts) -> Verdict:
    """[inference] spill_to = "cloud_run": the GKE pool's spill target, a Cloud Run GPU server
    the orchestrator reaches as it would the self-hosted one placed on Cloud Run."""
    c = Chain("orchestrator -> inference-spill")
    orchestrator = run_service(s, "orchestrator")
    if not c.present(orchestrator, "the orchestrator service exists"):
        return c.verdict()
    backends, routes = orchestrator.json(c, "BACKENDS"), orchestrator.json(c, "ROUTES")
    if backends is None or routes is None:
        return c.verdict()
    found = _cloud_run_backend(s, c, backends, "inference-spill", "spill_to cloud_run")
    if found:
        spill, name = found
        check_spill_route(c, routes, facts.self_hosted_model, name)
        reach_internal_service(s, c, orchestrator, spill)
    return c.verdict()


def _cloud_run_backend(s: Synth, c: Chain, backends: Json, role: str, why: str) -> tuple[RunService, str] | None:
    """The Cloud Run model server ``role`` and the orchestrator's backend that calls it with an ID token."""
    server = run_service(s, role)
    if not c.present(server, f"{why}: Cloud Run service {s.env}-{role}"):
        return None
    target, services_id = service_target(s, server), s.stack_id("services")
    names = [n for n, b in backends.items() if s.refers_to(services_id, (b or {}).get("url"), target, "uri")]
    if not c.check(bool(names), f"BACKENDS: {', '.join(names) or 'no backend'} points at {server.name}'s URI"):
        return None
    backend = backends[names[0]]
    # A Cloud Run server that admits only the orchestrator's identity needs its ID token
    # (cloud.google.com/run/docs/authenticating/service-to-service).
    c.check(
        backend.get("auth") == "google-id-token",
        f"BACKENDS.{names[0]}: auth {backend.get('auth', 'none')!r}"
        + ("" if backend.get("auth") == "google-id-token" else ": no ID token, so Cloud Run answers 403"),
    )
    return server, names[0]


# The Service annotation of an internal load balancer's global access (cited above).
GLOBAL_ACCESS = "networking.gke.io/internal-load-balancer-allow-global-access"


def _internal_load_balancer(s: Synth) -> tuple[Json, str] | None:
    for _, service in s.resources("inference", "kubernetes_service_v1").items():
        annotations = (service.get("metadata") or {}).get("annotations") or {}
        if (service.get("spec") or {}).get("type") == "LoadBalancer" and (
            annotations.get("networking.gke.io/load-balancer-type") == "Internal"
        ):
            return service, str(s.value(s.stack_id("inference"), service["spec"].get("load_balancer_ip", "")))
    return None


@dataclass(frozen=True)
class ModelTarget:
    """The self-hosted model server behind its internal load balancer, as a caller's BACKENDS reach it."""

    spec: Json  # the load balancer Service's spec
    destination: Net  # its address
    port: int
    pod: Workload
    target_port: int


def _gke_model_target(
    s: Synth, c: Chain, caller_stack: str, backends: Json, routes: list[Any], model: str
) -> ModelTarget | None:
    if not c.check(s.has("inference"), f"placement gke: stack {s.stack_id('inference')}"):
        return None
    # cloud.google.com/kubernetes-engine/docs/concepts/service-load-balancer-parameters: the
    # annotation networking.gke.io/load-balancer-type "Internal" makes an internal passthrough
    # Network Load Balancer; loadBalancerIP sets its address; loadBalancerSourceRanges limits sources.
    found = _internal_load_balancer(s)
    if not c.present(found, "an internal passthrough load balancer Service (type LoadBalancer, Internal)"):
        return None
    lb, address = found
    spec, inference_id = lb["spec"], s.stack_id("inference")
    address_ref = s.ref(inference_id, spec.get("load_balancer_ip"))
    reserved = s.config(address_ref) if address_ref and address_ref.type == "google_compute_address" else {}
    subnet_ref = s.ref(address_ref.stack, reserved.get("subnetwork")) if address_ref and reserved else None
    subnet = s.config(subnet_ref) if subnet_ref else {}
    in_subnet = bool(subnet) and address.count(".") == 3 and within(host(address), [net(subnet["ip_cidr_range"])])
    if not c.check(
        reserved.get("address_type") == "INTERNAL" and in_subnet,
        f"its loadBalancerIP {address} is the reserved internal address {reserved.get('name', '?')}"
        f" in subnet {subnet.get('name', '?')} ({subnet.get('ip_cidr_range', '?')})",
    ):
        return None
    service_ports = {int(p["port"]): p for p in spec.get("port") or ()}

    names = []
    for name, backend in backends.items():
        url = s.render(caller_stack, str((backend or {}).get("url", "")))
        match = re.fullmatch(r"https?://([^/:]+)(?::(\d+))?(/.*)?", url)
        if (backend or {}).get("kind") == "openai" and match and match[1] == address:
            names.append((name, url, int(match[2] or (443 if url.startswith("https") else 80))))
    if not c.check(bool(names), f"BACKENDS: {', '.join(n for n, *_ in names) or 'no backend'} points at {address}"):
        return None
    name, url, port = names[0]
    listed = ", ".join(map(str, service_ports)) or "none"
    if not c.check(
        port in service_ports,
        f"BACKENDS.{name} = {url}: port {port} is a port of Service {lb['metadata'].get('name')} ({listed})",
    ):
        return None
    check_route(c, routes, model, name)

    pods = [w for w in workloads(s) if labels_select(spec.get("selector"), w.labels)]
    if not c.check(bool(pods), f"the Service's selector {spec.get('selector')} selects the model server's pods"):
        return None
    pod = pods[0]
    target_port = pod.port(service_ports[port].get("target_port", port))
    if not c.check(target_port in pod.numbers, f"Service port {port} -> container port {target_port}"):
        return None
    assert target_port is not None
    return ModelTarget(spec, host(address), port, pod, target_port)


def _model_server_admits(s: Synth, c: Chain, target: ModelTarget, source: Net) -> None:
    """The load balancer's source ranges and the pods' NetworkPolicy admit ``source``."""
    spec = target.spec
    ranges = [net(r) for r in spec.get("load_balancer_source_ranges") or ()] or [ANYWHERE]
    c.check(
        within(source, ranges),
        f"loadBalancerSourceRanges {', '.join(map(str, ranges))} include {source}",
    )
    admitted, why = network_policy_admits(s, target.pod, target.target_port, cidr=source)
    c.check(admitted, why)
    if admitted and "ipBlock" in why:
        # The pods see the client's own address only with externalTrafficPolicy Local; with
        # Cluster a node may source-NAT it (kubernetes.io/docs/tutorials/services/source-ip/,
        # cloud.google.com/kubernetes-engine/docs/how-to/service-parameters#externalTrafficPolicy).
        policy = spec.get("external_traffic_policy", "Cluster")
        c.check(
            policy == "Local", f"externalTrafficPolicy {policy}: the pods see the caller's own address for the ipBlock"
        )


def _to_gke_model(s: Synth, c: Chain, orchestrator: RunService, backends: Json, routes: list[Any], model: str) -> None:
    target = _gke_model_target(s, c, s.stack_id("services"), backends, routes, model)
    if target is None:
        return
    attached = attachment(s, c, orchestrator)
    if attached is None:
        return
    destination, port = target.destination, target.port
    if not c.check(
        attached.routes_into_vpc(destination), f"{orchestrator.name}: {attached.describe_routing(destination)}"
    ):
        return
    rules = firewall_rules(s, attached.network)
    allows(c, rules, Packet("EGRESS", attached.source, destination, port, target_tags=attached.tags))
    # Ingress rules cannot match Direct VPC egress by tag; they match its subnet's range
    # (cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations). Connector VMs' tags
    # can be ingress sources (cloud.google.com/vpc/docs/serverless-vpc-access#restrict-access).
    source_tags = attached.tags if attached.connector else frozenset()
    allows(c, rules, Packet("INGRESS", attached.source, destination, port, source_tags=source_tags))
    _model_server_admits(s, c, target, attached.source)


def worker_to_inference(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("worker -> inference")
    worker = batch_worker(s, c)
    if worker is None:
        return c.verdict()
    backends, routes = worker.json(c, "BACKENDS"), worker.json(c, "ROUTES")
    if backends is None or routes is None:
        return c.verdict()
    if facts.placement != "gke":
        c.fail("the worker reaches a self-hosted model on GKE only; this check knows no other placement")
        return c.verdict()
    target = _gke_model_target(s, c, worker.stack_id, backends, routes, facts.self_hosted_model)
    if target is None:
        return c.verdict()
    # Both clusters are in one VPC: the Pods' packets meet its egress rules on the way out and the
    # model nodes' ingress rules on the way in (a passthrough load balancer keeps the source).
    rules = firewall_rules(s, worker.network)
    allows(c, rules, Packet("EGRESS", worker.source, target.destination, target.port))
    allows(c, rules, Packet("INGRESS", worker.source, target.destination, target.port))
    _model_server_admits(s, c, target, worker.source)
    return c.verdict()
