"""Memorystore for Redis on the VPC's Private Services Access range, with AUTH and TLS, and its
AUTH string in Secret Manager for the one client that reads it."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.redis_instance import RedisInstance
from cdktf_cdktf_provider_google.secret_manager_secret import (
    SecretManagerSecret,
    SecretManagerSecretReplication,
    SecretManagerSecretReplicationUserManaged,
    SecretManagerSecretReplicationUserManagedReplicas,
)
from cdktf_cdktf_provider_google.secret_manager_secret_version import SecretManagerSecretVersion
from constructs import Construct

from hybrid.config import RedisSettings


@dataclass(frozen=True)
class RedisProps:
    name: str
    project: str
    region: str
    # The VPC, as the Private Services Access connection names it: the instance waits for it.
    private_services_network: str
    psa_range: str  # the allocated range the instance's address comes from
    auth_secret_id: str
    # The environment file's [redis]: tier, size, version. Its defaults are the store's.
    settings: RedisSettings


class RedisStore(Construct):
    def __init__(self, scope: Construct, id_: str, props: RedisProps) -> None:
        super().__init__(scope, id_)
        self.instance = RedisInstance(
            self,
            "instance",
            name=props.name,
            region=props.region,
            tier=props.settings.tier,
            memory_size_gb=props.settings.memory_size_gb,
            redis_version=props.settings.version,
            # The address comes from the range Cloud SQL's does, over the same peering
            # (cloud.google.com/memorystore/docs/redis/networking#private_services_access).
            connect_mode="PRIVATE_SERVICE_ACCESS",
            authorized_network=props.private_services_network,
            reserved_ip_range=props.psa_range,
            # Clients must send the AUTH string (cloud.google.com/memorystore/docs/redis/about-redis-auth),
            # over TLS, verifying the server against the instance's CA
            # (cloud.google.com/memorystore/docs/redis/about-in-transit-encryption).
            auth_enabled=True,
            transit_encryption_mode="SERVER_AUTHENTICATION",
        )
        # The AUTH string is in Terraform's state whatever we do (the provider reads it back as
        # auth_string, sensitive): the state bucket is private and versioned (docs/deploying.md, step 0).
        # Secret Manager is where the gateway reads it, never from an output or a plain variable.
        self.auth_secret = SecretManagerSecret(
            self,
            "auth-secret",
            secret_id=props.auth_secret_id,
            # Kept in the region its one reader and the instance are in
            # (cloud.google.com/secret-manager/docs/choosing-replication#user-managed).
            replication=SecretManagerSecretReplication(
                user_managed=SecretManagerSecretReplicationUserManaged(
                    replicas=[SecretManagerSecretReplicationUserManagedReplicas(location=props.region)]
                )
            ),
        )
        SecretManagerSecretVersion(
            self,
            "auth-secret-version",
            # Named, not referenced, so the apply-order check can match it; depends_on orders it.
            secret=f"projects/{props.project}/secrets/{props.auth_secret_id}",
            secret_data=self.instance.auth_string,
            depends_on=[self.auth_secret],
        )

    @property
    def host(self) -> str:
        return self.instance.host

    @property
    def server_ca_pem(self) -> str:
        """The instance's server CA (PEM) that TLS clients verify it against."""
        return self.instance.server_ca_certs.get(0).cert
