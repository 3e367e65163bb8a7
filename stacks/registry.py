"""Layer `registry`: the Artifact Registry repository the services' images are pushed to.

A layer of its own, deployed before `services`: a Cloud Run revision pulls its image
when it is created, so the images must be pushed between this layer and that one
(README, "Deploying to a real project").
"""

from __future__ import annotations

from cdktf import TerraformOutput
from cdktf_cdktf_provider_google.artifact_registry_repository import (
    ArtifactRegistryRepository,
    ArtifactRegistryRepositoryDockerConfig,
)
from constructs import Construct

from hybrid.config import Environment
from hybrid.layer import LayerStack
from stacks.network import NetworkStack


def repository_url(env: Environment) -> str:
    return f"{env.region}-docker.pkg.dev/{env.project_id}/{env.names.registry}"


def service_image(env: Environment, role: str, image: str | None) -> str:
    """``image`` if the file names one, else the role's image in this repository at the services' tag."""
    return image or f"{repository_url(env)}/{role}:{env.services.image_tag}"


class RegistryStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, network: NetworkStack) -> None:
        super().__init__(scope, env, "registry")
        self.add_dependency(network)  # the Artifact Registry API is enabled there
        self.repository = ArtifactRegistryRepository(
            self,
            "registry",
            repository_id=env.names.registry,
            location=env.region,
            format="DOCKER",
            description="Images of the platform's Cloud Run services.",
            docker_config=ArtifactRegistryRepositoryDockerConfig(immutable_tags=True),
        )
        TerraformOutput(
            self,
            "repository_url",
            value=repository_url(env),
        )
