"""The web tier's edges: browser to the public services, gateway to orchestrator."""

from __future__ import annotations

from collections.abc import Callable

from analysis.reachability.cloudrun import (
    RunService,
    identity,
    invokers,
    reach_internal_service,
    run_service,
    service_target,
)
from analysis.reachability.core import Chain, EnvironmentFacts, Verdict
from analysis.reachability.internal_lb import through_internal_lb
from analysis.reachability.loadbalancer import edge_domains, load_balancer_to, run_app_closed
from analysis.reachability.synth import Synth

# The edges


def browser_to_frontend(s: Synth, facts: EnvironmentFacts) -> Verdict:
    return _through_edge(s, facts, "frontend") if facts.edge else _from_browser(s, "frontend", allow_iap=True)


def browser_to_gateway(s: Synth, facts: EnvironmentFacts) -> Verdict:
    return _through_edge(s, facts, "gateway") if facts.edge else _from_browser(s, "gateway", allow_iap=False)


def _through_edge(s: Synth, facts: EnvironmentFacts, role: str) -> Verdict:
    """With [edge] on, the browser reaches the service through the load balancer only: the
    load balancer's edge to it holds, and its run.app URL is closed."""
    c = Chain(f"browser -> {role}")
    service = run_service(s, role)
    if not c.present(service, f"Cloud Run service {s.env}-{role} in {s.stack_id('services')}"):
        return c.verdict()
    run_app_closed(s, c, service)
    through = load_balancer_to(role)(s, facts)
    c.check(through.ok, f"through the load balancer: load balancer -> {role} {'holds' if through.ok else 'is blocked'}")
    return c.verdict()


def _from_browser(s: Synth, role: str, *, allow_iap: bool) -> Verdict:
    c = Chain(f"browser -> {role}")
    service = run_service(s, role)
    if not c.present(service, f"Cloud Run service {s.env}-{role} in {s.stack_id('services')}"):
        return c.verdict()
    # cloud.google.com/run/docs/securing/ingress#settings: "All" admits requests from the internet.
    c.check(service.ingress == "INGRESS_TRAFFIC_ALL", f"{service.name}: ingress {service.ingress}")
    c.check(not service.config.get("default_uri_disabled"), f"{service.name}: its run.app URL is enabled")
    allowed = invokers(s, service)
    if service.config.get("invoker_iam_disabled"):
        # cloud.google.com/run/docs/authenticating/public: with the invoker check off, anyone may call.
        c.ok(f"{service.name}: the Cloud Run invoker IAM check is disabled")
    elif "allUsers" in allowed:
        # cloud.google.com/run/docs/authenticating/public: roles/run.invoker for allUsers.
        c.ok(f"{service.name}: roles/run.invoker for allUsers")
    elif allow_iap and service.config.get("iap_enabled"):
        # cloud.google.com/run/docs/securing/identity-aware-proxy-cloud-run: IAP lets through the
        # principals holding roles/iap.httpsResourceAccessor, and invokes the service as the IAP
        # service agent, which needs roles/run.invoker.
        members = sorted(
            s.principal(stack_id, grant.get("member"))
            for stack_id, _, grant in s.all_resources("google_iap_web_cloud_run_service_iam_member")
            if grant.get("role") == "roles/iap.httpsResourceAccessor"
            and s.refers_to(stack_id, grant.get("cloud_run_service_name"), service_target(s, service))
        )
        c.check(bool(members), f"{service.name}: IAP admits {', '.join(members) or 'nobody'}")
        c.check(
            "serviceAgent:iap.googleapis.com" in allowed,
            f"{service.name}: the IAP service agent holds roles/run.invoker",
        )
    else:
        c.fail(
            f"{service.name}: browsers cannot invoke it; roles/run.invoker: {', '.join(sorted(allowed)) or 'nobody'}"
        )
    return c.verdict()


def cloud_run_call(
    caller: str, callee: str, *, through_lb: bool = False
) -> Callable[[Synth, EnvironmentFacts], Verdict]:
    """A Cloud Run service calling an internal one at its run.app URL or, ``through_lb`` (connector
    mode), at its internal load balancer's private address: the caller's ``<CALLEE>_URL`` names it,
    with a Google ID token; the callee checks the caller where it checks any; the packets travel
    through the VPC and the caller may invoke."""
    setting = callee.upper().replace("-", "_")

    def check(s: Synth, facts: EnvironmentFacts) -> Verdict:
        c = Chain(f"{caller} -> {callee}" + (" (internal load balancer)" if through_lb else ""))
        source, target = run_service(s, caller), run_service(s, callee)
        if not c.check(source is not None and target is not None, f"the {caller} and {callee} services exist"):
            return c.verdict()
        assert source is not None and target is not None
        url = source.env.get(f"{setting}_URL")
        if not through_lb:
            c.check(
                s.refers_to(s.stack_id("services"), url, service_target(s, target), "uri"),
                f"{source.name}: {setting}_URL = {s.show(s.stack_id('services'), url)}",
            )
        auth = source.env.get(f"{setting}_AUTH")
        c.check(auth == "google-id-token", f"{source.name}: {setting}_AUTH = {auth} (a Google ID token for the call)")
        _caller_check(s, c, source, target, setting)
        if through_lb:
            through_internal_lb(s, c, source, target, url)
        else:
            reach_internal_service(s, c, source, target)
        return c.verdict()

    return check


gateway_to_orchestrator = cloud_run_call("gateway", "orchestrator")
gateway_to_orchestrator_through_lb = cloud_run_call("gateway", "orchestrator", through_lb=True)


def _caller_check(s: Synth, c: Chain, gateway: RunService, orchestrator: RunService, setting: str) -> None:
    """The callee checks the caller's ID token itself (the orchestrator: services/orchestrator/callers.py):
    the token must be minted for the audience it checks, by an account it admits."""
    services_id = s.stack_id("services")
    if orchestrator.env.get("CALLER_AUTH") != "google-id-token":
        c.ok(f"{orchestrator.name}: CALLER_AUTH = {orchestrator.env.get('CALLER_AUTH')}: it checks no caller")
        return
    minted = gateway.env.get(f"{setting}_AUDIENCE") or gateway.env.get(f"{setting}_URL")
    checked = orchestrator.env.get("CALLER_AUDIENCE")
    c.check(
        minted == checked,
        f"{gateway.name}: its ID token's audience {s.show(services_id, minted)} is the orchestrator's "
        f"CALLER_AUDIENCE {s.show(services_id, checked)}",
    )
    callers = str(orchestrator.env.get("ALLOWED_CALLERS") or "").split(",")
    allowed = {s.principal(services_id, caller.strip()) for caller in callers if caller.strip()}
    who = identity(s, gateway)
    c.check(
        who in allowed,
        f"{orchestrator.name}: ALLOWED_CALLERS ({', '.join(sorted(allowed)) or 'nobody'}) admits {gateway.name}, {who}",
    )


def browser_to_identity_platform(s: Synth, facts: EnvironmentFacts) -> Verdict:
    """The chat page signs in with Identity Platform's REST API and its browser API key; the
    gateway then accepts the ID tokens it issues."""
    c = Chain("browser -> Identity Platform")
    services_id = s.stack_id("services")
    configs = list(s.resources("services", "google_identity_platform_config").values())
    frontend, gateway = run_service(s, "frontend"), run_service(s, "gateway")
    if not c.check(
        bool(configs) and frontend is not None and gateway is not None, "Identity Platform, frontend, gateway"
    ):
        return c.verdict()
    assert frontend is not None and gateway is not None
    project = configs[0].get("project")
    email = ((configs[0].get("sign_in") or {}).get("email") or {}).get("enabled")
    c.check(email is True, f"Identity Platform in {project}: email sign-in enabled")
    c.check(
        frontend.env.get("AUTH_MODE") == "identity-platform",
        f"{frontend.name}: AUTH_MODE = {frontend.env.get('AUTH_MODE')}",
    )
    key_ref = next(iter(s.refs(services_id, frontend.env.get("IDENTITY_PLATFORM_API_KEY"))), None)
    if not c.check(
        key_ref is not None and key_ref.type == "google_apikeys_key",
        f"IDENTITY_PLATFORM_API_KEY = {s.show(services_id, frontend.env.get('IDENTITY_PLATFORM_API_KEY'))}",
    ):
        return c.verdict()
    assert key_ref is not None
    restrictions = s.config(key_ref).get("restrictions") or {}
    # Sign-in calls identitytoolkit.googleapis.com, token refresh securetoken.googleapis.com
    # (cloud.google.com/identity-platform/docs/use-rest-api); a key restricted to APIs serves only those
    # (cloud.google.com/docs/authentication/api-keys#api_restrictions).
    targets = {t.get("service") for t in restrictions.get("api_targets") or ()}
    needed = {"identitytoolkit.googleapis.com", "securetoken.googleapis.com"}
    c.check(
        not targets or needed <= targets, f"the key's API targets {', '.join(sorted(targets)) or 'any'} serve sign-in"
    )
    # A browser key answers only pages its referrers match (same page, #browser_restrictions).
    referrers = (restrictions.get("browser_key_restrictions") or {}).get("allowed_referrers") or ["*"]
    # Behind the edge the page is served at the certificate's domain, which Identity Platform must
    # also list among its authorized domains when it lists any
    # (cloud.google.com/identity-platform/docs/reference/rest/v2/Config: authorizedDomains).
    domains = edge_domains(s) if facts.edge else []
    pages = [f"https://{domain}/" for domain in domains] or [f"https://{frontend.name}-"]
    c.check(
        any(r == "*" or r.startswith(page) for r in referrers for page in pages),
        f"the key admits the chat page ({', '.join(pages)}): referrers {', '.join(referrers)}",
    )
    authorized = configs[0].get("authorized_domains")
    if domains and authorized is not None:
        c.check(set(domains) <= set(authorized), f"Identity Platform's authorized domains {', '.join(authorized)}")
    enabled = {config.get("service") for _, _, config in s.all_resources("google_project_service")}
    c.check("identitytoolkit.googleapis.com" in enabled, "identitytoolkit.googleapis.com is enabled")
    # firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library:
    # aud is the project id, iss https://securetoken.google.com/<project id>.
    issuer, audience = gateway.env.get("JWT_ISSUER"), gateway.env.get("JWT_AUDIENCE")
    c.check(
        issuer == f"https://securetoken.google.com/{project}" and audience == project,
        f"{gateway.name}: JWT_ISSUER {issuer}, JWT_AUDIENCE {audience} are Identity Platform's for {project}",
    )
    return c.verdict()
