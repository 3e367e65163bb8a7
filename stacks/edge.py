"""Layer `edge`: the global external Application Load Balancer and Cloud Armor in front of the
public services (frontend, gateway), on when [edge] enabled is true (docs/edge.md).

  internet -> load balancer (HTTPS, managed certificate; HTTP redirects) -> Cloud Armor ->
    serverless NEG (one per region and service) -> Cloud Run service of that region

The services layer sets those services' ingress to internal-and-load-balancing, so their run.app
URLs answer no one on the internet, and points the page, its sign-in key's referrers and the
gateway's CORS at the edge's domain.
"""

from __future__ import annotations

from cdktf import TerraformOutput
from constructs import Construct

from hybrid.armor import armor_rules
from hybrid.components.armor import CloudArmorPolicy
from hybrid.components.load_balancer import EDGE_SERVICES, EdgeProps, GlobalLoadBalancer
from hybrid.config import Environment
from hybrid.layer import LayerStack
from hybrid.service_contract import gateway_requests_per_user_minute
from stacks.services import ServicesStack


class EdgeStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, services: ServicesStack) -> None:
        super().__init__(scope, env, "edge", services)
        assert env.edge.domain, "EdgeSettings requires a domain when enabled"
        armor = CloudArmorPolicy(
            self,
            "armor",
            name=env.names.edge["armor"],
            project=env.project_id,
            rules=armor_rules(env.edge.armor, gateway_requests_per_user_minute(env)),
        )
        settings = env.services
        self.load_balancer = GlobalLoadBalancer(
            self,
            "load-balancer",
            EdgeProps(
                names=env.names.edge,
                project=env.project_id,
                domain=env.edge.domain,
                regions=env.service_regions,
                services={role: env.names.service[role] for role in EDGE_SERVICES},
                security_policy=armor.id,
                iap_members=tuple(settings.iap_members) if settings.frontend.access == "iap" else None,
            ),
        )
        # Point the domain's A record here; the certificate is issued after (docs/edge.md).
        TerraformOutput(self, "edge_address", value=self.load_balancer.address.address)
