"""The models' cluster: its nodes' way out (Cloud NAT) and the metrics scrape."""

from __future__ import annotations

from analysis.reachability.core import ANYWHERE, HTTPS, Chain, EnvironmentFacts, Json, Verdict, net
from analysis.reachability.firewall import Packet, allows, firewall_rules
from analysis.reachability.kubernetes import labels_select, network_policy_admits, workloads
from analysis.reachability.synth import Ref, Synth


def nodes_to_internet(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("GKE nodes -> internet (NAT)")
    # The models' cluster; the workers' subnet has no NAT by design (stacks/network.py).
    clusters = [(s.stack_id("cluster"), k, v) for k, v in s.resources("cluster", "google_container_cluster").items()]
    if not c.check(bool(clusters), f"a GKE cluster in {s.stack_id('cluster')}"):
        return c.verdict()
    stack_id, _, cluster = clusters[0]
    private = ((cluster.get("private_cluster_config") or {}).get("enable_private_nodes")) is True
    subnet_ref = s.ref(stack_id, cluster.get("subnetwork"))
    network_ref = s.ref(stack_id, cluster.get("network"))
    if not c.check(subnet_ref is not None and network_ref is not None, "the cluster's VPC and subnet resolve"):
        return c.verdict()
    assert subnet_ref is not None and network_ref is not None
    subnet = s.config(subnet_ref)
    primary = net(subnet["ip_cidr_range"])
    secondary = {r.get("range_name"): net(r["ip_cidr_range"]) for r in subnet.get("secondary_ip_range") or ()}
    pods_range = secondary.get((cluster.get("ip_allocation_policy") or {}).get("cluster_secondary_range_name"))
    # cloud.google.com/nat/docs/overview: Cloud NAT serves the subnets (and ranges) a gateway
    # lists, on a Cloud Router in the same VPC and region; it does not bypass egress firewall rules.
    if private:
        covered = _nat_covers(s, network_ref, subnet_ref, subnet)
        c.check(
            covered is not None,
            f"{cluster.get('name')} has private nodes: Cloud NAT covers subnet {subnet.get('name')}"
            f" ({primary})" + (f": {covered}" if covered else ""),
        )
    else:
        c.ok(f"{cluster.get('name')}: nodes have external addresses, no NAT needed")
    rules = firewall_rules(s, network_ref)
    for source in filter(None, (primary, pods_range)):
        allows(c, rules, Packet("EGRESS", source, ANYWHERE, HTTPS))
    return c.verdict()


def _nat_covers(s: Synth, network: Ref, subnet_ref: Ref, subnet: Json) -> str | None:
    for stack_id, _, nat in s.all_resources("google_compute_router_nat"):
        router_ref = s.ref(stack_id, nat.get("router"))
        router = s.config(router_ref) if router_ref else {}
        if not router_ref or not router or not s.refers_to(router_ref.stack, router.get("network"), network.target):
            continue
        if nat.get("region", router.get("region")) != subnet.get("region"):
            continue
        mode = nat.get("source_subnetwork_ip_ranges_to_nat")
        if mode in ("ALL_SUBNETWORKS_ALL_IP_RANGES", "ALL_SUBNETWORKS_ALL_PRIMARY_IP_RANGES"):
            return f"{nat.get('name')} ({mode})"
        for entry in nat.get("subnetwork") or ():
            ranges = entry.get("source_ip_ranges_to_nat") or ()
            if s.refers_to(stack_id, entry.get("name"), subnet_ref.target) and (
                "ALL_IP_RANGES" in ranges or "PRIMARY_IP_RANGE" in ranges
            ):
                return f"{nat.get('name')} (LIST_OF_SUBNETWORKS, {', '.join(ranges)})"
    return None


def prometheus_to_metrics(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("Managed Prometheus -> vLLM metrics")
    clusters = [(s.stack_id("cluster"), k, v) for k, v in s.resources("cluster", "google_container_cluster").items()]
    if not c.check(bool(clusters), "a GKE cluster"):
        return c.verdict()
    cluster = clusters[0][2]
    autopilot = cluster.get("enable_autopilot") is True
    managed = ((cluster.get("monitoring_config") or {}).get("managed_prometheus") or {}).get("enabled")
    # Managed collection is on by default in Autopilot (cloud.google.com/stackdriver/docs/managed-prometheus/setup-managed).
    c.check(
        managed is not False and (managed or autopilot),
        f"{cluster.get('name')}: Managed Service for Prometheus collection on",
    )
    # The managed collectors run in gke-gmp-system on Autopilot and in gmp-system on Standard
    # (cloud.google.com/stackdriver/docs/managed-prometheus/setup-managed, /troubleshooting), as
    # ordinary pods, not on the host network (github.com/GoogleCloudPlatform/prometheus-engine,
    # manifests/operator.yaml, DaemonSet collector), so NetworkPolicy sees their namespace.
    namespace = "gke-gmp-system" if autopilot else "gmp-system"
    monitors = [
        m["manifest"]
        for _, _, m in s.all_resources("kubernetes_manifest")
        if (m.get("manifest") or {}).get("kind") == "PodMonitoring"
    ]
    if not c.check(bool(monitors), "a PodMonitoring for the model server"):
        return c.verdict()
    monitor = monitors[0]
    inference_id = s.stack_id("inference")
    monitor_namespace = str(s.value(inference_id, (monitor.get("metadata") or {}).get("namespace", "default")))
    selector = ((monitor.get("spec") or {}).get("selector") or {}).get("matchLabels")
    pods = [w for w in workloads(s) if w.namespace == monitor_namespace and labels_select(selector, w.labels)]
    if not c.check(bool(pods), f"PodMonitoring {monitor.get('metadata', {}).get('name')} selects the pods {selector}"):
        return c.verdict()
    pod = pods[0]
    # Managed collection scrapes only targets on the collector's own node (setup-managed), so the
    # path stays on the node: no VPC firewall rule applies, the NetworkPolicy does.
    c.ok("the collector DaemonSet scrapes the pods on its own node: no VPC firewall rule on the path")
    for endpoint in (monitor.get("spec") or {}).get("endpoints") or ():
        # PodMonitoring endpoints name the port by name or number (ScrapeEndpoint.port,
        # cloud.google.com/stackdriver/docs/managed-prometheus/api#scrapeendpoint).
        port = pod.port(endpoint.get("port"))
        if not c.present(port, f"endpoint port {endpoint.get('port')!r} -> container port {port}"):
            continue
        admitted, why = network_policy_admits(s, pod, port, namespace_labels={"kubernetes.io/metadata.name": namespace})
        # Every namespace carries kubernetes.io/metadata.name = its name
        # (kubernetes.io/docs/reference/labels-annotations-taints/#kubernetes-io-metadata-name).
        c.check(admitted, f"collectors in {namespace}: {why}")
    return c.verdict()


# ------------------------------------------------------------------------------------------
# Running every edge
