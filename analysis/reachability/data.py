"""The edges to the data stores in Private Services Access: Cloud SQL and Memorystore."""

from __future__ import annotations

from collections.abc import Callable

from analysis.reachability.cloudrun import JOB, RunService, attachment, identity, run_service
from analysis.reachability.core import POSTGRES, REDIS_TLS, Caller, Chain, EnvironmentFacts, Json, Net, Verdict, net
from analysis.reachability.firewall import Packet, allows, firewall_rules
from analysis.reachability.iam import project_holders
from analysis.reachability.kubernetes import batch_worker
from analysis.reachability.synth import Ref, Synth


def cloud_run_to_database(caller: str) -> Callable[[Synth, EnvironmentFacts], Verdict]:
    """A Cloud Run service connecting to Cloud SQL in the Private Services Access range."""

    def check(s: Synth, facts: EnvironmentFacts) -> Verdict:
        return _cloud_run_to_database(s, Chain(f"{caller} -> Cloud SQL"), run_service(s, caller))

    return check


orchestrator_to_database = cloud_run_to_database("orchestrator")


def regional_orchestrator_to_database(region: str) -> Callable[[Synth, EnvironmentFacts], Verdict]:
    """The orchestrator of a further region connecting to Cloud SQL in the environment's region:
    its private IP is reached over the VPC's peering from any of the VPC's regions
    (cloud.google.com/sql/docs/postgres/private-ip), so the proof is the one of its own subnet."""

    def check(s: Synth, facts: EnvironmentFacts) -> Verdict:
        caller = run_service(s, "orchestrator", region=region)
        return _cloud_run_to_database(s, Chain(f"orchestrator ({region}) -> Cloud SQL"), caller)

    return check


def job_to_database(s: Synth, facts: EnvironmentFacts) -> Verdict:
    """The bootstrap job logs in once as the built-in postgres user, its password in Secret Manager."""
    return _cloud_run_to_database(s, Chain("db-bootstrap job -> Cloud SQL"), run_service(s, "db-bootstrap", JOB))


def _cloud_run_to_database(s: Synth, c: Chain, caller: RunService | None) -> Verdict:
    instances = list(s.all_resources("google_sql_database_instance"))
    if not c.check(caller is not None and bool(instances), "the caller on Cloud Run and a Cloud SQL instance exist"):
        return c.verdict()
    assert caller is not None

    def reach(network: Ref, psa_range: Net, port: int) -> bool:
        return _into_private_services_range(s, c, caller, network, psa_range, port)

    who = Caller(caller.name, s.stack_id("services"), caller.env, identity(s, caller), secrets=caller.secret_env())
    _to_database(s, c, who, instances, reach)
    return c.verdict()


def _into_private_services_range(
    s: Synth, c: Chain, caller: RunService, network: Ref, psa_range: Net, port: int
) -> bool:
    """``caller`` (Cloud Run) sends to ``port`` on the Private Services Access range of ``network``;
    False when it has no VPC attachment at all."""
    attached = attachment(s, c, caller)
    if attached is None:
        return False
    c.check(
        attached.network.target == network.target,
        f"{caller.name} egresses into {s.name_of(network)}, the instance's peered VPC",
    )
    if c.check(attached.routes_into_vpc(psa_range), f"{caller.name}: {attached.describe_routing(psa_range)}"):
        # Cloud SQL and Memorystore sit in Google's peered network: only our egress rules apply
        # on the way (cloud.google.com/vpc/docs/vpc-peering#firewall_rules). The whole range, as
        # the instance's address is allocated from it at deploy time.
        packet = Packet("EGRESS", attached.source, psa_range, port, target_tags=attached.tags)
        allows(c, firewall_rules(s, attached.network), packet)
    return True


def gateway_to_redis(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("gateway -> Memorystore (rate limit)")
    gateway = run_service(s, "gateway")
    instances = list(s.all_resources("google_redis_instance"))
    if not c.check(gateway is not None and bool(instances), "the gateway service and a Memorystore instance exist"):
        return c.verdict()
    assert gateway is not None
    services, env = s.stack_id("services"), gateway.env
    matching = [
        (st, key, inst)
        for st, key, inst in instances
        if s.refers_to(services, env.get("REDIS_HOST"), (st, "google_redis_instance", key), "host")
    ]
    if not c.check(bool(matching), f"REDIS_HOST = {s.show(services, env.get('REDIS_HOST'))}"):
        return c.verdict()
    stack_id, key, instance = matching[0]
    # cloud.google.com/memorystore/docs/redis/about-redis-auth, .../about-in-transit-encryption:
    # with AUTH and SERVER_AUTHENTICATION a client sends the AUTH string over TLS, on port 6378.
    c.check(instance.get("auth_enabled") is True, f"{instance.get('name')}: AUTH required")
    c.check(
        instance.get("transit_encryption_mode") == "SERVER_AUTHENTICATION",
        f"{instance.get('name')}: in-transit encryption (TLS, server authenticated)",
    )
    c.check(
        s.refers_to(services, env.get("REDIS_SERVER_CA"), (stack_id, "google_redis_instance", key)),
        "REDIS_SERVER_CA is the instance's server CA",
    )
    c.check("REDIS_AUTH" in gateway.secret_env(), "REDIS_AUTH comes from Secret Manager")
    port = int(env.get("REDIS_PORT") or 0)
    c.check(port == REDIS_TLS, f"REDIS_PORT = {port}, the TLS port {REDIS_TLS}")
    c.check(instance.get("connect_mode") == "PRIVATE_SERVICE_ACCESS", "connect mode PRIVATE_SERVICE_ACCESS")
    psa = _private_services_range(s, c, stack_id, {"private_network": instance.get("authorized_network")})
    if psa is None:
        return c.verdict()
    network, psa_range = psa
    _into_private_services_range(s, c, gateway, network, psa_range, port)
    return c.verdict()


def worker_to_database(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("worker -> Cloud SQL")
    worker = batch_worker(s, c)
    instances = list(s.all_resources("google_sql_database_instance"))
    if worker is None or not c.check(bool(instances), "a Cloud SQL instance exists"):
        return c.verdict()

    def reach(network: Ref, psa_range: Net, port: int) -> bool:
        c.check(
            worker.network.target == network.target,
            f"{worker.name}'s cluster is in {s.name_of(network)}, the instance's peered VPC",
        )
        # From the Pods' own addresses (see PodCaller), through the VPC's egress rules only, as above.
        allows(c, firewall_rules(s, worker.network), Packet("EGRESS", worker.source, psa_range, port))
        return True

    _to_database(s, c, Caller(worker.name, worker.stack_id, worker.env, worker.identity), instances, reach)
    return c.verdict()


def _to_database(
    s: Synth,
    c: Chain,
    caller: Caller,
    instances: list[tuple[str, str, Json]],
    reach: Callable[[Ref, Net, int], bool],
) -> None:
    """``caller`` logs in to the instance its PGHOST names; ``reach`` checks the network path."""
    env = caller.env
    pghost = env.get("PGHOST")
    matching = [
        (st, key, inst)
        for st, key, inst in instances
        if s.refers_to(caller.stack_id, pghost, (st, "google_sql_database_instance", key), "private_ip_address")
    ]
    if not c.check(bool(matching), f"PGHOST = {s.show(caller.stack_id, pghost)}"):
        return
    stack_id, key, instance = matching[0]
    settings = instance.get("settings") or {}
    ip = settings.get("ip_configuration") or {}
    # cloud.google.com/sql/docs/postgres/private-ip: ipv4_enabled false leaves only the private IP.
    c.check(ip.get("ipv4_enabled") is False, f"{instance.get('name')}: no public IP (ipv4_enabled false)")
    psa = _private_services_range(s, c, stack_id, ip)
    if psa is None:
        return
    network, psa_range = psa
    if not reach(network, psa_range, int(env.get("PGPORT") or POSTGRES)):
        return

    # cloud.google.com/sql/docs/postgres/configure-ssl-instance: ENCRYPTED_ONLY needs TLS,
    # TRUSTED_CLIENT_CERTIFICATE_REQUIRED a client certificate too.
    ssl_mode, sslmode = ip.get("ssl_mode", "ALLOW_UNENCRYPTED_AND_ENCRYPTED"), env.get("PGSSLMODE")
    c.check(
        sslmode in ("require", "verify-ca", "verify-full") and ssl_mode != "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
        f"PGSSLMODE = {sslmode} against ssl_mode {ssl_mode}",
    )
    if env.get("DATABASE_AUTH") == "iam":
        _iam_login(s, c, caller, stack_id, key, instance)
    else:
        _password_login(s, c, caller)
    database = env.get("PGDATABASE")
    c.check(
        any(
            s.refers_to(caller.stack_id, database, (st, "google_sql_database", k))
            and s.refers_to(st, db.get("instance"), (stack_id, "google_sql_database_instance", key))
            for st, k, db in s.all_resources("google_sql_database")
        ),
        f"PGDATABASE = {s.show(caller.stack_id, database)}, a database of {instance.get('name')}",
    )


def _password_login(s: Synth, c: Chain, caller: Caller) -> None:
    """PGPASSWORD comes from a Secret Manager secret the caller may read
    (cloud.google.com/secret-manager/docs/access-control: roles/secretmanager.secretAccessor)."""
    secret = caller.secrets.get("PGPASSWORD")
    if not c.present(secret, f"{caller.name}: password login, PGPASSWORD from Secret Manager"):
        return
    readers = {
        s.principal(stack_id, grant.get("member"))
        for stack_id, _, grant in s.all_resources("google_secret_manager_secret_iam_member")
        if grant.get("role") == "roles/secretmanager.secretAccessor"
        and s.render(stack_id, str(grant.get("secret_id"))) == secret
    }
    c.check(
        caller.identity in readers,
        f"{caller.identity} may read the secret {secret} (granted to {', '.join(sorted(readers)) or 'nobody'})",
    )


def _private_services_range(s: Synth, c: Chain, stack_id: str, ip: Json) -> tuple[Ref, Net] | None:
    # cloud.google.com/vpc/docs/configure-private-services-access: the instance's private IP
    # comes from the ranges reserved for the service networking connection.
    network = s.ref(stack_id, ip.get("private_network"))
    if network is None:
        c.fail(f"private_network {ip.get('private_network')} is not resolvable")
        return None
    if network.type == "google_service_networking_connection":
        connection = s.config(network)
        ranges = [s.ref(network.stack, r) for r in connection.get("reserved_peering_ranges") or ()]
        network = s.ref(network.stack, connection.get("network"))
    else:
        ranges = []
    addresses = [s.config(r) for r in ranges if r is not None and r.type == "google_compute_global_address"]
    if not c.check(
        network is not None and bool(addresses), "the instance's network has a Private Services Access range"
    ):
        return None
    assert network is not None
    address = addresses[0]
    psa_range = net(f"{address['address']}/{address['prefix_length']}")
    c.ok(f"private IP from Private Services Access range {address.get('name')} ({psa_range}) in {s.name_of(network)}")
    return network, psa_range


def _iam_login(s: Synth, c: Chain, caller: Caller, stack_id: str, key: str, instance: Json) -> None:
    # cloud.google.com/sql/docs/postgres/iam-authentication and /add-manage-iam-users: the flag
    # cloudsql.iam_authentication on, a CLOUD_IAM_SERVICE_ACCOUNT user named as the account's
    # email without .gserviceaccount.com, and roles/cloudsql.instanceUser for the account.
    flags = {f.get("name"): f.get("value") for f in (instance.get("settings") or {}).get("database_flags") or ()}
    c.check(
        flags.get("cloudsql.iam_authentication") == "on", "DATABASE_AUTH = iam: flag cloudsql.iam_authentication on"
    )
    who = caller.identity
    users = [
        s.principal(st, user.get("name"))
        for st, _, user in s.all_resources("google_sql_user")
        if user.get("type") == "CLOUD_IAM_SERVICE_ACCOUNT"
        and s.refers_to(st, user.get("instance"), (stack_id, "google_sql_database_instance", key))
        and ".gserviceaccount.com" in user.get("name", "")
    ]
    c.check(who in users, f"IAM database user for {who} (type CLOUD_IAM_SERVICE_ACCOUNT): {', '.join(users) or 'none'}")
    pguser = caller.env.get("PGUSER", "")
    c.check(
        s.principal(caller.stack_id, pguser) == who and ".gserviceaccount.com" in pguser,
        f"PGUSER is {who}'s email without .gserviceaccount.com",
    )
    c.check(who in project_holders(s, "roles/cloudsql.instanceUser"), f"{who} holds roles/cloudsql.instanceUser")
