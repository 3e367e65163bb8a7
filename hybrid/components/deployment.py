"""The Deployment every workload of ours is: one container's Pods, selected by their labels, under the
restricted Pod Security settings each can take (kubernetes.io/docs/concepts/security/pod-security-standards)."""

from __future__ import annotations

from typing import Any

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_kubernetes.deployment_v1 import (
    DeploymentV1,
    DeploymentV1Metadata,
    DeploymentV1Spec,
    DeploymentV1SpecSelector,
    DeploymentV1SpecStrategy,
    DeploymentV1SpecTemplate,
    DeploymentV1SpecTemplateMetadata,
    DeploymentV1SpecTemplateSpec,
    DeploymentV1SpecTemplateSpecContainerSecurityContext,
    DeploymentV1SpecTemplateSpecContainerSecurityContextCapabilities,
    DeploymentV1SpecTemplateSpecSecurityContext,
    DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile,
    DeploymentV1SpecTemplateSpecVolume,
    DeploymentV1SpecTemplateSpecVolumeEmptyDir,
)
from constructs import Construct


def deployment(
    scope: Construct,
    *,
    name: str,
    namespace: str,
    labels: dict[str, str],
    pod: DeploymentV1SpecTemplateSpec,
    replicas: int,
    autoscaled: bool,
    strategy: DeploymentV1SpecStrategy | None = None,
    pod_annotations: dict[str, str] | None = None,
    **options: Any,
) -> DeploymentV1:
    """``scope``'s Deployment ``name`` of ``replicas`` ``pod``s labelled ``labels``; ``autoscaled``: an
    autoscaler owns the replica count once it exists. ``options``: the resource's own (timeouts, ...)."""
    return DeploymentV1(
        scope,
        "deployment",
        metadata=DeploymentV1Metadata(name=name, namespace=namespace, labels=labels),
        lifecycle=TerraformResourceLifecycle(ignore_changes=["spec[0].replicas"]) if autoscaled else None,
        spec=DeploymentV1Spec(
            replicas=str(replicas),
            selector=DeploymentV1SpecSelector(match_labels=labels),
            strategy=strategy,
            template=DeploymentV1SpecTemplate(
                metadata=DeploymentV1SpecTemplateMetadata(labels=labels, annotations=pod_annotations), spec=pod
            ),
        ),
        **options,
    )


def pod_security(*, run_as_non_root: bool | None = None) -> DeploymentV1SpecTemplateSpecSecurityContext:
    """The container runtime's default seccomp profile, and a non-root user where the image has one."""
    return DeploymentV1SpecTemplateSpecSecurityContext(
        run_as_non_root=run_as_non_root,
        seccomp_profile=DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile(type="RuntimeDefault"),
    )


def container_security(
    *, read_only_root: bool | None = None, run_as_non_root: bool | None = None, add: list[str] | None = None
) -> DeploymentV1SpecTemplateSpecContainerSecurityContext:
    """No privilege escalation and no capability but ``add``; a read-only root and a non-root user where
    the container can take them."""
    return DeploymentV1SpecTemplateSpecContainerSecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=read_only_root,
        run_as_non_root=run_as_non_root,
        capabilities=DeploymentV1SpecTemplateSpecContainerSecurityContextCapabilities(drop=["ALL"], add=add),
    )


def memory_volume(name: str, size_limit: str, *, medium: str | None = None) -> DeploymentV1SpecTemplateSpecVolume:
    """An emptyDir volume of at most ``size_limit``, in memory when ``medium`` is "Memory"."""
    return DeploymentV1SpecTemplateSpecVolume(
        name=name, empty_dir=DeploymentV1SpecTemplateSpecVolumeEmptyDir(medium=medium, size_limit=size_limit)
    )
