"""Stand an environment up on its project in one command: the deploy steps (docs/deploying.md), in order.

    python -m scripts.up --env environments/prod.toml           # what `make up ENV=prod` runs
    python -m scripts.up --env environments/prod.toml --synth-dir DIR   # deploy a reviewed synth

It synthesizes the environment (JSON, into cdktf.out/, emptied first), then walks
scripts/deploy_steps.py: each "stacks" step deploys its stacks in waves that cdktf's own
dependency graph orders (a stack only after every stack it depends on); the "images" step builds,
with Cloud Build, every image the stacks pull from the environment's own registry (read from the
synthesized stacks, so none can be forgotten); the "secrets" step stores each secret version the
stacks reference but never hold; the "job" step runs the database bootstrap job. Then it prints
the chat page's URL.

A second run changes nothing: an image whose tag exists is not built again (tags are immutable
in the registry), a secret with a version is left as it is, cdktf deploys no change, and the
bootstrap job only grants what it granted before.

Secrets come from the environment, never from a file or an argument: HF_TOKEN for the Hugging
Face token (inference.gke.hf_token_secret), and PGADMIN_PASSWORD for the database admin's
password (generated when not given: only the bootstrap job reads it, from Secret Manager). A
secret that is needed, absent and not given stops the run before anything is deployed, with the
command that gives it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from hybrid.config import ConfigError, Environment, load_environments
from scripts.check_apply_order import Plan, images_of, is_remote, load_plan, repositories
from scripts.check_reachability import CheckError
from scripts.deploy_steps import DEPLOY_STEPS, Step, stacks_of_step

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = ROOT / "cdktf.out"
CLOUD_BUILD_CONFIG = "services/cloudbuild.yaml"
# Where a project id is still the shipped placeholder, nothing can be deployed.
PLACEHOLDER = "replace-me"
PLACEHOLDER_EMAIL_DOMAIN = "@example.com"


class UpError(Exception):
    """The run stops; the message says why and what to do."""


@dataclass(frozen=True)
class Image:
    service: str  # services/Dockerfile's SERVICE
    uri: str


@dataclass(frozen=True)
class NeededSecret:
    secret_id: str
    variable: str  # the environment variable that gives its value
    generated: bool = False  # made up here when the variable is not set
    # A command to run with the value on stdin after the secret is stored (the admin's password).
    then: tuple[str, ...] = ()


def run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    # The printed line never holds a value: secrets go on stdin only.
    print("+ " + " ".join(argv), flush=True)
    result = subprocess.run(list(argv), input=stdin, text=True, capture_output=True, cwd=ROOT)
    if check and result.returncode != 0:
        raise UpError(f"{argv[0]} failed (exit {result.returncode}): {' '.join(argv)}\n{result.stderr.strip()}")
    return result


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise UpError(
            f"{name} is not on PATH: "
            + (
                "install the Google Cloud CLI (cloud.google.com/sdk/docs/install) and run `gcloud auth login`"
                if name == "gcloud"
                else "run through `make up`, which installs the cdktf CLI into node_modules/"
            )
        )
    return found


# ------------------------------------------------------------------------------------------
# What the synthesized stacks need


def images_to_build(plan: Plan) -> list[Image]:
    """Every image a Cloud Run service or job or a Kubernetes Deployment pulls from one of the
    environment's own repositories (images published elsewhere, vLLM's, are pulled as they are)."""
    found: dict[str, Image] = {}
    # A remote repository mirrors its upstream (vLLM's image from Docker Hub): nothing to build.
    urls = [url for repo, url in repositories(plan) if not is_remote(repo)]
    for node in plan.nodes.values():
        for image in images_of(node):
            uri = str(plan.literal(node, image))
            url = next((u for u in urls if uri.startswith(u)), None)
            if url is not None:
                found[uri] = Image(uri.removeprefix(url).split(":", 1)[0].split("@", 1)[0], uri)
    return sorted(found.values(), key=lambda i: i.uri)


def secrets_needed(env: Environment, plan: Plan) -> list[NeededSecret]:
    """Each secret a stack grants access to but no stack creates: the operator's to store."""
    created = {str(n.config.get("secret_id")) for n in plan.all("google_secret_manager_secret")}
    granted = {
        str(plan.literal(n, n.config.get("secret_id"))).rsplit("/", 1)[-1]
        for n in plan.all("google_secret_manager_secret_iam_member")
    }
    known = {
        env.names.database_admin_secret: NeededSecret(
            env.names.database_admin_secret,
            "PGADMIN_PASSWORD",
            generated=True,
            then=(
                "sql",
                "users",
                "set-password",
                "postgres",
                f"--instance={env.names.sql_instance}",
                f"--project={env.project_id}",
                "--prompt-for-password",
            ),
        ),
    }
    if env.inference.gke and env.inference.gke.hf_token_secret:
        known[env.inference.gke.hf_token_secret] = NeededSecret(env.inference.gke.hf_token_secret, "HF_TOKEN")
    needed = []
    for secret_id in sorted(granted - created):
        if secret_id not in known:
            raise UpError(f"{env.name}: the stacks read secret {secret_id}, and scripts/up.py does not know its value")
        needed.append(known[secret_id])
    return needed


# ------------------------------------------------------------------------------------------
# The steps


class Up:
    def __init__(self, env: Environment, synth_dir: Path, plan: Plan, manifest: dict[str, dict[str, Any]]) -> None:
        self.env, self.synth_dir, self.plan, self.manifest = env, synth_dir, plan, manifest
        self.deployed: set[str] = set()
        self.outputs: dict[str, dict[str, object]] = {}
        self.gcloud, self.cdktf = tool("gcloud"), tool("cdktf")
        self.project = f"--project={env.project_id}"

    def waves(self, stacks: list[str]) -> list[list[str]]:
        """``stacks`` in the order cdktf's dependency graph allows: each wave after the ones before."""
        waves, left = [], list(stacks)
        while left:
            wave = [s for s in left if set(self.manifest[s].get("dependencies") or []) <= self.deployed]
            if not wave:
                raise UpError(f"{self.env.name}: {', '.join(left)} depend on stacks no earlier step deploys")
            waves.append(wave)
            self.deployed.update(wave)
            left = [s for s in left if s not in wave]
        return waves

    def deploy(self, step: Step) -> None:
        stacks = stacks_of_step(step, self.env.name, sorted(self.manifest), self.deployed)
        for wave in self.waves(stacks):
            outputs = self.synth_dir / f"outputs-{'-'.join(wave)}.json"
            run(
                [
                    self.cdktf,
                    "deploy",
                    "--skip-synth",
                    "--output",
                    str(self.synth_dir),
                    "--auto-approve",
                    "--ignore-missing-stack-dependencies",
                    "--outputs-file",
                    str(outputs),
                    *wave,
                ]
            )
            if outputs.exists():
                self.outputs.update(json.loads(outputs.read_text("utf-8")))

    def build_images(self, images: list[Image]) -> None:
        for image in images:
            exists = run(
                [self.gcloud, "artifacts", "docker", "images", "describe", image.uri, self.project, "--quiet"],
                check=False,
            )
            if exists.returncode == 0:
                print(f"  {image.uri} exists: not built again", flush=True)
                continue
            # cloud.google.com/build/docs/configuring-builds/substitute-variable-values: the config's
            # user-defined substitutions take the service and the image's full name.
            run(
                [
                    self.gcloud,
                    "builds",
                    "submit",
                    self.project,
                    f"--region={self.env.region}",
                    f"--config={CLOUD_BUILD_CONFIG}",
                    f"--substitutions=_SERVICE={image.service},_IMAGE={image.uri}",
                    ".",
                ]
            )

    def has_version(self, secret: NeededSecret) -> bool:
        listed = run(
            [
                self.gcloud,
                "secrets",
                "versions",
                "list",
                secret.secret_id,
                self.project,
                "--filter=state=ENABLED",
                "--limit=1",
                "--format=value(name)",
            ],
            check=False,
        )
        return listed.returncode == 0 and bool(listed.stdout.strip())

    def missing_secrets(self, needed: list[NeededSecret]) -> list[NeededSecret]:
        """Secrets that have no version and no value in the environment, asked before any deploy."""
        return [s for s in needed if not s.generated and not os.environ.get(s.variable) and not self.has_version(s)]

    def store_secrets(self, needed: list[NeededSecret]) -> None:
        for secret in needed:
            if self.has_version(secret):
                print(f"  {secret.secret_id} has a version: left as it is", flush=True)
                continue
            value = os.environ.get(secret.variable) or (secrets.token_urlsafe(24) if secret.generated else "")
            if secret.then:
                run([self.gcloud, *secret.then], stdin=value + "\n")
            run([self.gcloud, "secrets", "create", secret.secret_id, self.project, "--data-file=-"], stdin=value)

    def run_job(self) -> None:
        run(
            [
                self.gcloud,
                "run",
                "jobs",
                "execute",
                self.env.names.database_bootstrap,
                f"--region={self.env.region}",
                self.project,
                "--wait",
            ]
        )

    def chat_page_url(self) -> str | None:
        value = self.outputs.get(f"{self.env.name}-services", {}).get("chat_page_url")
        return str(value) if value else None


def refuse_placeholder(env_file: Path, env: Environment) -> None:
    if env.project_id.startswith(PLACEHOLDER):
        raise UpError(f"{env_file}: project_id = {env.project_id!r} is the shipped placeholder: set your project's id")
    # The shipped edge domain: no certificate can be issued for it, nor DNS pointed at it.
    if env.edge.enabled and env.edge.domain and PLACEHOLDER in env.edge.domain:
        raise UpError(f"{env_file}: edge.domain = {env.edge.domain!r} is the shipped placeholder: set your domain")
    # example.com is reserved for documentation (RFC 2606): alerts sent there reach nobody.
    shipped = [
        email for email in (env.slo.notify.emails if env.slo else []) if email.endswith(PLACEHOLDER_EMAIL_DOMAIN)
    ]
    if shipped:
        raise UpError(
            f"{env_file}: slo.notify.emails = {shipped!r} is the shipped placeholder: set who gets the alerts"
        )


def refuse_placeholders_of(stack_patterns: list[str], env_files: list[Path]) -> None:
    """`make deploy STACKS=...`: refuse when a named stack (or glob, e.g. 'prod-*') is an
    environment's whose project id is still the placeholder. Every environment has a network stack."""
    for env_file, env in zip(env_files, load_environments(env_files), strict=True):
        if any(
            fnmatch(pattern, f"{env.name}-*") or fnmatch(f"{env.name}-network", pattern) for pattern in stack_patterns
        ):
            refuse_placeholder(env_file, env)


def stand_up(env_file: Path, synth_dir: Path | None) -> str | None:
    (env,) = load_environments([env_file])
    refuse_placeholder(env_file, env)
    if synth_dir is None:
        synth_dir = DEPLOY_DIR
        shutil.rmtree(synth_dir, ignore_errors=True)
        print(f"+ python main.py --env {env_file}", flush=True)
        synth = subprocess.run(
            [sys.executable, "main.py", "--env", str(env_file)],
            cwd=ROOT,
            env={**os.environ, "CDKTF_OUTDIR": str(synth_dir)},
        )
        if synth.returncode != 0:
            raise UpError(f"{env_file}: the synth failed (exit {synth.returncode})")
    plan = load_plan(synth_dir, env.name)
    manifest = {
        k: v
        for k, v in json.loads((synth_dir / "manifest.json").read_text("utf-8"))["stacks"].items()
        if k in plan.stacks
    }
    up = Up(env, synth_dir, plan, manifest)
    images, needed = images_to_build(plan), secrets_needed(env, plan)
    missing = up.missing_secrets(needed)
    if missing:
        raise UpError(
            "\n".join(
                f"secret {s.secret_id} has no version: give its value as {s.variable}, e.g. "
                f"`{s.variable}=... make up ENV={env_file.stem}` (or store it first: "
                f'printf %s "${s.variable}" | gcloud secrets create {s.secret_id} --project={env.project_id} --data-file=-)'
                for s in missing
            )
        )
    for step in DEPLOY_STEPS:
        print(f"== step {step.number}: {step.title}", flush=True)
        if step.kind == "stacks":
            up.deploy(step)
        elif step.kind == "images":
            up.build_images(images)
        elif step.kind == "secrets":
            up.store_secrets(needed)
        else:
            up.run_job()
    return up.chat_page_url()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--env", type=Path, metavar="FILE", help="the environment file to stand up")
    what.add_argument(
        "--refuse-placeholders",
        nargs="+",
        metavar="STACK",
        help="only check that no stack named (make deploy's STACKS) is a placeholder project's, and exit",
    )
    parser.add_argument("--synth-dir", type=Path, help="deploy this synth (JSON) instead of synthesizing anew")
    args = parser.parse_args(argv)
    try:
        if args.refuse_placeholders:
            refuse_placeholders_of(args.refuse_placeholders, sorted((ROOT / "environments").glob("*.toml")))
            return 0
        url = stand_up(args.env, args.synth_dir)
    except (ConfigError, UpError, CheckError) as err:
        print(f"make {'deploy' if args.refuse_placeholders else 'up'}: {err}", file=sys.stderr)
        return 2
    print(f"The chat page: {url}" if url else "Done; the services stack gave no chat_page_url output.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
