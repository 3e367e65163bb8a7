"""Kubernetes objects: the model server's pods and the NetworkPolicies that select them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analysis.reachability.core import Caller, Chain, Json, Net, net, overlapping
from analysis.reachability.googleapis import api_addresses, from_subnet
from analysis.reachability.synth import Ref, Synth


def labels_select(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


@dataclass(frozen=True)
class Workload:
    """The model server's pods: namespace, labels, named container ports."""

    namespace: str
    labels: dict[str, str]
    ports: dict[str, int]  # container port name -> number
    numbers: frozenset[int]

    def port(self, value: Any) -> int | None:
        """A port given by number or by container port name."""
        text = str(value)
        return int(text) if text.isdigit() else self.ports.get(text)


def workloads(s: Synth) -> list[Workload]:
    stack_id, found = s.stack_id("inference"), []
    for _, deployment in s.resources("inference", "kubernetes_deployment_v1").items():
        template = (deployment.get("spec") or {}).get("template") or {}
        containers = (template.get("spec") or {}).get("container") or ()
        ports = [p for container in containers for p in container.get("port") or ()]
        found.append(
            Workload(
                namespace=str(s.value(stack_id, (deployment.get("metadata") or {}).get("namespace", "default"))),
                labels=(template.get("metadata") or {}).get("labels") or {},
                ports={p["name"]: int(p["container_port"]) for p in ports if p.get("name")},
                numbers=frozenset(int(p["container_port"]) for p in ports),
            )
        )
    return found


def _policy_port_matches(workload: Workload, entry: Mapping[str, Any], port: int) -> bool:
    if str(entry.get("protocol", "TCP")).upper() != "TCP":
        return False
    if entry.get("port") is None:
        return True  # every port of the protocol
    low = workload.port(entry["port"])
    high = int(entry.get("end_port") or low or 0)
    return low is not None and low <= port <= high


def network_policy_admits(
    s: Synth,
    workload: Workload,
    port: int,
    *,
    cidr: Net | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> tuple[bool, str]:
    """Whether the NetworkPolicies selecting ``workload`` admit a source on ``port`` (TCP).

    kubernetes.io/docs/concepts/services-networking/network-policies: pods no policy selects
    for Ingress admit everything; once selected, a connection is admitted if any ingress rule
    of any selecting policy allows it. A rule without ``from`` admits every source, without
    ``ports`` every port; the peers of ``from`` are alternatives; an ``ipBlock`` matches
    addresses (minus ``except``), a ``namespaceSelector`` the labels of the source's namespace.
    Named ports are resolved through the pod's container ports."""
    stack_id, selecting = s.stack_id("inference"), []
    for _, policy in s.resources("inference", "kubernetes_network_policy_v1").items():
        spec = policy.get("spec") or {}
        namespace = str(s.value(stack_id, (policy.get("metadata") or {}).get("namespace", "default")))
        types = spec.get("policy_types") or ["Ingress"]
        if (
            namespace == workload.namespace
            and "Ingress" in types
            and labels_select((spec.get("pod_selector") or {}).get("match_labels"), workload.labels)
        ):
            selecting.append(policy)
    source = str(cidr) if cidr else f"namespace {dict(namespace_labels or {})}"
    if not selecting:
        return True, f"no NetworkPolicy selects the pods: {source} is admitted on {port}"
    for policy in selecting:
        name = (policy.get("metadata") or {}).get("name", "?")
        for rule in (policy.get("spec") or {}).get("ingress") or ():
            ports = rule.get("ports")
            if ports and not any(_policy_port_matches(workload, p, port) for p in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True, f"NetworkPolicy {name} admits every source on {port}"
            for peer in peers:
                block, namespaces, pods = peer.get("ip_block"), peer.get("namespace_selector"), peer.get("pod_selector")
                if (
                    cidr is not None
                    and block
                    and cidr.subnet_of(net(block["cidr"]))
                    and not overlapping(cidr, [net(e) for e in block.get("except") or ()])
                ):
                    return True, f"NetworkPolicy {name} admits ipBlock {block['cidr']} on {port}"
                if (
                    namespace_labels is not None
                    and namespaces is not None
                    and not (pods or {}).get("match_labels")
                    and not namespaces.get("match_expressions")
                    and labels_select(namespaces.get("match_labels"), namespace_labels)
                ):
                    selector = namespaces.get("match_labels") or {}
                    return True, f"NetworkPolicy {name} admits namespaceSelector {selector} on {port}"
    return False, f"no NetworkPolicy selecting the pods admits {source} on {port}"


# ------------------------------------------------------------------------------------------
# The batch worker's Pods


@dataclass(frozen=True)
class PodCaller(Caller):
    """A Deployment's Pods on a VPC-native GKE cluster. To other VPC ranges their packets keep the
    Pod's own address: GKE's ip-masq-agent leaves RFC 1918 destinations unmasqueraded
    (cloud.google.com/kubernetes-engine/docs/concepts/ip-masquerade-agent)."""

    network: Ref
    source: Net  # the cluster's Pod range
    subnet: Json  # the cluster's subnet, whose primary range the nodes take their addresses from


def batch_worker(s: Synth, c: Chain) -> PodCaller | None:
    """The batch worker's Deployment in the workers' Kubernetes layer, with its cluster's network."""
    k8s_id = s.stack_id("workers-k8s")
    deployments = [
        d
        for d in s.resources("workers-k8s", "kubernetes_deployment_v1").values()
        if (d.get("metadata") or {}).get("name") == "worker"
    ]
    clusters = list(s.resources("workers", "google_container_cluster").values())
    if not c.check(bool(deployments) and bool(clusters), f"the worker Deployment in {k8s_id} and its cluster"):
        return None
    pod = ((deployments[0].get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("container") or ()
    env = {e.get("name"): e.get("value") for container in containers[:1] for e in container.get("env") or ()}
    # Workload Identity: the Pods act as the Google account their Kubernetes service account names
    # (cloud.google.com/kubernetes-engine/docs/how-to/workload-identity).
    account_ref = s.ref(k8s_id, pod.get("service_account_name"))
    account = s.config(account_ref) if account_ref else {}
    email = ((account.get("metadata") or {}).get("annotations") or {}).get("iam.gke.io/gcp-service-account")
    who = s.principal(account_ref.stack if account_ref else k8s_id, email)
    if not c.check(who.startswith("serviceAccount:"), f"the worker's Pods act as {who} (Workload Identity)"):
        return None
    cluster, workers_id = clusters[0], s.stack_id("workers")
    subnet_ref, network_ref = s.ref(workers_id, cluster.get("subnetwork")), s.ref(workers_id, cluster.get("network"))
    if not c.check(subnet_ref is not None and network_ref is not None, "the workers cluster's VPC and subnet resolve"):
        return None
    assert subnet_ref is not None and network_ref is not None
    subnet = s.config(subnet_ref)
    pods_range = (cluster.get("ip_allocation_policy") or {}).get("cluster_secondary_range_name")
    ranges = {r.get("range_name"): net(r["ip_cidr_range"]) for r in subnet.get("secondary_ip_range") or ()}
    if not c.check(pods_range in ranges, f"the workers' Pods range {pods_range} is a range of {subnet.get('name')}"):
        return None
    c.ok(f"the worker's Pods send from {ranges[pods_range]} ({subnet.get('name')}'s {pods_range})")
    return PodCaller("worker", k8s_id, env, who, network_ref, ranges[pods_range], subnet)


# ------------------------------------------------------------------------------------------
# Kubernetes objects


def pods_google_api_path(s: Synth, c: Chain, pods: PodCaller, hostname: str) -> None:
    """The Pods call the Google API at ``hostname`` through their subnet. To a public address
    ip-masq-agent rewrites a Pod's source to its node's, outside the RFC 1918 ranges it leaves
    alone (cloud.google.com/kubernetes-engine/docs/concepts/ip-masquerade-agent), so both the
    nodes' range and the Pods' range must be let out."""
    destinations, what = api_addresses(s, pods.network, hostname)
    c.ok(f"{pods.name}: {hostname} resolves to {what}")
    sources = [net(pods.subnet["ip_cidr_range"]), pods.source]
    from_subnet(s, c, pods.network, pods.subnet, sources, destinations)
