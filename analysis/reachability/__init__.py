"""Can traffic flow along each edge of the architecture? Read from the synthesized stacks.

Pure functions over the parsed ``cdk.tf.json`` of one environment's stacks (no cdktf, no
network). ``edges`` lists the edges of the README's diagram as data; each has a proof
(``evaluate.PROOFS``), a function that walks the path a request takes (ingress setting, VPC
egress, DNS, Private Google Access, firewall rules, load balancer, NetworkPolicy, IAM, the
callers' environment) and returns a ``Verdict`` with the chain of reasons. ``evaluate`` runs
every edge that applies to the environment.

Modules: ``synth`` (the JSON and its references), ``core`` (verdicts, CIDRs, constants, the
environment's facts), ``firewall``, ``iam``, ``dns``, ``googleapis`` (Private Google Access),
``cloudrun``, ``kubernetes``, ``routing``; the proofs by tier in ``web``, ``models``, ``data``,
``apis`` and ``cluster``.

Values that are Terraform references in one stack (``${data.terraform_remote_state...}``)
are followed to the stack that produces them, through its ``output`` blocks, down to the
resource and, when the attribute is in the configuration (a CIDR, an address), its value.
The environment file supplies only what the JSON cannot: the self-hosted model's name.

Sources: every rule encoded below cites the GCP or Kubernetes documentation it follows.
"""

from analysis.reachability.core import LAYERS, EnvironmentFacts, Step, Unresolved, Verdict, net
from analysis.reachability.evaluate import evaluate
from analysis.reachability.firewall import FirewallRule, Packet, firewall_decides
from analysis.reachability.routing import route_for
from analysis.reachability.synth import Synth

__all__ = [
    "LAYERS",
    "EnvironmentFacts",
    "FirewallRule",
    "Packet",
    "Step",
    "Synth",
    "Unresolved",
    "Verdict",
    "evaluate",
    "firewall_decides",
    "net",
    "route_for",
]
