"""Check that every resource's documented preconditions are met before the deploy applies it.

    python -m scripts.check_apply_order                           # synthesizes environments/*.toml first
    python -m scripts.check_apply_order --env environments/dev.toml
    python -m scripts.check_apply_order --synth-dir DIR           # DIR/manifest.json, DIR/stacks/<id>/cdk.tf.json

It walks the deploy steps (docs/deploying.md) (scripts/deploy_steps.py) with cdktf's stack graph
(manifest.json's ``dependencies``) and Terraform's graph inside each stack (references and
``depends_on``). A precondition is met by an earlier step, by a stack the resource's stack
depends on, or by a resource its own stack applies first; stacks of one step that do not depend
on each other apply in parallel, and resources of one stack that do not depend on each other
too, so neither counts. For each environment it prints a table: resource, precondition, and
where the precondition is met or VIOLATION. Exit status: 0 if every precondition is met, 1 on a
violation, 2 if the check could not run.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.reachability.synth import expressions
from scripts.apply_order_apis import API_OF_SETTING, API_OF_TYPE, DEFAULT_APIS
from scripts.check_reachability import CheckError, load_evaluator, run_check
from scripts.deploy_steps import DEPLOY_STEPS, Step, stacks_of_step

reachability = load_evaluator()

# A Kubernetes service account's principal in the cluster's workload pool. The pool is created
# with the project's first cluster that enables Workload Identity; granting a role to one of its
# principals before then fails with "Identity Pool does not exist (PROJECT.svc.id.goog)"
# (cloud.google.com/kubernetes-engine/docs/how-to/workload-identity, "Limitations": GKE creates
# the fixed pool PROJECT_ID.svc.id.goog; the error as reported in github.com/google/kctf/issues/193).
WORKLOAD_IDENTITY_MEMBER = re.compile(r"^serviceAccount:(?P<pool>[^\[]+\.svc\.id\.goog)\[(?P<ksa>[^\]]+)\]$")
# Google-managed service agents, by their address. They are created as services are used, and a
# role cannot be granted to one that does not exist yet: google_project_service_identity asks
# for it first (cloud.google.com/iam/docs/create-service-agents).
SERVICE_AGENT_EMAIL = re.compile(
    r"@(gcp-sa-[a-z0-9-]+\.iam\.gserviceaccount\.com|cloudservices\.gserviceaccount\.com"
    r"|container-engine-robot\.iam\.gserviceaccount\.com|serverless-robot-prod\.iam\.gserviceaccount\.com)"
)
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
IAM_MEMBER_TYPES = re.compile(r"^google_[a-z0-9_]+_iam_member$")
# Artifact Registry's Docker repositories: LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE. An
# image is pushed into a repository that exists already
# (cloud.google.com/artifact-registry/docs/docker/pushing-and-pulling#before-you-begin).
REPOSITORY_URL = "{location}-docker.pkg.dev/{project}/{repository_id}/"

_ADDRESS = re.compile(r"(?<![\w.-])((?:data\.)?[a-z][a-z0-9_]*\.[A-Za-z0-9_-]+)")


# ------------------------------------------------------------------------------------------
# The plan: when each stack and each resource is applied


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@dataclass(frozen=True)
class Node:
    """A resource (or data source, ``type`` ``data.<kind>``) of one stack."""

    stack: str
    type: str
    name: str
    config: dict[str, Any]

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"

    @property
    def label(self) -> str:
        """Its type and construct path, as cdktf records it: readable where the address has a hash."""
        path = (self.config.get("//") or {}).get("metadata", {}).get("path", f"{self.stack}/{self.name}")
        return f"{self.type} {path}"


@dataclass(frozen=True)
class Row:
    resource: str
    precondition: str
    met: str | None  # where it is met; None for a violation
    why: str = ""  # for a violation: what is missing

    @property
    def ok(self) -> bool:
        return self.met is not None


class Plan:
    """One environment's stacks in the order the deploy steps, cdktf and Terraform apply them."""

    def __init__(
        self, env: str, stacks: dict[str, dict[str, Any]], dependencies: dict[str, list[str]], steps: Sequence[Step]
    ):
        self.env, self.stacks, self.dependencies, self.steps = env, stacks, dependencies, tuple(steps)
        self.synth = reachability.Synth(env, stacks)
        self.step_of: dict[str, Step] = {}
        for step in self.steps:
            if step.kind == "stacks":
                for stack in stacks_of_step(step, env, sorted(stacks), set(self.step_of)):
                    self.step_of[stack] = step
        unplaced = sorted(set(stacks) - set(self.step_of))
        if unplaced:
            raise CheckError(f"{env}: no deploy step deploys {', '.join(unplaced)}")
        self.ancestors = {stack: self._closure(stack, lambda s: dependencies.get(s, [])) for stack in stacks}
        self.nodes: dict[tuple[str, str, str], Node] = {}
        for stack, config in stacks.items():
            for block, prefix in (("resource", ""), ("data", "data.")):
                for kind, named in (config.get(block) or {}).items():
                    for name, body in named.items():
                        self.nodes[(stack, f"{prefix}{kind}", name)] = Node(stack, f"{prefix}{kind}", name, body)
        self._upstream: dict[tuple[str, str, str], set[str]] = {}

    @staticmethod
    def _closure(start: str, edges: Callable[[str], Sequence[str]]) -> set[str]:
        seen: set[str] = set()
        todo = list(edges(start))
        while todo:
            item = todo.pop()
            if item not in seen:
                seen.add(item)
                todo.extend(edges(item))
        return seen

    def _direct(self, stack: str, address: str) -> list[str]:
        """What Terraform applies right before ``address``: its depends_on, and what it refers to."""
        kind, _, name = address.rpartition(".")
        node = self.nodes.get((stack, kind, name))
        if node is None:
            return []
        found = list(node.config.get("depends_on") or ())
        for text in _strings({key: value for key, value in node.config.items() if key != "//"}):
            for expression in expressions(text):
                found.extend(match[1] for match in _ADDRESS.finditer(expression))
        return [a for a in found if (stack, *a.rsplit(".", 1)) in self.nodes]

    def upstream(self, node: Node) -> set[str]:
        """The addresses Terraform applies before ``node`` in its stack (references and depends_on)."""
        key = (node.stack, node.type, node.name)
        if key not in self._upstream:
            self._upstream[key] = self._closure(node.address, lambda a: self._direct(node.stack, a))
        return self._upstream[key]

    def before(self, first: Node, then: Node) -> str | None:
        """Where ``first`` is applied before ``then``, or None if it may not be."""
        if first.stack == then.stack:
            return (
                f"earlier in {first.stack} (referenced or depended on)"
                if first.address in self.upstream(then)
                else None
            )
        first_step, then_step = self.step_of[first.stack].number, self.step_of[then.stack].number
        if first_step < then_step:
            return f"step {first_step} ({first.stack})"
        if first_step == then_step and first.stack in self.ancestors[then.stack]:
            return f"{first.stack}, which {then.stack} depends on"
        return None

    def step_before(self, kind: str, then: Node) -> Step | None:
        """The earliest step of ``kind`` applied before ``then``'s stack."""
        return next((s for s in self.steps if s.kind == kind and s.number < self.step_of[then.stack].number), None)

    def all(self, kind: str) -> list[Node]:
        return [node for node in self.nodes.values() if node.type == kind]

    def first_before(self, candidates: Sequence[Node], then: Node) -> tuple[Node, str] | None:
        for candidate in candidates:
            where = self.before(candidate, then)
            if where:
                return candidate, where
        return None

    def literal(self, node: Node, value: Any) -> Any:
        """``value`` resolved to the literal it refers to, where the configuration holds one."""
        try:
            return self.synth.value(node.stack, value)
        except reachability.Unresolved:
            return value


# ------------------------------------------------------------------------------------------
# Preconditions


def required_apis(node: Node) -> tuple[tuple[str, str], ...] | None:
    """(API, why) pairs ``node`` needs, or None if its type is not known here."""
    if node.type not in API_OF_TYPE:
        return None
    needs = [(api, "") for api in API_OF_TYPE[node.type]]
    for setting, applies, api in API_OF_SETTING.get(node.type, ()):
        if applies(node.config):
            needs.append((api, f" (for {setting})"))
    return tuple(needs)


def api_rows(plan: Plan, node: Node) -> Iterator[Row]:
    if not node.type.removeprefix("data.").startswith("google_"):
        return
    needs = required_apis(node)
    if needs is None:
        yield Row(
            node.label, "the API it calls is enabled", None, f"no API known for {node.type}: add it to API_OF_TYPE"
        )
        return
    enabled = plan.all("google_project_service")
    for api, why in needs:
        precondition = f"{api} enabled{why}"
        found = plan.first_before([s for s in enabled if s.config.get("service") == api], node)
        if found:
            yield Row(node.label, precondition, f"{found[0].address}: {found[1]}")
        elif api in DEFAULT_APIS:
            yield Row(node.label, precondition, "on by default in a new project")
        else:
            yield Row(node.label, precondition, None, "no google_project_service for it is applied before")


def member_rows(plan: Plan, node: Node) -> Iterator[Row]:
    if not IAM_MEMBER_TYPES.match(node.type):
        return
    member = node.config.get("member", "")
    pool = WORKLOAD_IDENTITY_MEMBER.match(str(plan.literal(node, member)))
    if pool:
        precondition = f"workload pool {pool['pool']} exists (a cluster with Workload Identity)"
        clusters = [
            c
            for c in plan.all("google_container_cluster")
            if (c.config.get("workload_identity_config") or {}).get("workload_pool") == pool["pool"]
        ]
        found = plan.first_before(clusters, node)
        yield Row(
            node.label,
            precondition,
            f"{found[0].label}: {found[1]}" if found else None,
            "no cluster is created before it",
        )
        return
    principal = plan.synth.principal(node.stack, member)
    if principal.startswith("serviceAgent:"):
        agents = [ref for ref in plan.synth.refs(node.stack, member) if ref.type == "google_project_service_identity"]
        found = plan.first_before([plan.nodes[ref.target] for ref in agents], node)
        precondition = f"service agent of {principal.removeprefix('serviceAgent:')} exists"
        yield Row(
            node.label,
            precondition,
            f"{found[0].address}: {found[1]}" if found else None,
            "its identity is not created before it",
        )
    elif SERVICE_AGENT_EMAIL.search(str(member)):
        yield Row(
            node.label,
            "the service agent it grants exists",
            None,
            "the agent's address is built as a string: nothing creates it first (use google_project_service_identity)",
        )


def image_rows(plan: Plan, node: Node) -> Iterator[Row]:
    for image in images_of(node):
        image = str(plan.literal(node, image))
        repository = next(((repo, url) for repo, url in repositories(plan) if image.startswith(url)), None)
        precondition = f"image {image} exists"
        if repository is None:
            yield Row(node.label, precondition, "published outside this project's registry")
            continue
        repo, url = repository
        role = re.split(r"[:@]", image.removeprefix(url), maxsplit=1)[0]
        step = plan.step_before("images", node)
        if is_remote(repo):
            # A remote repository fetches an image from its upstream on the first pull
            # (cloud.google.com/artifact-registry/docs/repositories/remote-overview): it must exist.
            where = plan.before(repo, node)
            yield Row(
                node.label, f"pull-through repository {repo.address} exists", where, "created in parallel with it"
            )
        elif step is None:
            yield Row(node.label, precondition, None, "no images step runs before its stack")
        elif role not in step.images:
            yield Row(node.label, precondition, None, f"step {step.number} builds {', '.join(step.images)}, not {role}")
        elif plan.step_of[repo.stack].number >= step.number:
            yield Row(
                node.label,
                precondition,
                None,
                f"step {step.number} pushes it to {repo.address}, which {repo.stack} creates later (step {plan.step_of[repo.stack].number})",
            )
        else:
            yield Row(
                node.label,
                precondition,
                f"step {step.number} (images), into {repo.address} of step {plan.step_of[repo.stack].number}",
            )


def images_of(node: Node) -> list[str]:
    # Cloud Run imports the image when a revision is deployed (cloud.google.com/run/docs/deploying);
    # a Pod's node pulls it when the Pod starts (kubernetes.io/docs/concepts/containers/images).
    if node.type == "google_cloud_run_v2_service":
        containers = (node.config.get("template") or {}).get("containers") or []
    elif node.type == "google_cloud_run_v2_job":
        containers = ((node.config.get("template") or {}).get("template") or {}).get("containers") or []
    elif node.type == "kubernetes_deployment_v1":
        containers = (((node.config.get("spec") or {}).get("template") or {}).get("spec") or {}).get("container") or []
    else:
        return []
    return [c["image"] for c in containers if c.get("image")]


def is_remote(repository: Node) -> bool:
    return repository.config.get("mode") == "REMOTE_REPOSITORY"


def repositories(plan: Plan) -> list[tuple[Node, str]]:
    found = []
    for repo in plan.all("google_artifact_registry_repository"):
        provider = (plan.stacks[repo.stack].get("provider", {}).get("google") or [{}])[0]
        project = repo.config.get("project") or provider.get("project")
        found.append(
            (
                repo,
                REPOSITORY_URL.format(
                    location=repo.config.get("location"),
                    project=project,
                    repository_id=repo.config.get("repository_id"),
                ),
            )
        )
    return found


def secret_reader_rows(plan: Plan, node: Node) -> Iterator[Row]:
    # A Cloud Run revision or job execution that may not read a secret it references, or whose
    # version does not exist, fails to start (cloud.google.com/run/docs/configuring/services/secrets#access-secret).
    if node.type == "google_cloud_run_v2_service":
        template = node.config.get("template") or {}
    elif node.type == "google_cloud_run_v2_job":
        template = (node.config.get("template") or {}).get("template") or {}
    else:
        return
    secrets = sorted(
        {
            str(plan.literal(node, ((env.get("value_source") or {}).get("secret_key_ref") or {}).get("secret")))
            for container in template.get("containers") or []
            for env in container.get("env") or []
            if (env.get("value_source") or {}).get("secret_key_ref")
        }
    )
    reader = plan.synth.principal(node.stack, template.get("service_account", ""))
    for secret in secrets:
        versions = [
            v for v in plan.all("google_secret_manager_secret_version") if secret_name(plan, v, "secret") == secret
        ]
        found = plan.first_before(versions, node)
        step = plan.step_before("secrets", node)
        where = f"{found[0].address}: {found[1]}" if found else f"step {step.number} (secrets)" if step else None
        yield Row(node.label, f"secret {secret} has a version", where, "no secrets step or version resource before it")
        grants = [
            g
            for g in plan.all("google_secret_manager_secret_iam_member")
            if g.config.get("role") == SECRET_ACCESSOR
            and secret_name(plan, g, "secret_id") == secret
            and plan.synth.principal(g.stack, g.config.get("member")) == reader
        ]
        found = plan.first_before(grants, node)
        why = "granted in parallel with it (no reference or depends_on orders them)" if grants else "never granted"
        yield Row(
            node.label,
            f"{reader} may read {secret} ({SECRET_ACCESSOR})",
            f"{found[0].address}: {found[1]}" if found else None,
            why,
        )


def secret_name(plan: Plan, node: Node, attribute: str) -> str:
    """A secret's id, from ``projects/P/secrets/NAME``, NAME, or a reference to either."""
    return str(plan.literal(node, node.config.get(attribute))).rsplit("/", 1)[-1]


def grant_target_rows(plan: Plan, node: Node) -> Iterator[Row]:
    # A role on a bucket or a secret is a binding in that resource's own allow policy, so the
    # resource must exist (cloud.google.com/storage/docs/access-control/using-iam-permissions:
    # storage.buckets.setIamPolicy on the bucket).
    if node.type == "google_storage_bucket_iam_member":
        bucket = str(plan.literal(node, node.config.get("bucket")))
        candidates = [b for b in plan.all("google_storage_bucket") if b.config.get("name") == bucket]
        found = plan.first_before(candidates, node)
        why = "created in parallel with it" if candidates else "created by no stack"
        yield Row(node.label, f"bucket {bucket} exists", f"{found[0].address}: {found[1]}" if found else None, why)
    elif node.type == "google_secret_manager_secret_iam_member":
        secret = secret_name(plan, node, "secret_id")
        candidates = [s for s in plan.all("google_secret_manager_secret") if s.config.get("secret_id") == secret]
        found = plan.first_before(candidates, node)
        step = plan.step_before("secrets", node)
        where = f"{found[0].address}: {found[1]}" if found else f"step {step.number} (secrets)" if step else None
        yield Row(node.label, f"secret {secret} exists", where, "no secrets step or secret resource before it")


def proxy_subnet_rows(plan: Plan, node: Node) -> Iterator[Row]:
    # An Envoy-based regional load balancer's forwarding rule needs an active proxy-only subnet in
    # its region and VPC, created before it (cloud.google.com/load-balancing/docs/proxy-only-subnets).
    if node.type != "google_compute_forwarding_rule" or node.config.get("load_balancing_scheme") != "INTERNAL_MANAGED":
        return
    region = node.config.get("region")
    subnets = [
        s
        for s in plan.all("google_compute_subnetwork")
        if s.config.get("purpose") == "REGIONAL_MANAGED_PROXY" and s.config.get("region") == region
    ]
    found = plan.first_before(subnets, node)
    why = "created in parallel with it" if subnets else "created by no stack"
    where = f"{found[0].address}: {found[1]}" if found else None
    yield Row(node.label, f"a proxy-only subnet in {region} exists", where, why)


RULES = (api_rows, member_rows, image_rows, secret_reader_rows, grant_target_rows, proxy_subnet_rows)


def evaluate(plan: Plan) -> list[Row]:
    return [row for node in plan.nodes.values() for rule in RULES for row in rule(plan, node)]


# ------------------------------------------------------------------------------------------
# Reading the synth, printing the table


def environment_name(path: Path) -> str:
    try:
        return str(tomllib.loads(path.read_text("utf-8"))["name"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError) as err:
        raise CheckError(f"{path}: cannot read the environment's name ({type(err).__name__}: {err})") from None


def load_plan(synth_dir: Path, env: str, steps: Sequence[Step] = DEPLOY_STEPS) -> Plan:
    try:
        manifest = json.loads((synth_dir / "manifest.json").read_text("utf-8"))["stacks"]
        ids = [stack for stack in manifest if stack.startswith(f"{env}-")]
        stacks = {s: json.loads((synth_dir / manifest[s]["synthesizedStackPath"]).read_text("utf-8")) for s in ids}
    except (OSError, UnicodeDecodeError, ValueError, KeyError) as err:
        raise CheckError(f"{synth_dir}: not a readable cdktf synth ({type(err).__name__}: {err})") from None
    if not stacks:
        raise CheckError(f"{synth_dir}: no synthesized stacks for environment {env!r}")
    return Plan(env, stacks, {s: manifest[s].get("dependencies") or [] for s in ids}, steps)


def table(env: str, rows: list[Row], *, verbose: bool) -> str:
    """The violations (``verbose``: every precondition) and a summary."""
    shown = sorted((r for r in rows if verbose or not r.ok), key=lambda r: (r.ok, r.resource, r.precondition))
    lines = [f"{env}: apply order"]
    if shown:
        width = [
            max(len(h), *(len(x) for x in column))
            for h, column in (
                ("RESOURCE", [r.resource for r in shown]),
                ("PRECONDITION", [r.precondition for r in shown]),
            )
        ]
        lines.append(f"{'RESOURCE':<{width[0]}}  {'PRECONDITION':<{width[1]}}  MET BY")
        for row in shown:
            met = row.met if row.ok else f"VIOLATION: {row.why}"
            lines.append(f"{row.resource:<{width[0]}}  {row.precondition:<{width[1]}}  {met}")
    violations = sum(not r.ok for r in rows)
    lines.append(
        f"{env}: {len(rows) - violations} of {len(rows)} preconditions met"
        + (f"; {violations} VIOLATION{'S' * (violations > 1)}" if violations else "")
    )
    return "\n".join(lines)


def check(
    synth_dir: Path, env_files: list[Path], steps: Sequence[Step] = DEPLOY_STEPS, *, verbose: bool = False
) -> bool:
    all_ok = True
    for path in env_files:
        env = environment_name(path)
        rows = evaluate(load_plan(synth_dir, env, steps))
        print(table(env, rows, verbose=verbose), end="\n\n")
        all_ok = all_ok and all(r.ok for r in rows)
    return all_ok


def main(argv: list[str] | None = None) -> int:
    return run_check(argv, __doc__, "check_apply_order", check)


if __name__ == "__main__":
    sys.exit(main())
