"""The contract between the stacks and the services: what each Cloud Run container is told.

Each service's own settings model (``services/<service>/settings.py``) is the one
source of truth for its environment. The services stack fills the model with the
environment file's values and its own wiring (URLs, database, routes), the model
validates them, and the container's env is rendered from the validated model, so a
setting the service needs but the stack does not give fails at synth, with the
file and key, instead of a revision crashing on Cloud Run. The same rendering
starts the services in the deploy rehearsal test.

Which model is a service's goes by convention, so a new service needs no entry here: the
service ``<name>`` of the topology that is built (hybrid/topology.py) has its code in
``services/<name with - as _>/``, whose ``settings.py`` defines ``<Name>Settings``, the
name in CamelCase (``services/orchestrator/settings.py``: ``OrchestratorSettings``;
``my-reranker``: ``services/my_reranker/settings.py``, ``MyRerankerSettings``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, InitSettingsSource

from hybrid.config import Environment, must
from hybrid.config.errors import did_you_mean
from hybrid.topology import for_environment
from services.modelcalls.settings import Route
from services.orchestrator.settings import GOOGLE_CERTS_URL, OrchestratorSettings

# Identity Platform's REST endpoint (cloud.google.com/identity-platform/docs/use-rest-api).
IDENTITY_PLATFORM_URL = "https://identitytoolkit.googleapis.com"
SELF_HOSTED = "self-hosted"
VERTEX = "vertex"
# The self-hosted model's Cloud Run GPU spill target ([inference] spill_to = "cloud_run").
SELF_HOSTED_SPILL = "self-hosted-spill"


def settings_model(service: str) -> type[BaseSettings]:
    """The settings model of the built service ``service``, found by the convention above."""
    package = service.replace("-", "_")
    name = "".join(part.capitalize() for part in package.split("_")) + "Settings"
    model = getattr(importlib.import_module(f"services.{package}.settings"), name, None)
    if not (isinstance(model, type) and issubclass(model, BaseSettings)):
        raise TypeError(f"services/{package}/settings.py: must define {name}, the {service}'s BaseSettings model")
    return model


def run_app_url(service: str, project_number: str, region: str) -> str:
    """A Cloud Run service's deterministic URL, known before the service exists
    (cloud.google.com/run/docs/triggering/https-request#deterministic)."""
    return f"https://{service}-{project_number}.{region}.run.app"


@dataclass(frozen=True)
class Wiring:
    """What only the stacks know: where the other parts are (Terraform references at synth).
    A value still unknown is None, and a service that needs it is refused."""

    # The run.app URL of each service another calls, by service: the caller's setting
    # ``<service>_url`` (hybrid/topology.py's url_settings).
    urls: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The orchestrator's deterministic URL: the audience of the gateway's ID tokens, and what the
    # orchestrator checks them for (its own uri would make it depend on itself).
    orchestrator_audience: str | None = None
    gateway_account: str | None = None  # the gateway's service account's email: the orchestrator's caller
    frontend_origin: str | None = None
    inference_url: str | None = None
    # The Cloud Run GPU spill target's API ([inference] spill_to = "cloud_run"): its run.app URL + /v1.
    inference_spill_url: str | None = None
    database_host: str | None = None
    database_server_ca: str | None = None  # the Cloud SQL instance's server CA (PEM)
    database_name: str | None = None
    database_user: str | None = None
    worker_database_user: str | None = None
    identity_platform_api_key: str | None = None
    # The gateway's rate-limit store ([redis]): its private address, TLS port and server CA.
    redis_host: str | None = None
    redis_port: str | None = None
    redis_server_ca: str | None = None

    def with_url(self, service: str, url: str) -> Wiring:
        """This wiring, with ``service``'s URL known (once the stack has made it)."""
        return dataclasses.replace(self, urls={**self.urls, service: url})

    @classmethod
    def placeholder(cls, env: Environment) -> Wiring:
        """Stand-ins of the right shape, to check an environment file before any stack exists."""

        def run(service: str) -> str:
            return run_app_url(env.names.service[service], "PROJECT_NUMBER", env.region)

        return cls(
            urls={callee: run(callee) for wired in url_settings(env).values() for callee in wired.values()},
            orchestrator_audience=run("orchestrator"),
            gateway_account=f"{env.names.service['gateway']}@{env.project_id}.iam.gserviceaccount.com",
            frontend_origin=run("frontend"),
            inference_url=f"http://{env.network.inference_address}:{env.network.inference_port}/v1",
            inference_spill_url=run("inference-spill") + "/v1" if env.inference.spills_to_cloud_run else None,
            database_host="10.0.0.1",
            database_server_ca="SERVER_CA_PEM",
            database_name=env.database.database_name,
            database_user=f"{env.names.orchestrator_account}@{env.project_id}.iam",
            worker_database_user=f"{env.names.worker_account}@{env.project_id}.iam",
            identity_platform_api_key="API_KEY",
        )


class ContractError(Exception):
    """A service would not start with what the environment file and the stack give it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def self_hosted_model(env: Environment) -> str:
    """The model name the self-hosted server answers to (vLLM serves it under its id)."""
    inference = env.inference
    return inference.gke_server.model if inference.placement == "gke" else inference.cloud_run_server.model


def self_hosted_context(env: Environment) -> dict[str, Any]:
    """The self-hosted route's max_model_len: the GKE server's --max-model-len; none on Cloud Run,
    where vLLM takes the model's own, which the catalog does not hold (the route is rendered
    with the fields set only)."""
    return {"max_model_len": env.inference.gke_server.max_model_len} if env.inference.placement == "gke" else {}


def url_settings(env: Environment) -> dict[str, dict[str, str]]:
    """Each service's settings that hold the run.app URL of a service it calls: {service: {field: callee}}."""
    return for_environment(env).url_settings()


def _stack_values(env: Environment, wiring: Wiring) -> dict[str, dict[str, object]]:
    """Each built service's settings that the stack decides, by field name of its model: a
    service the stack decides nothing for but how it calls others is given that alone."""
    values = _decided(env, wiring)
    for service in for_environment(env).built():
        values.setdefault(service, {})
    for service, wired in url_settings(env).items():
        values[service].update({setting: wiring.urls.get(callee) for setting, callee in wired.items()})
    for service, wired in for_environment(env).id_token_settings().items():
        values[service].update(dict.fromkeys(wired, "google-id-token"))
    return values


def _decided(env: Environment, wiring: Wiring) -> dict[str, dict[str, object]]:
    """Each service's settings that the stack decides, but the URLs of the services it calls."""
    services = env.services
    gateway, frontend = services.gateway, services.frontend
    # Identity Platform of this project unless the file names another issuer: its ID tokens have
    # issuer https://securetoken.google.com/<project> and audience <project>
    # (firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library).
    return {
        "gateway": {
            "jwks_url": gateway.jwks_url,
            "jwt_issuer": gateway.jwt_issuer or f"https://securetoken.google.com/{env.project_id}",
            "jwt_audience": gateway.jwt_audience or env.project_id,
            "orchestrator_audience": wiring.orchestrator_audience,
            "allowed_origins": wiring.frontend_origin,
            # Cloud Run ends a request at the service's timeout; wait for the orchestrator as long.
            "upstream_read_timeout_seconds": gateway.timeout_seconds,
            # With [redis], the rate limit's buckets are shared; its AUTH string is a secret.
            **(
                {
                    "redis_host": wiring.redis_host,
                    "redis_port": wiring.redis_port,
                    "redis_server_ca": wiring.redis_server_ca,
                }
                if env.redis.enabled
                else {}
            ),
        },
        "frontend": {
            "default_model": frontend.default_model or self_hosted_model(env),
            "auth_mode": "identity-platform",
            "identity_platform_api_key": wiring.identity_platform_api_key,
            "identity_platform_url": IDENTITY_PLATFORM_URL,
        },
        "orchestrator": {
            **_routing(env, wiring, spill_target=True),
            # Cut a backend's answer where Cloud Run would end the request anyway; the ledger's
            # reconciliation of rows a dead instance left behind counts from it too.
            "max_request_seconds": services.orchestrator.timeout_seconds,
            "database_auth": "iam",
            "pghost": wiring.database_host,
            "pgdatabase": wiring.database_name,
            "pguser": wiring.database_user,
            **_database_tls(wiring),
            # Only the gateway, with a Google ID token for the orchestrator's URL (the worker
            # reads and writes the database itself, and nothing else calls the orchestrator).
            "caller_auth": "google-id-token",
            "caller_audience": wiring.orchestrator_audience,
            "allowed_callers": wiring.gateway_account,
            # Rendered though it is the default: the deploy rehearsal points it at its stand-in.
            "caller_certs_url": GOOGLE_CERTS_URL,
            # Batch jobs, with the workers tier only: unset, the batch routes answer 404.
            **(_batch_values(env, wiring) if env.workers.enabled else {}),
        },
        **({"worker": _worker_values(env, wiring)} if env.workers.enabled else {}),
    }


def _routing(env: Environment, wiring: Wiring, *, spill_target: bool) -> dict[str, object]:
    """The backends and routes, the orchestrator's and the worker's alike: a batch line is served
    as an interactive request for the same model is. The self-hosted route's spill thresholds
    are always there, its spill target only with ``spill_target``."""
    return {
        "backends": {
            SELF_HOSTED: {
                "kind": "openai",
                "url": wiring.inference_url,
                # vLLM's Prometheus endpoint, beside its API (docs.vllm.ai/en/stable/usage/metrics/),
                # read for the route's saturation.
                **(
                    {"metrics_url": wiring.inference_url.removesuffix("/v1") + "/metrics"}
                    if wiring.inference_url
                    else {}
                ),
                # A Cloud Run model server admits only the orchestrator's identity.
                "auth": "google-id-token" if env.inference.placement == "cloud_run" else "none",
            },
            VERTEX: {"kind": "vertex", "project": env.project_id, "location": env.region},
            # Like a Cloud Run model server in the self-hosted place, it admits only the orchestrator's
            # identity; no metrics_url: its instances scale on requests, and are never saturated for long.
            **(
                {SELF_HOSTED_SPILL: {"kind": "openai", "url": wiring.inference_spill_url, "auth": "google-id-token"}}
                if spill_target and env.inference.spills_to_cloud_run
                else {}
            ),
        },
        # The self-hosted model first, by its exact name: a self-hosted google/gemma-* must
        # not fall into the google/* route to Vertex AI.
        "routes": [
            Route(
                match=self_hosted_model(env),
                backends=[SELF_HOSTED],
                **self_hosted_context(env),
                **_spill(env, target=spill_target),
            ),
            Route(match="google/*", backends=[VERTEX]),
        ],
    }


def _spill(env: Environment, *, target: bool) -> dict[str, Any]:
    """The self-hosted route's thresholds when [inference] names a spill target, with the target
    itself if ``target``: without it, batch lines still back off at the thresholds, and wait."""
    inference = env.inference
    if inference.spill_model is None:
        return {}
    return {
        **(
            {
                "spill_to": SELF_HOSTED_SPILL if inference.spills_to_cloud_run else VERTEX,
                "spill_model": inference.spill_model,
            }
            if target
            else {}
        ),
        "spill_waiting": inference.spill_waiting,
        "spill_kv_cache": inference.spill_kv_cache,
        "batch_share": inference.batch_share,
        "batch_spill": inference.batch_spill,
    }


def _database_tls(wiring: Wiring) -> dict[str, object]:
    """TLS to Cloud SQL (its ssl_mode ENCRYPTED_ONLY), verifying the server against the instance's
    server CA before the IAM token goes to it as the password. verify-ca, not verify-full: the
    clients connect to the private IP, and verify-full checks the host name against the
    certificate as well (postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-SSLMODE-STATEMENTS)."""
    return {"pgsslmode": "verify-ca", "database_server_ca": wiring.database_server_ca}


def _batch_values(env: Environment, wiring: Wiring) -> dict[str, object]:
    """Where the orchestrator stores batch files and publishes their lines (the workers layer's),
    and the worker's database user, whom it grants the batch tables and the ledger it owns."""
    names = env.names
    return {
        "batch_bucket": names.batch_bucket,
        "batch_topic": f"projects/{env.project_id}/topics/{names.batch_topic}",
        "batch_worker_database_user": wiring.worker_database_user,
    }


def _worker_values(env: Environment, wiring: Wiring) -> dict[str, object]:
    names, workers, project = env.names, env.workers, env.project_id
    quota = "DAILY_TOKEN_QUOTA"
    return {
        # Batch lines never spill to a Cloud Run GPU (config refuses batch_spill with it): the worker
        # neither knows it nor may invoke it.
        **_routing(env, wiring, spill_target=not env.inference.spills_to_cloud_run),
        "database_auth": "iam",
        "pghost": wiring.database_host,
        "pgdatabase": wiring.database_name,
        "pguser": wiring.worker_database_user,
        **_database_tls(wiring),
        # The user's quota counts batch lines as the orchestrator counts requests: the same number.
        "daily_token_quota": env.services.orchestrator.env.get(quota)
        or OrchestratorSettings.model_fields[quota.lower()].default,
        "topic": _batch_values(env, wiring)["batch_topic"],
        "subscription": f"projects/{project}/subscriptions/{names.batch_subscription}",
        "dead_letter_topic": f"projects/{project}/topics/{names.dead_letter_topic}",
        "dead_letter_subscription": f"projects/{project}/subscriptions/{names.dead_letter_subscription}",
        "batch_bucket": names.batch_bucket,
        "max_outstanding_messages": workers.max_outstanding_messages,
        "max_delivery_attempts": workers.queue.max_delivery_attempts,
        # A claim outlives the ack deadline, so a line is not claimed twice while Pub/Sub still
        # holds its message for the first worker.
        "claim_seconds": workers.queue.ack_deadline_seconds + 60,
    }


# The worker on GKE takes no Secret Manager secrets from the file.
_NO_SECRETS: Mapping[str, str] = {}


def _overrides(env: Environment, service: str) -> tuple[str, Mapping[str, str], Mapping[str, str]]:
    """Where ``service``'s own settings are in the environment file: its table, env and secrets."""
    if service == "worker":
        return "workers.deployment", env.workers.deployment.env, _NO_SECRETS
    table = env.services.sizing(service)
    return f"services.{service}", table.env, table.secrets


def service_settings(env: Environment, wiring: Wiring, only: Iterable[str] | None = None) -> dict[str, BaseSettings]:
    """The validated settings model of each built service (``only`` those named); ContractError lists every problem."""
    problems: list[str] = []
    built: dict[str, BaseSettings] = {}
    for service, values in _stack_values(env, wiring).items():
        if only is not None and service not in only:
            continue
        model = settings_model(service)
        where, plain, secrets = _overrides(env, service)
        fields = {name.upper(): name for name in model.model_fields}
        for table, given in (("env", plain), ("secrets", secrets)):
            for name in sorted(given):
                if name not in fields:
                    problems.append(
                        f"{where}.{table}.{name}: unknown setting{did_you_mean(name, fields)}: "
                        f"must be one the {service} reads: {', '.join(sorted(fields))}"
                    )
                elif values.get(fields[name]) is not None:
                    problems.append(f"{where}.{table}.{name}: must not be set here: the stack sets it")
        # Secrets reach the container from Secret Manager; check the plain ones here.
        overrides = {fields[name]: value for name, value in plain.items() if name in fields}
        try:
            built[service] = _validated(
                model,
                {
                    **{k: v for k, v in values.items() if v is not None},
                    **overrides,
                    **{fields[name]: "SECRET" for name in secrets if name in fields},
                },
            )
        except ValidationError as err:
            problems += [_describe(where, service, problem, overrides) for problem in err.errors()]
    if problems:
        raise ContractError(problems)
    return built


def _validated(model: type[BaseSettings], values: dict[str, object]) -> BaseSettings:
    """``values`` validated by the service's model, and nothing else. The model is a BaseSettings,
    whose constructor (and so model_validate) also reads the process environment: here that
    is the synth's shell, not the container, so its one source is what it is given."""
    return model(_build_sources=((InitSettingsSource(model, init_kwargs=values),), values))


def _describe(where: str, service: str, problem: ErrorDetails, overrides: Mapping[str, str]) -> str:
    field = str(problem["loc"][0]) if problem["loc"] else ""
    message = must(problem["msg"])
    if field in overrides:
        return f"{where}.env.{field.upper()} = {overrides[field]!r}: {message}"
    if problem["type"] == "missing":
        return f"{where}: the {service} needs {field.upper()}, which nothing sets"
    return f"{where}: {field.upper()}: {message}" if field else f"{where}: {message}"


def render(settings: BaseModel, *, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """The environment variables that make ``settings`` again when the service loads them."""
    env = {}
    for name, value in settings.model_dump(mode="json", exclude_unset=True).items():
        if name in exclude or value is None:
            continue
        if isinstance(value, (dict, list)):
            env[name.upper()] = json.dumps(value, separators=(",", ":"), sort_keys=True)
        elif isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        else:
            env[name.upper()] = str(value)
    return env


def container_env(env: Environment, wiring: Wiring, service: str) -> dict[str, str]:
    """The service's plain environment variables (its secrets come from Secret Manager apart)."""
    settings = service_settings(env, wiring, only=(service,))[service]
    _, _, secrets = _overrides(env, service)
    return render(settings, exclude=frozenset(name.lower() for name in secrets))


def gateway_requests_per_user_minute(env: Environment) -> float:
    """The most requests one user gets through the gateway in a minute: its token bucket's
    refill a minute plus a full burst (services.gateway.ratelimit), as the environment sets them."""
    settings = service_settings(env, Wiring.placeholder(env), only=("gateway",))["gateway"]
    return float(settings.rate_limit_per_minute) + float(settings.rate_limit_burst)  # type: ignore[attr-defined]
