"""What every Deployment of ours has beside it: a PodDisruptionBudget and a HorizontalPodAutoscaler."""

from __future__ import annotations

from cdktf_cdktf_provider_kubernetes.horizontal_pod_autoscaler_v2 import (
    HorizontalPodAutoscalerV2,
    HorizontalPodAutoscalerV2Metadata,
    HorizontalPodAutoscalerV2Spec,
    HorizontalPodAutoscalerV2SpecBehavior,
    HorizontalPodAutoscalerV2SpecMetric,
    HorizontalPodAutoscalerV2SpecScaleTargetRef,
)
from cdktf_cdktf_provider_kubernetes.pod_disruption_budget_v1 import (
    PodDisruptionBudgetV1,
    PodDisruptionBudgetV1Metadata,
    PodDisruptionBudgetV1Spec,
    PodDisruptionBudgetV1SpecSelector,
)
from constructs import Construct


def disruption_budget(scope: Construct, *, name: str, namespace: str, labels: dict[str, str]) -> PodDisruptionBudgetV1:
    """A voluntary disruption (a node upgrade, a drain) takes down one of the Pods ``labels`` select at a time."""
    return PodDisruptionBudgetV1(
        scope,
        "disruption-budget",
        metadata=PodDisruptionBudgetV1Metadata(name=name, namespace=namespace),
        spec=PodDisruptionBudgetV1Spec(
            max_unavailable="1", selector=PodDisruptionBudgetV1SpecSelector(match_labels=labels)
        ),
    )


def autoscaler(
    scope: Construct,
    *,
    deployment: str,
    namespace: str,
    replicas: tuple[int, int],
    metric: HorizontalPodAutoscalerV2SpecMetric,
    behavior: HorizontalPodAutoscalerV2SpecBehavior | None = None,
) -> HorizontalPodAutoscalerV2:
    """Keeps the Deployment ``deployment`` between ``replicas`` (min, max) on ``metric``."""
    low, high = replicas
    return HorizontalPodAutoscalerV2(
        scope,
        "autoscaler",
        metadata=HorizontalPodAutoscalerV2Metadata(name=deployment, namespace=namespace),
        spec=HorizontalPodAutoscalerV2Spec(
            scale_target_ref=HorizontalPodAutoscalerV2SpecScaleTargetRef(
                api_version="apps/v1", kind="Deployment", name=deployment
            ),
            min_replicas=low,
            max_replicas=high,
            metric=[metric],
            behavior=behavior,
        ),
    )
