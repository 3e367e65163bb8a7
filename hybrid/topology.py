"""The platform's topology, declared once: its services, the managed backends they use, and who
calls whom on which port.

The network's firewall flows, the run tags and per-service resource names, the services'
URL wiring, the deploy rehearsal's start order and the edges the reachability checker must
find are all derived from it, so a new service is one entry here (and its code). Pure data and
functions over it: no cdktf, no configuration import (the offline tools use it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING, Literal

from hybrid.network_constants import (
    ANYWHERE,
    HEALTH_CHECK_RANGES,
    HTTP_PORT,
    HTTPS_PORT,
    POSTGRES_PORT,
    PRIVATE_GOOGLE_APIS_RANGE,
    REDIS_TLS_PORT,
)

if TYPE_CHECKING:
    from hybrid.config import Environment

# Where a service runs. A Cloud Run job runs to completion (the database bootstrap).
Tier = Literal["cloud_run", "cloud_run_job", "gke_autopilot", "gke_standard"]
# What a call's port is, resolved per environment by port_number.
Port = Literal["http", "https", "inference", "postgres", "redis"]
# How the Cloud Run services send private traffic into the VPC ([network] egress).
Egress = Literal["direct", "connector"]
# How a call travels, derived from the callee: Cloud Run through the VPC to
# private.googleapis.com (its run.app URL: cloud.google.com/run/docs/securing/private-networking#from-other-services),
# a GKE service through its internal load balancer, a managed backend through Private Services
# Access or, a Google API's, private.googleapis.com (cloud.google.com/vpc/docs/private-google-access),
# and a public service from the user's browser. With a connector, whose PRIVATE_RANGES_ONLY sends
# only RFC 1918 ranges into the VPC (cloud.google.com/vpc/docs/serverless-vpc-access), a Cloud Run
# service is reached instead through a regional internal Application Load Balancer's private address,
# which internal ingress admits (cloud.google.com/run/docs/securing/ingress#settings): "internal_alb".
Path = Literal["run.app", "ilb", "internal_alb", "psa", "google_api", "browser"]

BROWSER = "browser"
# The one section that is no table of the environment file with an ``enabled`` flag: the Cloud
# Run GPU spill target, made where [inference] spill_to = "cloud_run".
SPILL_SECTION = "cloud_run_spill"
# The firewall's default-deny rules, one each way, below every flow's.
DEFAULT_DENY = {"INGRESS": "deny-all-ingress", "EGRESS": "deny-all-egress"}


@dataclass(frozen=True)
class Service:
    tier: Tier
    # The environment file's table that turns it on ("services" is always on).
    section: str = "services"
    public: bool = False
    # The GKE cluster network its calls leave from, which the firewall matches by the Pods' range.
    cluster: str | None = None
    # Moved to Cloud Run by [inference] placement = "cloud_run".
    movable: bool = False
    # A model server, sized by [inference] rather than by a [services] table.
    model_server: bool = False
    # Its code is services/<name>: Cloud Build builds its image (make up, step 2), and its
    # settings model is its contract with the stacks (hybrid/service_contract.py).
    built: bool = False


@dataclass(frozen=True)
class Backend:
    """What Google runs that services reach: a managed server in the Private Services Access
    range (named for its protocol), or a Google API's resource."""

    path: Literal["psa", "google_api"]
    section: str = "services"


@dataclass(frozen=True)
class Call:
    source: str
    destination: str
    port: Port
    # The firewall rules' descriptions, where the call has rules of its own; a call that shares
    # its rule with an earlier one (the same destination and port from Cloud Run) gives none.
    why: str = ""
    why_ingress: str = ""
    # The source hands the destination's URL to the user's browser, which makes the call.
    from_browser: bool = False
    # The source's setting ``<destination>_url`` holds the destination's run.app URL, where it
    # has one; the model servers' goes into the callers' backends instead.
    url_setting: bool = True


@dataclass(frozen=True)
class Edge:
    source: str
    destination: str
    port: Port
    path: Path


# A range a firewall rule matches: a NetworkSettings field (its name) or a literal CIDR.
RangeRef = str


@dataclass(frozen=True)
class Peer:
    """One end of a flow, as firewall rules match it."""

    ranges: tuple[RangeRef, ...]
    # In the egress rule's name; "" for the whole network.
    name: str = ""
    # Services whose network tags egress rules match instead of ranges: Direct VPC egress carries
    # each Cloud Run workload's tag for egress rules, and ingress rules cannot match it, so they use
    # the subnet's range (cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations).
    tags: tuple[str, ...] = ()
    # In the ingress rule's name, which matches the ranges: the name's unless set.
    range_name: str = ""
    # Whether the VPC's firewall guards this end (not the internet, Google's health checkers,
    # Google APIs or a managed service peered in by Private Services Access).
    ours: bool = True

    @property
    def ingress_name(self) -> str:
        return self.range_name or self.name


@dataclass(frozen=True)
class Flow:
    """Traffic the firewall allows: an egress rule where the source is ours, an ingress rule
    where the destination is, each named for the flow from the same keys as names.py registers."""

    source: Peer
    destination: Peer
    port: Port | None  # None: every protocol
    why: str
    why_ingress: str = ""
    section: str = "services"

    @property
    def egress_key(self) -> str | None:
        if not self.source.ours:
            return None
        if self.destination.name == self.source.name:
            return f"allow-{self.source.name}-internal"
        return "-".join(part for part in ("allow", self.source.name, "egress", self.destination.name) if part)

    @property
    def ingress_key(self) -> str | None:
        # Within a cluster, GKE's own rules allow the ingress
        # (cloud.google.com/kubernetes-engine/docs/concepts/firewall-rules#cluster-fws).
        if not self.destination.ours or self.destination.name == self.source.name:
            return None
        return f"allow-{self.source.ingress_name}-to-{self.destination.name}"

    def rule_keys(self) -> tuple[str, ...]:
        return tuple(key for key in (self.egress_key, self.ingress_key) if key)


@dataclass(frozen=True)
class Topology:
    services: Mapping[str, Service]
    backends: Mapping[str, Backend]
    calls: tuple[Call, ...]
    # The networks' own flows, which no call between services makes.
    network_flows: tuple[Flow, ...] = ()
    # The environment file's tables that are enabled ("services" always is); None in the
    # declaration, which holds every table's part.
    sections: frozenset[str] | None = None
    egress: Egress = "direct"

    def path(self, call: Call) -> Path:
        if call.from_browser:
            return "browser"
        if call.destination in self.backends:
            return self.backends[call.destination].path
        if self.services[call.destination].tier.startswith("gke"):
            return "ilb"
        return "internal_alb" if self.egress == "connector" else "run.app"

    def behind_internal_lb(self) -> tuple[str, ...]:
        """The Cloud Run services other Cloud Run services call through the internal load balancer."""
        return tuple(dict.fromkeys(c.destination for c in self.calls if self.path(c) == "internal_alb"))

    def start_order(self) -> tuple[str, ...]:
        """The services, each after those it calls (the deploy rehearsal starts them so); jobs
        run before any service and are not in it, nor are the model servers (a stand-in serves
        their protocol in a rehearsal)."""
        graph = TopologicalSorter(
            {
                name: [c.destination for c in self.calls if c.source == name and c.destination in self.services]
                for name in self.services
            }
        )
        return tuple(name for name in graph.static_order() if name in self.run_services())

    def vpc_callers(self) -> tuple[str, ...]:
        """The Cloud Run services and jobs that call through the VPC (Direct VPC egress or the
        connector), each with a network tag its egress rules match (the connector's, in connector mode)."""
        sources = {c.source for c in self.calls if not c.from_browser}
        return tuple(n for n, s in self.services.items() if n in sources and s.tier.startswith("cloud_run"))

    def vpc_services(self) -> tuple[str, ...]:
        """The Cloud Run services (not jobs) that call through the VPC: its subnet holds their instances' addresses."""
        return tuple(n for n in self.vpc_callers() if self.services[n].tier == "cloud_run")

    def cloud_run_services(self) -> tuple[str, ...]:
        """The services that are, or may be placed, on Cloud Run: each has a service name and account."""
        return tuple(n for n, s in self.services.items() if s.tier == "cloud_run" or s.movable)

    def callers(self, destination: str) -> tuple[str, ...]:
        """The services that call ``destination`` themselves (not through the user's browser)."""
        return tuple(dict.fromkeys(c.source for c in self.calls if c.destination == destination and not c.from_browser))

    def run_services(self) -> tuple[str, ...]:
        """The services always on Cloud Run, each sized by a [services] table (the model servers,
        which [inference] may place there, are sized by its own)."""
        return tuple(n for n, s in self.services.items() if s.tier == "cloud_run" and not s.model_server)

    def built(self) -> tuple[str, ...]:
        """The services whose code is in services/, each with an image to build."""
        return tuple(n for n, s in self.services.items() if s.built)

    def url_settings(self) -> dict[str, dict[str, str]]:
        """Each service's settings that hold another's run.app URL: {caller: {field: callee}}."""
        wired: dict[str, dict[str, str]] = {}
        for call in self.calls:
            if call.url_setting and self.path(call) in ("run.app", "internal_alb", "browser"):
                wired.setdefault(call.source, {})[f"{call.destination}_url"] = call.destination
        return wired

    def id_token_settings(self) -> dict[str, dict[str, str]]:
        """Each service's settings that say it calls an internal Cloud Run service with a Google ID
        token, which run.invoker admits: ``<callee>_auth``, beside its ``<callee>_url``
        (cloud.google.com/run/docs/authenticating/service-to-service). {caller: {field: callee}}."""
        wired: dict[str, dict[str, str]] = {}
        for call in self.calls:
            if call.url_setting and self.path(call) in ("run.app", "internal_alb"):
                wired.setdefault(call.source, {})[f"{call.destination}_auth"] = call.destination
        return wired

    def required_edges(self) -> tuple[Edge, ...]:
        """Every flow that must exist, for the reachability checker: the browser's to each public
        service, then each call, by the path it travels."""
        public = [Edge(BROWSER, name, "https", "browser") for name, s in self.services.items() if s.public]
        calls = [Edge(c.source, c.destination, c.port, self.path(c)) for c in self.calls if not c.from_browser]
        return (*public, *calls)

    def firewall_flows(self) -> tuple[Flow, ...]:
        """Each call's flow through the VPC's firewall (to a GKE service or a managed backend;
        Cloud Run is reached through private.googleapis.com, a network flow), then the networks'
        own, by section (in the order of the declaration's). A Cloud Run call that gives no
        description joins the earlier flow to its destination and port, its tag added to that
        egress rule's."""
        flows: list[Flow] = []
        for call in self.calls:
            if self.path(call) == "internal_alb":
                flows.append(self._to_internal_lb(call))
                continue
            if self.path(call) not in ("ilb", "psa"):
                continue
            source, destination = self._source(call.source), self._destination(call.destination)
            if call.why:
                ends = (self._section(call.source), self._section(call.destination))
                section = next((s for s in ends if s != "services"), "services")
                flows.append(Flow(source, destination, call.port, call.why, call.why_ingress or call.why, section))
                continue
            shared = (
                i for i, f in enumerate(flows) if (f.destination, f.port) == (destination, call.port) and f.source.tags
            )
            i = next(shared, None)
            if i is None:
                raise ValueError(f"{call.source} -> {call.destination}: a call with a rule of its own needs its why")
            flows[i] = replace(flows[i], source=replace(flows[i].source, tags=(*flows[i].source.tags, call.source)))
        flows += [f for f in self.network_flows if self.sections is None or f.section in self.sections]
        order = self.section_order()
        return tuple(sorted(flows, key=lambda flow: order.index(flow.section)))

    def section_order(self) -> tuple[str, ...]:
        """The environment file's tables, as the declaration first names them."""
        named = [s.section for s in self.services.values()] + [b.section for b in self.backends.values()]
        return tuple(dict.fromkeys(["services", *named]))

    def rule_keys(self) -> dict[str, str]:
        """Each firewall rule's key (names.py prefixes it) and the section that makes it, in either egress mode."""
        modes = (self, replace(self, egress="connector")) if self.egress == "direct" else (self,)
        flows = {
            key: flow.section
            for mode in modes
            for flow in mode.firewall_flows()
            # The environment file refuses a Cloud Run spill target in connector mode.
            if not (mode.egress == "connector" and flow.section == SPILL_SECTION)
            for key in flow.rule_keys()
        }
        return {**dict.fromkeys(DEFAULT_DENY.values(), "services"), **flows}

    def _to_internal_lb(self, call: Call) -> Flow:
        """The caller's egress to the load balancer's frontend. No ingress rule: the frontend is
        Google's Envoy, not a VM, and a serverless NEG's backends are outside the VPC, so no rule
        admits the proxies to them (cloud.google.com/load-balancing/docs/l7-internal/setting-up-l7-internal-serverless)."""
        lb = Peer(("internal_lb_cidr",), name=f"{call.destination}-lb", ours=False)
        why = f"The {call.source} calls the {call.destination} through the internal load balancer (connector mode)."
        return Flow(self._source(call.source), lb, INTERNAL_LB_PORT, why, section=self._section(call.destination))

    def _section(self, end: str) -> str:
        return (self.services.get(end) or self.backends[end]).section

    def _source(self, name: str) -> Peer:
        cluster = self.services[name].cluster
        if cluster:
            return Peer((CLUSTER_PODS[cluster],), name=cluster)
        return replace(CLOUD_RUN, name=name, tags=(name,))

    def _destination(self, name: str) -> Peer:
        if name in self.backends:
            return Peer(("psa_cidr",), name=name, ours=False)
        return Peer(CLUSTER_RANGES[self.services[name].cluster or ""], name=name)


# The clusters' ranges (NetworkSettings fields): their nodes' and Pods', which the firewall matches
# as a destination, and the Pods' alone as the source of a call: GKE's ip-masq-agent leaves RFC 1918
# destinations alone, so a Pod's traffic keeps its address
# (cloud.google.com/kubernetes-engine/docs/concepts/ip-masquerade-agent).
CLUSTER_RANGES = {
    "workloads": ("subnet_cidr", "pods_cidr"),
    "workers": ("workers_cidr", "workers_pods_cidr"),
}
CLUSTER_PODS = {"workloads": "pods_cidr", "workers": "workers_pods_cidr"}
# Cloud Run's private traffic in the VPC: from Direct VPC egress's subnet, or the connector's.
CLOUD_RUN = Peer(("cloud_run_cidr",), range_name="cloud-run")
# The internal load balancer's frontend listens on HTTP (docs/network-egress.md, "Why HTTP").
INTERNAL_LB_PORT: Port = "http"

_WORKLOADS = Peer(CLUSTER_RANGES["workloads"], name="workloads")
_WORKERS = Peer(CLUSTER_RANGES["workers"], name="workers")


def _within_cluster(cluster: Peer, services: RangeRef, *, why: str, section: str = "services") -> Flow:
    """Any traffic among ``cluster``'s nodes and Pods, and from them to its Services' range ``services``."""
    return Flow(cluster, replace(cluster, ranges=(*cluster.ranges, services)), None, why=why, section=section)


_ORCHESTRATOR_TO_INFERENCE = (
    "The orchestrator (Cloud Run, Direct VPC egress) calls the model servers' internal load balancer."
)
# The Google APIs the orchestrator and the workers both use: routes to Vertex AI, batch lines published
# by one and pulled by the other, batch files written by one and read by the other.
_BATCH_APIS = ("vertex-ai", "batch-lines", "batch-bucket")
_WORKERS_TO_INFERENCE = "The batch workers call the model servers' internal load balancer."

TOPOLOGY = Topology(
    services={
        "frontend": Service("cloud_run", public=True, built=True),
        "gateway": Service("cloud_run", public=True, built=True),
        "orchestrator": Service("cloud_run", built=True),
        "db-bootstrap": Service("cloud_run_job"),
        "inference": Service("gke_autopilot", cluster="workloads", movable=True, model_server=True),
        # The GKE pool's spill target on a Cloud Run GPU ([inference] spill_to = "cloud_run").
        "inference-spill": Service("cloud_run", section=SPILL_SECTION, model_server=True),
        "worker": Service("gke_standard", section="workers", cluster="workers", built=True),
    },
    backends={
        "postgres": Backend("psa"),
        "redis": Backend("psa", section="redis"),
        "vertex-ai": Backend("google_api"),
        # The batch queue's topic and the batch files' bucket.
        "batch-lines": Backend("google_api", section="workers"),
        "batch-bucket": Backend("google_api", section="workers"),
    },
    calls=(
        Call("frontend", "gateway", "https", from_browser=True),
        Call("gateway", "orchestrator", "https"),
        Call(
            "gateway",
            "redis",
            "redis",
            why="The gateway keeps its rate limit's buckets in Memorystore for Redis (TLS).",
        ),
        Call(
            "orchestrator",
            "inference",
            "inference",
            why="The orchestrator, alone on Cloud Run, calls the model servers.",
            why_ingress=_ORCHESTRATOR_TO_INFERENCE,
            url_setting=False,
        ),
        # Its URL goes into the orchestrator's backends, as the model servers' does.
        Call("orchestrator", "inference-spill", "https", url_setting=False),
        Call(
            "orchestrator",
            "postgres",
            "postgres",
            why="The orchestrator and the one-time database bootstrap job connect to Cloud SQL.",
        ),
        Call("db-bootstrap", "postgres", "postgres"),
        *(Call(caller, api, "https") for caller in ("orchestrator", "worker") for api in _BATCH_APIS),
        Call(
            "worker",
            "inference",
            "inference",
            why=_WORKERS_TO_INFERENCE,
            why_ingress=_WORKERS_TO_INFERENCE,
            url_setting=False,
        ),
        Call(
            "worker",
            "postgres",
            "postgres",
            why="The batch workers connect to Cloud SQL (the ledger and the batches' state).",
        ),
    ),
    network_flows=(
        Flow(
            Peer(HEALTH_CHECK_RANGES, name="health-checks", ours=False),
            Peer(CLUSTER_RANGES["workloads"], name="inference"),
            "inference",
            why="",
            why_ingress="Google health checkers probe the model servers behind the load balancer.",
        ),
        # Cloud Run's calls to internal services leave by it too (run.app resolves to it in the VPC).
        Flow(
            Peer(()),
            Peer((PRIVATE_GOOGLE_APIS_RANGE,), name="google-apis", ours=False),
            "https",
            why="Google APIs and internal Cloud Run services over private.googleapis.com.",
        ),
        _within_cluster(
            _WORKLOADS, "services_cidr", why="GKE nodes and pods talk to each other and to cluster services."
        ),
        Flow(
            _WORKLOADS,
            Peer((ANYWHERE,), name="https", ours=False),
            "https",
            why="GKE workloads fetch model weights over HTTPS through Cloud NAT, and reach Google APIs.",
        ),
        _within_cluster(
            _WORKERS,
            "workers_services_cidr",
            why="The workers' nodes and Pods talk to each other and to their cluster's services.",
            section="workers",
        ),
        # With no NAT for their subnet, Private Google Access is the workers' only way out
        # (cloud.google.com/vpc/docs/private-google-access).
        Flow(
            _WORKERS,
            Peer((ANYWHERE,), name="google-apis", ours=False),
            "https",
            why="The workers' nodes and Pods reach Google APIs and their control plane over HTTPS; "
            "with no NAT for their subnet, Private Google Access is the only way out.",
            section="workers",
        ),
    ),
)


def active(topology: Topology, *, placement: str, sections: frozenset[str], egress: Egress = "direct") -> Topology:
    """The part of ``topology`` an environment deploys: the services and backends of its enabled
    tables, the calls between them, and the model servers where [inference] places them."""
    tier: Tier = "cloud_run" if placement == "cloud_run" else "gke_autopilot"
    on = frozenset({"services", *sections})
    services = {
        name: replace(s, tier=tier, cluster=None if tier == "cloud_run" else s.cluster) if s.movable else s
        for name, s in topology.services.items()
        if s.section in on
    }
    backends = {name: b for name, b in topology.backends.items() if b.section in on}
    ends = services.keys() | backends.keys()
    # A service on Cloud Run answers on its run.app URL's HTTPS port, whatever its container's.
    moved = {name for name, s in services.items() if s.movable and s.tier == "cloud_run"}
    calls = tuple(
        replace(c, port="https") if c.destination in moved else c
        for c in topology.calls
        if c.source in ends and c.destination in ends
    )
    return Topology(services, backends, calls, topology.network_flows, sections=on, egress=egress)


def port_number(port: Port, env: Environment) -> int:
    """The port a call's kind of port is in ``env``: the model servers' is the file's."""
    fixed = {"http": HTTP_PORT, "https": HTTPS_PORT, "postgres": POSTGRES_PORT, "redis": REDIS_TLS_PORT}
    return env.network.inference_port if port == "inference" else fixed[port]


def required_edges(*, placement: str, sections: frozenset[str], egress: Egress = "direct") -> tuple[Edge, ...]:
    """The edges the reachability checker must find in an environment whose model servers are
    at ``placement``, whose optional ``sections`` (e.g. "workers", "redis") are enabled and whose
    Cloud Run services enter the VPC by ``egress``."""
    return active(declared(), placement=placement, sections=sections, egress=egress).required_edges()


def declared() -> Topology:
    """The topology as declared (a test may put another in its place)."""
    return TOPOLOGY


def for_environment(env: Environment) -> Topology:
    """The part of the declared topology ``env`` deploys; each optional table, named by a
    service's or backend's section, is an Environment field with an ``enabled`` flag."""
    topology = declared()
    optional = topology.section_order()[1:]  # all but "services", which is always on
    enabled = frozenset(
        name
        for name in optional
        if (env.inference.spills_to_cloud_run if name == SPILL_SECTION else getattr(env, name).enabled)
    )
    return active(topology, placement=env.inference.placement, sections=enabled, egress=env.network.egress)
