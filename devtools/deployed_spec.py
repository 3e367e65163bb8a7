"""What Cloud Run would run, read from a synthesized environment: each service's and job's
container (the service it runs, env, secrets, command, startup probe, URLs), with every Terraform
reference replaced by the value GCP would give it.

References to values Terraform knows (a resource's own settings, another stack's outputs)
are followed through the synthesized JSON; values only GCP makes (a service's URL, an
address, a key) get a stand-in value of the same shape, named below. A reference this module
cannot answer is an error: the rehearsal must not guess what a container would be told.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hybrid.config import load_environment
from hybrid.service_contract import run_app_url

ROOT = Path(__file__).resolve().parent.parent

# Values only GCP makes, as the rehearsal assumes them (same shape as the real ones).
PROJECT_NUMBER = "123456789012"
CLOUD_SQL_PRIVATE_IP = "10.32.0.3"  # Cloud SQL takes an address in the PSA range
# The instance's server CA certificate, PEM-shaped; the rehearsal hands its stand-in's real CA instead.
CLOUD_SQL_SERVER_CA = "-----BEGIN CERTIFICATE-----\nrehearsal-cloud-sql-server-ca\n-----END CERTIFICATE-----\n"
BROWSER_KEY = "rehearsal-browser-key"
MEMORYSTORE_HOST = "10.32.1.4"  # Memorystore also takes its address in the PSA range
MEMORYSTORE_SERVER_CA = CLOUD_SQL_SERVER_CA.replace("cloud-sql", "memorystore")
RUN_APP_HASH = "rehearsal0a-uc"

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_TRIMSUFFIX = re.compile(r'trimsuffix\((.+), "([^"]*)"\)')
# A list attribute's field, e.g. google_sql_database_instance.X.server_ca_cert[0].cert.
_LISTED = re.compile(r"([\w-]+)\.([\w-]+)\.(\w+\[0\]\.\w+)")
_REMOTE = re.compile(r"data\.terraform_remote_state\.cross-stack-reference-input-([\w-]+)\.outputs\.(.+)")


class UnknownValue(Exception):
    """A reference the rehearsal cannot resolve the way GCP would."""


@dataclass(frozen=True)
class Container:
    name: str  # the Cloud Run service or job
    role: str  # the service's code, from the image: .../<role>:<tag>
    env: dict[str, str]
    secrets: dict[str, str]  # variable -> Secret Manager secret id
    urls: tuple[str, ...] = ()  # a service's run.app URLs as GCP gives them, and its internal load balancer's
    command: list[str] = field(default_factory=list)
    startup_probe_path: str | None = None
    service_account: str = ""  # the email of the account it runs as: whose identity its metadata server serves


# A test run synthesizes every shipped environment once (tests/conftest.py, synth_dir) and names
# here a JSON file that says where ("outdir", as main.py wrote it) and from what ("sources": each
# file's resolved path, with the digest of the content main.py read). A chain of one of those files,
# unchanged, then reads that synthesis rather than run main.py again. Unset (make run-local,
# scripts), every call synthesizes.
SYNTHESIZED_VARIABLE = "REHEARSAL_SYNTHESIS"


def source_digest(environment_file: Path) -> str:
    return hashlib.sha256(environment_file.read_bytes()).hexdigest()


def _read_stacks(outdir: Path, environment: str) -> dict[str, dict[str, Any]]:
    """The stacks of ``environment`` in ``outdir``, as main.py wrote them (its own prefix, as
    main.py's summary counts them: a folder synthesized from several files holds theirs too)."""
    return {
        p.name: json.loads((p / "cdk.tf.json").read_text())
        for p in (outdir / "stacks").iterdir()
        if p.name.startswith(f"{environment}-")
    }


class SynthesizedEnvironment:
    def __init__(self, name: str, stacks: dict[str, dict[str, Any]]) -> None:
        self.name, self.stacks = name, stacks

    @classmethod
    def synthesize(cls, environment_file: Path) -> SynthesizedEnvironment:
        """Run ``python main.py --env FILE`` (what `cdktf synth` runs) and read its JSON; or, in a
        test run, read the run's own synthesis of that file if it was made from this content."""
        name = load_environment(environment_file).name
        if manifest := os.environ.get(SYNTHESIZED_VARIABLE):
            shared = json.loads(Path(manifest).read_text())
            if shared["sources"].get(str(environment_file.resolve())) == source_digest(environment_file):
                return cls(name, _read_stacks(Path(shared["outdir"]), name))
        with tempfile.TemporaryDirectory(prefix="rehearsal-synth-") as outdir:
            result = subprocess.run(
                [sys.executable, "main.py", "--env", str(environment_file)],
                cwd=ROOT,
                env={**os.environ, "CDKTF_OUTDIR": outdir},
                capture_output=True,
                text=True,
                timeout=600,
            )
            if result.returncode:
                raise SystemExit(result.stderr.strip())
            # The name from the file, not from the stack ids: a layer's id may hold a hyphen itself
            # (prod-workers-k8s), and so may the environment's name.
            return cls(name, _read_stacks(Path(outdir), name))

    @property
    def region(self) -> str:
        region: str = self._provider(f"{self.name}-services")["region"]
        return region

    def services(self) -> dict[str, Container]:
        stack = self.stacks[f"{self.name}-services"]
        found = {}
        for key, resource in stack["resource"]["google_cloud_run_v2_service"].items():
            urls = (
                self.resolve(f"{self.name}-services", "${google_cloud_run_v2_service.%s.uri}" % key),
                run_app_url(resource["name"], PROJECT_NUMBER, self.region),
                *self._internal_lb_urls(key),
            )
            container = self._container(
                f"{self.name}-services", resource["name"], resource["template"]["containers"][0], urls
            )
            account = self.resolve(f"{self.name}-services", resource["template"].get("service_account", ""))
            found[container.role] = replace(container, service_account=account)
        return found

    def _internal_lb_urls(self, key: str) -> list[str]:
        """The private URLs of the internal load balancers whose serverless NEG is the Cloud Run
        service ``key`` (connector mode, docs/network-egress.md): forwarding rule -> proxy -> URL
        map -> backend service -> NEG, each a plain reference in the services stack."""
        stack = f"{self.name}-services"
        found = self.stacks[stack]["resource"]
        service = "${google_cloud_run_v2_service.%s.name}" % key
        negs = {
            f"${{google_compute_region_network_endpoint_group.{k}.id}}"
            for k, neg in found.get("google_compute_region_network_endpoint_group", {}).items()
            if neg.get("cloud_run", {}).get("service") == service
        }
        backends = {
            f"${{google_compute_region_backend_service.{k}.id}}"
            for k, b in found.get("google_compute_region_backend_service", {}).items()
            if negs & {group.get("group") for group in b.get("backend", [])}
        }
        maps = {
            f"${{google_compute_region_url_map.{k}.id}}"
            for k, m in found.get("google_compute_region_url_map", {}).items()
            if m.get("default_service") in backends
        }
        proxies = {
            f"${{google_compute_region_target_http_proxy.{k}.id}}"
            for k, p in found.get("google_compute_region_target_http_proxy", {}).items()
            if p.get("url_map") in maps
        }
        return [
            f"http://{self.resolve(stack, rule['ip_address'])}"
            for rule in found.get("google_compute_forwarding_rule", {}).values()
            if rule.get("target") in proxies and rule.get("port_range") == "80"
        ]

    def jobs(self) -> dict[str, Container]:
        stack = self.stacks[f"{self.name}-services"]
        return {
            job["name"]: self._container(
                f"{self.name}-services", job["name"], job["template"]["template"]["containers"][0]
            )
            for job in stack["resource"].get("google_cloud_run_v2_job", {}).values()
        }

    def resource(self, stack: str, kind: str) -> list[dict[str, Any]]:
        return list(self.stacks[f"{self.name}-{stack}"]["resource"].get(kind, {}).values())

    def _container(self, stack: str, name: str, spec: dict[str, Any], urls: tuple[str, ...] = ()) -> Container:
        env, secrets = {}, {}
        for variable in spec.get("env", []):
            if "value" in variable:
                env[variable["name"]] = self.resolve(stack, variable["value"])
            else:
                secrets[variable["name"]] = variable["value_source"]["secret_key_ref"]["secret"]
        probe = spec.get("startup_probe", {}).get("http_get", {})
        return Container(
            name=name,
            role=spec["image"].rsplit("/", 1)[1].split(":")[0],
            urls=urls,
            env=env,
            secrets=secrets,
            command=spec.get("command", []),
            startup_probe_path=probe.get("path"),
        )

    def resolve(self, stack: str, value: str) -> str:
        """``value`` with each ``${...}`` replaced by what it would be on GCP."""
        return _REFERENCE.sub(lambda match: self._expression(stack, match[1]), value)

    def _expression(self, stack: str, expression: str) -> str:
        if trimmed := _TRIMSUFFIX.fullmatch(expression):
            return self._expression(stack, trimmed[1]).removesuffix(trimmed[2])
        if remote := _REMOTE.fullmatch(expression):
            producer = remote[1]
            return self.resolve(producer, self.stacks[producer]["output"][remote[2]]["value"])
        if listed := _LISTED.fullmatch(expression):
            config = self.stacks[stack]["resource"][listed[1]][listed[2]]
            return self._attribute(stack, listed[1], config, listed[3], expression)
        parts = expression.split(".")
        if parts[0] == "data" and len(parts) == 4:
            config = self.stacks[stack]["data"][parts[1]][parts[2]]
            return self._attribute(stack, parts[1], config, parts[3], expression)
        if len(parts) == 3:
            config = self.stacks[stack]["resource"][parts[0]][parts[1]]
            return self._attribute(stack, parts[0], config, parts[2], expression)
        raise UnknownValue(f"{stack}: ${{{expression}}}: not a reference the rehearsal can follow")

    def _attribute(self, stack: str, kind: str, config: dict[str, Any], attribute: str, expression: str) -> str:
        if isinstance(config.get(attribute), (str, int)):
            return self.resolve(stack, str(config[attribute]))
        project = self._provider(stack)["project"]
        made_by_gcp = {
            ("google_cloud_run_v2_service", "uri"): lambda: f"https://{config['name']}-{RUN_APP_HASH}.a.run.app",
            ("google_project", "number"): lambda: PROJECT_NUMBER,
            ("google_sql_database_instance", "private_ip_address"): lambda: CLOUD_SQL_PRIVATE_IP,
            ("google_sql_database_instance", "server_ca_cert[0].cert"): lambda: CLOUD_SQL_SERVER_CA,
            ("google_service_account", "email"): lambda: f"{config['account_id']}@{project}.iam.gserviceaccount.com",
            ("google_apikeys_key", "key_string"): lambda: BROWSER_KEY,
            ("google_redis_instance", "host"): lambda: MEMORYSTORE_HOST,
            ("google_redis_instance", "server_ca_certs[0].cert"): lambda: MEMORYSTORE_SERVER_CA,
        }
        if (kind, attribute) not in made_by_gcp:
            raise UnknownValue(f"{stack}: ${{{expression}}}: the rehearsal does not know what GCP puts there")
        return made_by_gcp[kind, attribute]()

    def _provider(self, stack: str) -> dict[str, Any]:
        google: dict[str, Any]
        (google,) = self.stacks[stack]["provider"]["google"]
        return google
