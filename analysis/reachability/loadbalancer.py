"""The edge's edges, where [edge] is on: internet -> load balancer, load balancer -> each public
service (through its backend service and serverless NEGs), and the two rules the edge brings:
every public backend has a Cloud Armor policy, and no public service answers at run.app."""

from __future__ import annotations

from collections.abc import Callable

from analysis.reachability.cloudrun import RunService, invokers, run_service
from analysis.reachability.core import Chain, EnvironmentFacts, Json, Verdict
from analysis.reachability.synth import Synth

# cloud.google.com/load-balancing/docs/https: the global external Application Load Balancer.
SCHEME = "EXTERNAL_MANAGED"
# cloud.google.com/run/docs/securing/ingress#settings: internal and Cloud Load Balancing.
BEHIND_LOAD_BALANCER = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
EDGE = "edge"


def _referenced(s: Synth, stack_id: str, text: object, kind: str) -> Json | None:
    """The ``kind`` resource ``text`` refers to, in the edge stack."""
    ref = s.ref(stack_id, text)
    return s.config(ref) if ref is not None and ref.type == kind else None


def _rules(s: Synth, port: str) -> list[tuple[str, Json]]:
    return [
        (s.stack_id(EDGE), rule)
        for rule in s.resources(EDGE, "google_compute_global_forwarding_rule").values()
        if str(rule.get("port_range")) == port
    ]


def edge_domains(s: Synth) -> list[str]:
    """The domains of the edge's managed certificates: where the browser reaches the services."""
    certs = s.resources(EDGE, "google_compute_managed_ssl_certificate").values()
    return sorted({d for cert in certs for d in (cert.get("managed") or {}).get("domains") or ()})


def internet_to_load_balancer(s: Synth, facts: EnvironmentFacts) -> Verdict:
    """HTTPS on 443 with a managed certificate for the domain; port 80 only redirects."""
    c = Chain("internet -> load balancer")
    https = _rules(s, "443")
    if not c.check(bool(https), f"a global forwarding rule on port 443 in {s.stack_id(EDGE)}"):
        return c.verdict()
    stack_id, rule = https[0]
    c.check(
        rule.get("load_balancing_scheme") == SCHEME, f"443: load_balancing_scheme {rule.get('load_balancing_scheme')}"
    )
    proxy = _referenced(s, stack_id, rule.get("target"), "google_compute_target_https_proxy")
    if not c.present(proxy, "443 targets an HTTPS proxy"):
        return c.verdict()
    certs = [
        _referenced(s, stack_id, cert, "google_compute_managed_ssl_certificate")
        for cert in proxy.get("ssl_certificates") or ()
    ]
    domains = sorted({d for cert in certs if cert for d in (cert.get("managed") or {}).get("domains") or ()})
    c.check(bool(domains), f"the proxy serves a Google-managed certificate for {', '.join(domains) or 'no domain'}")
    c.present(_referenced(s, stack_id, proxy.get("url_map"), "google_compute_url_map"), "the proxy has a URL map")
    http = _rules(s, "80")
    redirect = None
    if http:
        http_proxy = _referenced(s, http[0][0], http[0][1].get("target"), "google_compute_target_http_proxy")
        url_map = _referenced(s, stack_id, (http_proxy or {}).get("url_map"), "google_compute_url_map")
        redirect = (url_map or {}).get("default_url_redirect")
    c.check(bool(redirect and redirect.get("https_redirect")), "port 80 redirects to HTTPS, and serves nothing")
    return c.verdict()


def load_balancer_to(role: str) -> Callable[[Synth, EnvironmentFacts], Verdict]:
    """The HTTPS URL map routes to a backend service of the scheme, with a Cloud Armor policy,
    whose serverless NEGs name the service; the service admits the load balancer."""

    def check(s: Synth, facts: EnvironmentFacts) -> Verdict:
        c = Chain(f"load balancer -> {role}")
        service = run_service(s, role)
        if not c.present(service, f"Cloud Run service {s.env}-{role}"):
            return c.verdict()
        stack_id = s.stack_id(EDGE)
        backend = _backend_of(s, service)
        if not c.present(backend, f"a backend service with a serverless NEG for {service.name}"):
            return c.verdict()
        name = backend.get("name")
        c.check(_routed(s, backend), f"{name}: the HTTPS URL map routes to it")
        c.check(
            backend.get("load_balancing_scheme") == SCHEME, f"{name}: scheme {backend.get('load_balancing_scheme')}"
        )
        policy = _referenced(s, stack_id, backend.get("security_policy"), "google_compute_security_policy")
        c.check(policy is not None, f"{name}: Cloud Armor policy {(policy or {}).get('name', 'none')}")
        c.check(
            service.ingress in (BEHIND_LOAD_BALANCER, "INGRESS_TRAFFIC_ALL"),
            f"{service.name}: ingress {service.ingress} admits the load balancer",
        )
        allowed = invokers(s, service)
        iap = bool((backend.get("iap") or {}).get("enabled"))
        c.check(
            "allUsers" in allowed or (iap and "serviceAgent:iap.googleapis.com" in allowed),
            f"{service.name}: invokable by the load balancer's requests "
            f"({'IAP on the backend, its agent an invoker' if iap else 'roles/run.invoker for allUsers'})",
        )
        return c.verdict()

    return check


def run_app_closed(s: Synth, c: Chain, service: RunService) -> None:
    """With the edge on, a public service answers only through the load balancer."""
    c.check(
        service.ingress == BEHIND_LOAD_BALANCER,
        f"{service.name}: ingress {service.ingress}: its run.app URL {'is closed' if service.ingress == BEHIND_LOAD_BALANCER else 'is open'} to the internet",
    )


def _backend_of(s: Synth, service: RunService) -> Json | None:
    stack_id = s.stack_id(EDGE)
    for backend in s.resources(EDGE, "google_compute_backend_service").values():
        for entry in backend.get("backend") or ():
            neg = _referenced(s, stack_id, entry.get("group"), "google_compute_region_network_endpoint_group")
            if neg and (neg.get("cloud_run") or {}).get("service") == service.name:
                return backend
    return None


def _routed(s: Synth, backend: Json) -> bool:
    stack_id = s.stack_id(EDGE)
    for proxy in s.resources(EDGE, "google_compute_target_https_proxy").values():
        url_map = _referenced(s, stack_id, proxy.get("url_map"), "google_compute_url_map") or {}
        services = [url_map.get("default_service")]
        for matcher in url_map.get("path_matcher") or ():
            services.append(matcher.get("default_service"))
            services += [rule.get("service") for rule in matcher.get("path_rule") or ()]
        if any(_referenced(s, stack_id, ref, "google_compute_backend_service") is backend for ref in services):
            return True
    return False
