"""The platform as deployed, on this machine: a deploy rehearsal (scripts/local_chain.py, the
deploy rehearsal test and the browser tests start it).

It synthesizes an environment (dev by default), reads what Cloud Run would run from the
synthesized services stack (devtools/deployed_spec.py), and starts each service as its image
would (its files, packages and command, in a process of its own: devtools/image_tree.py) with
exactly the environment the synthesized spec declares. Only Google's side is replaced, each by a named stand-in that
speaks its protocol, and only these values are translated to point at them:

  a service's run.app URL          -> the local service
  Cloud SQL's private IP           -> PostgreSQL 15 on 127.0.0.2:5432 (or LOCAL_CHAIN_DATABASE_HOST), TLS, with Cloud SQL's
                                      roles, database and IAM user as the database stack makes them
  Cloud SQL's server CA            -> the CA that issued that server's certificate
  the model servers' ILB address   -> the model stand-in (devtools/standins/openai_upstream.py) or --upstream
  Identity Platform, its JWKS      -> devtools/standins/identity_platform.py
  the metadata server              -> devtools/standins/metadata_server.py (ID and access tokens),
                                      one per service, serving the account it runs as
  Google's ID-token keys (certs)   -> the metadata stand-ins' shared signing key: the orchestrator
                                      checks the gateway's ID tokens as on Cloud Run
  Secret Manager                   -> values made here for each secret the spec references
  Memorystore (where [redis] is on) -> nothing: its address answers no one, so the gateway limits
                                      each user per instance, as it does when Redis fails

The one-time jobs (the database bootstrap) run first, as `gcloud run jobs execute` would.

With ``batches`` (run-local's default) the batch path runs too, whether or not the environment
enables its workers tier: the Pub/Sub emulator for Pub/Sub, devtools/standins/gcs.py for Cloud
Storage, and the batch worker as its image runs it, with the orchestrator's model routes and
database identity; the orchestrator is told the bucket and topic where the spec names none.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets as random_secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devtools.deployed_spec import (
    BROWSER_KEY,
    CLOUD_SQL_PRIVATE_IP,
    CLOUD_SQL_SERVER_CA,
    ROOT,
    Container,
    SynthesizedEnvironment,
)
from devtools.harness import Postgres, Server, free_port
from devtools.image_tree import image_process, image_tree
from devtools.pubsub_emulator import PubSubEmulator
from devtools.standins.gcs import create_app as create_storage
from devtools.standins.identity_platform import JWKS_PATH, identity_issuer
from devtools.standins.identity_platform import create_app as create_identity_platform
from devtools.standins.metadata_server import CERTS_PATH, GoogleSigner
from devtools.standins.metadata_server import create_app as create_metadata
from devtools.standins.openai_upstream import create_app as create_model_standin
from hybrid.topology import declared
from services.orchestrator.settings import GOOGLE_CERTS_URL
from services.servicekit.metrics_address import ADDRESS_VARIABLE as METRICS_ADDRESS
from services.worker.settings import WorkerSettings

DEV = ROOT / "environments" / "dev.toml"
GOOGLE_JWKS = "https://www.googleapis.com" + JWKS_PATH
IDENTITY_PLATFORM = "https://identitytoolkit.googleapis.com"
# Cloud SQL's stand-in's port: libpq's default, as the orchestrator sets none.
DATABASE_PORT = 5432


def database_host() -> str:
    """Cloud SQL's stand-in's address, on loopback: LOCAL_CHAIN_DATABASE_HOST, another loopback
    address, lets several chains (one per xdist worker of the tests) each have one on DATABASE_PORT."""
    return os.environ.get("LOCAL_CHAIN_DATABASE_HOST", "127.0.0.2")


ACCESS_TOKEN = "rehearsal-access-token"  # the metadata stand-in's; the IAM user's password
PASSWORD = "rehearsal-password"  # any email signs in with it
LocalChain = dict[str, Any]  # what local_chain yields: URLs, the database, each service's environment


@contextlib.contextmanager
def local_chain(
    environment: Path = DEV,
    upstream: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    overrides: dict[str, dict[str, str]] | None = None,
    *,
    ports: dict[str, int] | None = None,
    batches: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> Iterator[LocalChain]:
    """Start the chain and yield what a test needs of it: URLs, the identity stand-in's issuer and
    password, the database, each service's environment as started. ``overrides`` (role ->
    variables) are for tests that need other limits; ``ports`` (role -> port) fixes where a
    service listens; ``progress`` is told each step as it begins."""
    progress(f"synthesizing {environment.name}")
    spec = SynthesizedEnvironment.synthesize(environment)
    services, jobs = spec.services(), spec.jobs()
    # A value for each secret any container reads, made up here.
    secret_values = {secret: random_secrets.token_urlsafe(24) for secret in _secrets(services, jobs)}
    with _scratch_database(progress) as (work, database), contextlib.ExitStack() as stack:
        _create_cloud_sql_objects(database, spec, jobs, secret_values)
        metadata, identities = _metadata_servers(stack, services)
        project = spec.stacks[f"{spec.name}-services"]["provider"]["google"][0]["project"]
        issuer = identity_issuer(work / "identity", project)
        identity = stack.enter_context(Server(create_identity_platform(issuer, api_key=BROWSER_KEY, password=PASSWORD)))
        if upstream is None:
            upstream = stack.enter_context(Server(create_model_standin())).url + "/v1"
        ports = {role: (ports or {}).get(role) or free_port() for role in services}
        local = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
        translate = _translations(services, local, database, upstream, identity.url, metadata.url)
        job_environments = _run_jobs(jobs, translate, secret_values, metadata, progress)
        batch = _batch_path(stack, work, project, services["orchestrator"], progress) if batches else {}
        environments = _service_environments(services, translate, secret_values, batch, overrides or {})
        if model:
            orchestrator = environments["orchestrator"]
            orchestrator["BACKENDS"] = _real_upstream(orchestrator["BACKENDS"], model, api_key_env)
        _start_services(stack, services, environments, ports, identities, work, progress)
        if batches:
            progress("starting the batch worker")
            stack.enter_context(
                _worker_process(environments["orchestrator"], _metadata_env(identities["orchestrator"]), work)
            )
        yield dict(
            frontend=local["frontend"],
            identity=identity.url,
            gateway=local["gateway"],
            orchestrator=local["orchestrator"],
            issuer=issuer,
            password=PASSWORD,
            environments=environments,
            database_ca=database.ca_pem,
            jobs={name: (job, job_environments[name]) for name, job in jobs.items()},
            # The ledger's database, as the admin of the whole server (to read what the orchestrator wrote).
            conninfo=make_conninfo(database.conninfo, dbname=environments["orchestrator"]["PGDATABASE"]),
            spec=spec,
            # Where each service's stdout is written (<role>.log, worker.log): its structured logs.
            logs=work,
            metadata=metadata,
            identities=identities,
            model=json.loads(environments["orchestrator"]["ROUTES"])[0]["match"],
            # Each service's /metrics, where its METRICS_ADDRESS says (on loopback, as the sidecar scrapes it).
            metrics={
                role: f"http://{env[METRICS_ADDRESS]}/metrics"
                for role, env in environments.items()
                if METRICS_ADDRESS in env
            },
        )


class LocalChains:
    """The tests' local chains, one at a time (each takes database_host():DATABASE_PORT), the running
    one handed to whoever asks for the same options next: test modules whose tests sign in as
    users of their own need no chain each (tests/conftest.py, ``chain``)."""

    def __init__(self) -> None:
        self._running: contextlib.ExitStack | None = None
        self._options = ""
        self._chain: LocalChain = {}

    def get(self, **options: Any) -> LocalChain:
        """A chain started with ``options`` (local_chain's keyword arguments)."""
        key = json.dumps(options, sort_keys=True, default=str)
        if self._running is None or key != self._options:
            self.stop()
            with contextlib.ExitStack() as starting:
                self._chain = starting.enter_context(local_chain(**options))
                self._running, self._options = starting.pop_all(), key
        return self._chain

    def stop(self) -> None:
        """Stop the running chain, if any: Cloud SQL's address is free for another."""
        if self._running is not None:
            running, self._running = self._running, None
            running.close()


def _secrets(services: dict[str, Container], jobs: dict[str, Container]) -> set[str]:
    return {secret for container in [*services.values(), *jobs.values()] for secret in container.secrets.values()}


def _translations(
    services: dict[str, Container],
    local: dict[str, str],
    database: Postgres,
    upstream: str,
    identity: str,
    metadata: str,
) -> dict[str, str]:
    """What the spec names in Google's cloud -> its stand-in here."""
    return {
        **{url: local[role] for role in services for url in services[role].urls},
        CLOUD_SQL_PRIVATE_IP: database_host(),
        CLOUD_SQL_SERVER_CA: database.ca_pem,
        _self_hosted_base(services["orchestrator"]): upstream.removesuffix("/v1"),
        GOOGLE_JWKS: identity + JWKS_PATH,
        IDENTITY_PLATFORM: identity,
        GOOGLE_CERTS_URL: metadata + CERTS_PATH,
    }


def _run_jobs(
    jobs: dict[str, Container],
    translate: dict[str, str],
    secret_values: dict[str, str],
    metadata: Server,
    progress: Callable[[str], None],
) -> dict[str, dict[str, str]]:
    """Run each job to completion; its environment, by name."""
    job_environments = {
        name: {**_environment(job, translate, secret_values), **_metadata_env(metadata)} for name, job in jobs.items()
    }
    for name, job in jobs.items():
        progress(f"running the job {name}")
        run_job(job, job_environments[name])
    return job_environments


def _service_environments(
    services: dict[str, Container],
    translate: dict[str, str],
    secret_values: dict[str, str],
    batch: dict[str, str],
    overrides: dict[str, dict[str, str]],
) -> dict[str, dict[str, str]]:
    """Each service's environment, in the order they start: each after those it calls, whose URLs
    it is given (hybrid/topology.py)."""
    return {
        role: _own_metrics_port(
            {
                **_environment(services[role], translate, secret_values),
                **(batch if role == "orchestrator" else {}),
                **overrides.get(role, {}),
            }
        )
        for role in declared().start_order()
    }


def _own_metrics_port(env: dict[str, str]) -> dict[str, str]:
    """On Cloud Run each instance has its own loopback; here the services share one host, so
    each serves its metrics on 127.0.0.1 at a port of its own."""
    if METRICS_ADDRESS in env:
        env[METRICS_ADDRESS] = f"127.0.0.1:{free_port()}"
    return env


def _start_services(
    stack: contextlib.ExitStack,
    services: dict[str, Container],
    environments: dict[str, dict[str, str]],
    ports: dict[str, int],
    identities: dict[str, Server],
    work: Path,
    progress: Callable[[str], None],
) -> None:
    for role, env in environments.items():
        progress(f"starting the {role}")
        stack.enter_context(
            service_process(
                services[role], ports[role], {**env, **_metadata_env(identities[role])}, work / f"{role}.log"
            )
        )


@contextlib.contextmanager
def _scratch_database(progress: Callable[[str], None]) -> Iterator[tuple[Path, Postgres]]:
    """A scratch directory and, in it, PostgreSQL started (for Cloud SQL); both gone afterwards."""
    _require_free(database_host(), DATABASE_PORT)
    work = Path(tempfile.mkdtemp(prefix="local-chain-"))
    database = Postgres(work, host=database_host(), port=DATABASE_PORT, superuser="cloudsqladmin", tls=True)
    progress("starting PostgreSQL (for Cloud SQL)")
    database.start()
    try:
        yield work, database
    finally:
        database.stop()
        shutil.rmtree(work, ignore_errors=True)


def _metadata_servers(stack: contextlib.ExitStack, services: dict[str, Container]) -> tuple[Server, dict[str, Server]]:
    """The jobs' metadata server (the default account's) and each service's."""
    # Google signs every account's ID tokens with the same keys; each service's metadata
    # server serves the account the spec runs it as (the jobs' one is the default's).
    google = GoogleSigner()
    metadata = stack.enter_context(Server(create_metadata(access_token=ACCESS_TOKEN, signer=google)))
    identities = {
        role: stack.enter_context(
            Server(create_metadata(access_token=ACCESS_TOKEN, email=container.service_account, signer=google))
        )
        for role, container in services.items()
    }
    return metadata, identities


# The worker's own subscriptions, made here whatever the spec says: the worker runs beside the
# services rather than on the workers' GKE cluster, which the rehearsal does not read.
LINES_SUBSCRIPTION, DEAD_LETTERS, DEAD_LETTER_SUBSCRIPTION = "local-batch-work", "local-batch-dead", "local-batch-dead"


def _batch_path(
    stack: contextlib.ExitStack, work: Path, project: str, orchestrator: Container, progress: Callable[[str], None]
) -> dict[str, str]:
    """Pub/Sub (the emulator) and Cloud Storage (the stand-in), with the topic and subscriptions
    the batch path needs; the orchestrator's variables that point it there."""
    progress("starting the Pub/Sub emulator (Java: a few seconds)")
    pubsub = PubSubEmulator(work, project=project)
    stack.callback(pubsub.stop)
    storage = stack.enter_context(Server(create_storage()))
    topic = orchestrator.env.get("BATCH_TOPIC") or f"projects/{project}/topics/local-batch-lines"
    pubsub.create_topic(topic.rsplit("/", 1)[1])
    pubsub.create_topic(DEAD_LETTERS)
    pubsub.create_subscription(DEAD_LETTER_SUBSCRIPTION, DEAD_LETTERS)
    pubsub.create_subscription(
        LINES_SUBSCRIPTION,
        topic.rsplit("/", 1)[1],
        ack_deadline_seconds=60,
        dead_letter_topic=DEAD_LETTERS,
        max_delivery_attempts=5,
        minimum_backoff_seconds=1,
        maximum_backoff_seconds=10,
    )
    return {
        **pubsub.environment,
        "BATCH_BUCKET": orchestrator.env.get("BATCH_BUCKET") or "local-batch",
        "BATCH_TOPIC": topic,
        "STORAGE_URL": storage.url,
        "STORAGE_AUTH": "none",  # the stand-in takes any token; the metadata stand-in's would do too
    }


@contextlib.contextmanager
def _worker_process(
    orchestrator: dict[str, str], metadata: dict[str, str], work: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The batch worker as its image runs it, with the orchestrator's routes and database identity."""
    topic = orchestrator["BATCH_TOPIC"]
    project = topic.split("/")[1]
    port = free_port()
    env = {
        **{name: value for name, value in orchestrator.items() if name.lower() in WorkerSettings.model_fields},
        "PUBSUB_EMULATOR_HOST": orchestrator["PUBSUB_EMULATOR_HOST"],
        "PUBSUB_PROJECT_ID": orchestrator["PUBSUB_PROJECT_ID"],
        "SUBSCRIPTION": f"projects/{project}/subscriptions/{LINES_SUBSCRIPTION}",
        "DEAD_LETTER_SUBSCRIPTION": f"projects/{project}/subscriptions/{DEAD_LETTER_SUBSCRIPTION}",
        "DEAD_LETTER_TOPIC": f"projects/{project}/topics/{DEAD_LETTERS}",
        "TOPIC": topic,
        "PORT": str(port),
        **metadata,
    }
    _own_metrics_port(env)
    log = work / "worker.log"
    with (
        log.open("wb") as output,
        image_process("worker", env, stop_seconds=30, stdout=output, stderr=subprocess.STDOUT) as process,
    ):
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the batch worker did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield process


def _metadata_env(metadata: Server) -> dict[str, str]:
    """Where google-auth finds the metadata server (its stand-in)."""
    return {"GCE_METADATA_HOST": f"127.0.0.1:{metadata.port}", "GCE_METADATA_IP": f"127.0.0.1:{metadata.port}"}


def caller_check(environment: dict[str, str]) -> str:
    """The orchestrator's caller check as started, in words, for the rehearsal's output."""
    if environment.get("CALLER_AUTH", "google-id-token") != "google-id-token":
        return f"OFF (CALLER_AUTH={environment.get('CALLER_AUTH')}): any caller is served"
    return (
        f"on: Google ID tokens for {environment.get('CALLER_AUDIENCE')} from {environment.get('ALLOWED_CALLERS')}, "
        f"keys from {environment.get('CALLER_CERTS_URL')} (the stand-in's)"
    )


def _require_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise RuntimeError(
                f"{host}:{port} is taken ({err.strerror}): the rehearsal puts Cloud SQL's "
                "stand-in there, on libpq's default port, as the orchestrator names none"
            ) from None


def _self_hosted_base(orchestrator: Container) -> str:
    """The model servers' address as the orchestrator is told it (scheme, host and port)."""
    url = json.loads(orchestrator.env["BACKENDS"])["self-hosted"]["url"]
    base = re.match(r"https?://[^/]+", url)
    if base is None:
        raise ValueError(f"the orchestrator's self-hosted backend is no URL: {url!r}")
    return base[0]


def _real_upstream(backends: str, model: str, api_key_env: str | None) -> str:
    """--upstream with --model: the configured self-hosted name stays; the backend is asked for MODEL."""
    parsed = json.loads(backends)
    parsed["self-hosted"].update({"model": model, **({"api_key_env": api_key_env} if api_key_env else {})})
    return json.dumps(parsed)


def _environment(container: Container, translate: dict[str, str], secret_values: dict[str, str]) -> dict[str, str]:
    env = {}
    for name, value in container.env.items():
        for gcp, local in sorted(translate.items(), key=lambda item: -len(item[0])):
            value = value.replace(gcp, local)
        env[name] = value
    return {**env, **{name: secret_values[secret] for name, secret in container.secrets.items()}}


def _create_cloud_sql_objects(
    database: Postgres, spec: SynthesizedEnvironment, jobs: dict[str, Container], secret_values: dict[str, str]
) -> None:
    """What Cloud SQL and the database stack make: cloudsqlsuperuser and its member postgres
    (not a superuser), the databases (owned by cloudsqlsuperuser), the IAM users (no privileges)."""
    (admin_password,) = {
        secret_values[job.secrets["PGPASSWORD"]] for job in jobs.values() if "PGPASSWORD" in job.secrets
    }
    statements: list[str | sql.Composed] = [
        "CREATE ROLE cloudsqlsuperuser NOLOGIN CREATEROLE CREATEDB",
        sql.SQL("CREATE ROLE postgres LOGIN PASSWORD {} IN ROLE cloudsqlsuperuser").format(sql.Literal(admin_password)),
        *(
            sql.SQL("CREATE DATABASE {} OWNER cloudsqlsuperuser").format(sql.Identifier(db["name"]))
            for db in spec.resource("database", "google_sql_database")
        ),
        *(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(spec.resolve(f"{spec.name}-database", user["name"])), sql.Literal(ACCESS_TOKEN)
            )
            for user in spec.resource("database", "google_sql_user")
            if user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
        ),
    ]
    with psycopg.connect(database.conninfo, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def run_job(job: Container, env: dict[str, str]) -> None:
    """The job as Cloud Run runs it: its image, its command (which replaces the image's CMD)."""
    with image_tree(job.role) as tree:
        result = subprocess.run(**tree.popen_args(env, job.command), capture_output=True, text=True, timeout=60)
    if result.returncode:
        raise RuntimeError(f"job {job.name} failed ({result.returncode}): {result.stderr.strip()}")


@contextlib.contextmanager
def service_process(
    container: Container, port: int, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The service as its image runs it (devtools/image_tree.py), told its port as Cloud Run does."""
    with (
        log.open("wb") as output,
        image_process(
            container.role, {**env, "PORT": str(port)}, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        ) as process,
    ):
        url = f"http://127.0.0.1:{port}{container.startup_probe_path or '/'}"
        deadline = time.monotonic() + 60
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{container.role} did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield process


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
