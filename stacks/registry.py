"""Layer `registry`: where what the workloads start from is uploaded before they start.

The Artifact Registry repository the services' images are pushed to and, with
`weights = "gcsfuse"`, the bucket the model servers read their weights from. A layer of its
own, deployed before the others: a Cloud Run revision pulls its image when it is created, and
a model server reads its weights offline when it starts, so images and weights are uploaded
between this layer and the rest (docs/deploying.md, "Deploying to a real project").
"""

from __future__ import annotations

from cdktf import TerraformOutput
from cdktf_cdktf_provider_google.artifact_registry_repository import (
    ArtifactRegistryRepository,
    ArtifactRegistryRepositoryDockerConfig,
    ArtifactRegistryRepositoryRemoteRepositoryConfig,
    ArtifactRegistryRepositoryRemoteRepositoryConfigDockerRepository,
)
from cdktf_cdktf_provider_google.storage_bucket import StorageBucket, StorageBucketVersioning
from constructs import Construct

from hybrid.components.grants import Repository
from hybrid.config import Environment
from hybrid.layer import LayerStack
from stacks.network import NetworkStack

DOCKER_HUB = "docker.io/"


def repository_url(env: Environment, repository: str | None = None) -> str:
    """Where a repository of this layer serves images: the services' unless another is named."""
    return f"{env.region}-docker.pkg.dev/{env.project_id}/{repository or env.names.registry}"


def repository(env: Environment, repository_id: str) -> Repository:
    """A repository of this layer, as a grant's target (the granting stack deploys after this one)."""
    return Repository(project=env.project_id, location=env.region, repository=repository_id)


def mirrored_image(env: Environment, image: str) -> str:
    """A Docker Hub image as pulled through the Docker Hub mirror (a remote repository serves an
    upstream image under its own path: cloud.google.com/artifact-registry/docs/repositories/remote-repo);
    any other image as the file names it."""
    if image.startswith(DOCKER_HUB):
        return f"{repository_url(env, env.names.dockerhub_mirror)}/{image.removeprefix(DOCKER_HUB)}"
    return image


def service_image(env: Environment, role: str, image: str | None) -> str:
    """``image`` if the file names one, else the role's image in this repository at the services' tag."""
    return image or f"{repository_url(env)}/{role}:{env.services.image_tag}"


class RegistryStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, network: NetworkStack) -> None:
        # After the network layer: the Artifact Registry API is enabled there.
        super().__init__(scope, env, "registry", network)
        self.repository = self._docker_repository(
            "registry",
            env.names.registry,
            "Images of the platform's Cloud Run services.",
            docker_config=ArtifactRegistryRepositoryDockerConfig(immutable_tags=True),
        )
        TerraformOutput(
            self,
            "repository_url",
            value=repository_url(env),
        )
        gke = env.inference.gke if env.inference.placement == "gke" else None
        if gke:
            # The model servers pull vLLM's image from Docker Hub through this remote repository,
            # which caches it on first pull (cloud.google.com/artifact-registry/docs/repositories/
            # remote-repo): their nodes read images from Artifact Registry alone.
            self._docker_repository(
                "dockerhub-mirror",
                env.names.dockerhub_mirror,
                "Docker Hub, mirrored for the model servers' image.",
                mode="REMOTE_REPOSITORY",
                remote_repository_config=ArtifactRegistryRepositoryRemoteRepositoryConfig(
                    docker_repository=ArtifactRegistryRepositoryRemoteRepositoryConfigDockerRepository(
                        public_repository="DOCKER_HUB"
                    )
                ),
            )
        if gke and gke.weights != "pvc" and gke.weights_bucket:  # validated: gcsfuse and streamer name their bucket
            # The GCS FUSE CSI driver mounts a bucket that already exists
            # (cloud.google.com/kubernetes-engine/docs/concepts/cloud-storage-fuse-csi-driver); the streamer reads it.
            StorageBucket(
                self,
                "weights-bucket",
                name=gke.weights_bucket,
                location=env.region,  # beside the cluster that reads it
                # IAM only: the model server's objectViewer grant is the only access
                # (cloud.google.com/storage/docs/uniform-bucket-level-access).
                uniform_bucket_level_access=True,
                public_access_prevention="enforced",
                # Weights are staged once per model, under the model's own path: nothing to version.
                versioning=StorageBucketVersioning(enabled=False),
                force_destroy=False,  # a bucket that still holds weights is not destroyed
            )

    def _docker_repository(
        self,
        id_: str,
        repository_id: str,
        description: str,
        *,
        mode: str | None = None,
        docker_config: ArtifactRegistryRepositoryDockerConfig | None = None,
        remote_repository_config: ArtifactRegistryRepositoryRemoteRepositoryConfig | None = None,
    ) -> ArtifactRegistryRepository:
        """A Docker repository in the environment's region."""
        return ArtifactRegistryRepository(
            self,
            id_,
            repository_id=repository_id,
            location=self.env.region,
            format="DOCKER",
            mode=mode,
            description=description,
            docker_config=docker_config,
            remote_repository_config=remote_repository_config,
        )
