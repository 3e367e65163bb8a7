"""The edge: a global external Application Load Balancer in front of the public Cloud Run services.

  internet -> forwarding rule :443 (managed certificate) -> URL map -> backend service (Cloud Armor,
    IAP where configured) -> one serverless NEG per region -> the Cloud Run service of that region
  internet -> forwarding rule :80 -> a URL map that only redirects to HTTPS

Path routing on the one domain (docs/edge.md): /v1/* is the gateway's API, anything else the
frontend's page. The page and its API share an origin, so the browser sends no CORS preflight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cdktf_cdktf_provider_google.compute_backend_service import (
    ComputeBackendService,
    ComputeBackendServiceBackend,
    ComputeBackendServiceIap,
    ComputeBackendServiceLogConfig,
    ComputeBackendServiceOutlierDetection,
    ComputeBackendServiceOutlierDetectionInterval,
)
from cdktf_cdktf_provider_google.compute_global_address import ComputeGlobalAddress
from cdktf_cdktf_provider_google.compute_global_forwarding_rule import ComputeGlobalForwardingRule
from cdktf_cdktf_provider_google.compute_managed_ssl_certificate import (
    ComputeManagedSslCertificate,
    ComputeManagedSslCertificateManaged,
)
from cdktf_cdktf_provider_google.compute_region_network_endpoint_group import (
    ComputeRegionNetworkEndpointGroup,
    ComputeRegionNetworkEndpointGroupCloudRun,
)
from cdktf_cdktf_provider_google.compute_target_http_proxy import ComputeTargetHttpProxy
from cdktf_cdktf_provider_google.compute_target_https_proxy import ComputeTargetHttpsProxy
from cdktf_cdktf_provider_google.compute_url_map import (
    ComputeUrlMap,
    ComputeUrlMapDefaultUrlRedirect,
    ComputeUrlMapHostRule,
    ComputeUrlMapPathMatcher,
    ComputeUrlMapPathMatcherPathRule,
)
from cdktf_cdktf_provider_google.iap_web_backend_service_iam_member import IapWebBackendServiceIamMember
from constructs import Construct

from hybrid.components.roles import IAP_ACCESSOR

# The public services behind the edge, and the paths each serves: the gateway's whole API is
# under /v1 (services/gateway/routes); its /health stays off the internet.
EDGE_SERVICES = ("frontend", "gateway")
GATEWAY_PATHS = ("/v1/*",)
# The scheme of the global external Application Load Balancer, set on every part explicitly: left
# out, a backend service defaults to EXTERNAL, the classic one
# (cloud.google.com/load-balancing/docs/https#load-balancing-scheme).
SCHEME = "EXTERNAL_MANAGED"
# Outlier detection ejects a serverless NEG (a region) that answers 5xx, so a failing region
# stops taking traffic (cloud.google.com/load-balancing/docs/https/traffic-management-global#outlier_detection;
# serverless NEGs are among its backends: cloud.google.com/compute/docs/reference/rest/v1/backendServices).
OUTLIER_DETECTION = ComputeBackendServiceOutlierDetection(
    consecutive_errors=5,
    interval=ComputeBackendServiceOutlierDetectionInterval(seconds=10),
    max_ejection_percent=50,
)


@dataclass(frozen=True)
class EdgeProps:
    names: Mapping[str, str]  # each part's name (hybrid/config/names.py, EDGE_PARTS)
    project: str
    domain: str
    regions: tuple[str, ...]
    # Cloud Run service name by edge service: the same name in every region.
    services: Mapping[str, str]
    security_policy: str
    # Members IAP lets through to the frontend; None: no IAP.
    iap_members: tuple[str, ...] | None = None


class GlobalLoadBalancer(Construct):
    def __init__(self, scope: Construct, id_: str, props: EdgeProps) -> None:
        super().__init__(scope, id_)
        names, project = props.names, props.project
        self.names, self.project = names, project
        self.address = ComputeGlobalAddress(self, "address", name=names["ip"], project=project)
        self.negs: dict[tuple[str, str], ComputeRegionNetworkEndpointGroup] = {}
        self.backends: dict[str, ComputeBackendService] = {}
        for role in EDGE_SERVICES:
            for region in props.regions:
                # A serverless NEG reaches the service of its own region by name
                # (cloud.google.com/load-balancing/docs/negs/serverless-neg-concepts).
                self.negs[role, region] = ComputeRegionNetworkEndpointGroup(
                    self,
                    f"neg-{role}-{region}",
                    name=names[f"{role}-neg"],
                    project=project,
                    region=region,
                    network_endpoint_type="SERVERLESS",
                    cloud_run=ComputeRegionNetworkEndpointGroupCloudRun(service=props.services[role]),
                )
            iap = role == "frontend" and props.iap_members is not None
            self.backends[role] = ComputeBackendService(
                self,
                f"backend-{role}",
                name=names[role],
                project=project,
                load_balancing_scheme=SCHEME,
                backend=[ComputeBackendServiceBackend(group=self.negs[role, r].id) for r in props.regions],
                security_policy=props.security_policy,
                outlier_detection=OUTLIER_DETECTION,
                log_config=ComputeBackendServiceLogConfig(enable=True, sample_rate=1),
                # IAP on the backend service: the load balancer's users sign in before the page
                # (cloud.google.com/iap/docs/enabling-cloud-run).
                iap=ComputeBackendServiceIap(enabled=True) if iap else None,
            )
            if iap:
                for index, member in enumerate(props.iap_members or ()):
                    IapWebBackendServiceIamMember(
                        self,
                        f"iap-access-{index}",
                        project=project,
                        web_backend_service=self.backends[role].name,
                        role=IAP_ACCESSOR,
                        member=member,
                    )

        self.url_map = ComputeUrlMap(
            self,
            "url-map",
            name=names["url-map"],
            project=project,
            default_service=self.backends["frontend"].id,
            host_rule=[ComputeUrlMapHostRule(hosts=[props.domain], path_matcher="paths")],
            path_matcher=[
                ComputeUrlMapPathMatcher(
                    name="paths",
                    default_service=self.backends["frontend"].id,
                    path_rule=[
                        ComputeUrlMapPathMatcherPathRule(paths=list(GATEWAY_PATHS), service=self.backends["gateway"].id)
                    ],
                )
            ],
        )
        # Google-managed: issued once the domain's A record points at the address
        # (cloud.google.com/load-balancing/docs/ssl-certificates/google-managed-certs).
        self.certificate = ComputeManagedSslCertificate(
            self,
            "certificate",
            name=names["cert"],
            project=project,
            managed=ComputeManagedSslCertificateManaged(domains=[props.domain]),
        )
        https = ComputeTargetHttpsProxy(
            self,
            "https-proxy",
            name=names["https-proxy"],
            project=project,
            url_map=self.url_map.id,
            ssl_certificates=[self.certificate.id],
        )
        self.https_rule = self._forwarding_rule("https", https.id, "443")

        # Port 80 answers only with a redirect to HTTPS
        # (cloud.google.com/load-balancing/docs/https/setting-up-http-https-redirect).
        self.redirect_map = ComputeUrlMap(
            self,
            "redirect-map",
            name=names["http-redirect"],
            project=project,
            default_url_redirect=ComputeUrlMapDefaultUrlRedirect(
                https_redirect=True, strip_query=False, redirect_response_code="MOVED_PERMANENTLY_DEFAULT"
            ),
        )
        http = ComputeTargetHttpProxy(
            self, "http-proxy", name=names["http-proxy"], project=project, url_map=self.redirect_map.id
        )
        self.http_rule = self._forwarding_rule("http", http.id, "80")

    def _forwarding_rule(self, kind: str, target: str, port: str) -> ComputeGlobalForwardingRule:
        return ComputeGlobalForwardingRule(
            self,
            f"{kind}-rule",
            name=self.names[f"{kind}-rule"],
            project=self.project,
            ip_address=self.address.id,
            ip_protocol="TCP",
            port_range=port,
            target=target,
            load_balancing_scheme=SCHEME,
        )
