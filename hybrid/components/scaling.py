"""What every Deployment of ours has beside it: a PodDisruptionBudget and a HorizontalPodAutoscaler."""

from __future__ import annotations

from typing import Protocol

from cdktf_cdktf_provider_kubernetes.horizontal_pod_autoscaler_v2 import (
    HorizontalPodAutoscalerV2,
    HorizontalPodAutoscalerV2Metadata,
    HorizontalPodAutoscalerV2Spec,
    HorizontalPodAutoscalerV2SpecBehavior,
    HorizontalPodAutoscalerV2SpecMetric,
    HorizontalPodAutoscalerV2SpecMetricExternal,
    HorizontalPodAutoscalerV2SpecMetricExternalMetric,
    HorizontalPodAutoscalerV2SpecMetricExternalMetricSelector,
    HorizontalPodAutoscalerV2SpecMetricExternalTarget,
    HorizontalPodAutoscalerV2SpecMetricPods,
    HorizontalPodAutoscalerV2SpecMetricPodsMetric,
    HorizontalPodAutoscalerV2SpecMetricPodsTarget,
    HorizontalPodAutoscalerV2SpecScaleTargetRef,
)
from cdktf_cdktf_provider_kubernetes.pod_disruption_budget_v1 import (
    PodDisruptionBudgetV1,
    PodDisruptionBudgetV1Metadata,
    PodDisruptionBudgetV1Spec,
    PodDisruptionBudgetV1SpecSelector,
)
from constructs import Construct


class Replicas(Protocol):
    """The bounds an autoscaler keeps a Deployment in: its settings' ``min_replicas`` and ``max_replicas``."""

    @property
    def min_replicas(self) -> int: ...

    @property
    def max_replicas(self) -> int: ...


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
    replicas: Replicas,
    metric: HorizontalPodAutoscalerV2SpecMetric,
    behavior: HorizontalPodAutoscalerV2SpecBehavior | None = None,
) -> HorizontalPodAutoscalerV2:
    """Keeps the Deployment ``deployment`` between ``replicas``' bounds on ``metric``."""
    return HorizontalPodAutoscalerV2(
        scope,
        "autoscaler",
        metadata=HorizontalPodAutoscalerV2Metadata(name=deployment, namespace=namespace),
        spec=HorizontalPodAutoscalerV2Spec(
            scale_target_ref=HorizontalPodAutoscalerV2SpecScaleTargetRef(
                api_version="apps/v1", kind="Deployment", name=deployment
            ),
            min_replicas=replicas.min_replicas,
            max_replicas=replicas.max_replicas,
            metric=[metric],
            behavior=behavior,
        ),
    )


def pods_metric(name: str, *, average: int) -> HorizontalPodAutoscalerV2SpecMetric:
    """One more Pod for each ``average`` of the Pods' metric ``name``."""
    return HorizontalPodAutoscalerV2SpecMetric(
        type="Pods",
        pods=HorizontalPodAutoscalerV2SpecMetricPods(
            metric=HorizontalPodAutoscalerV2SpecMetricPodsMetric(name=name),
            target=HorizontalPodAutoscalerV2SpecMetricPodsTarget(type="AverageValue", average_value=str(average)),
        ),
    )


def external_metric(name: str, *, match_labels: dict[str, str], average: int) -> HorizontalPodAutoscalerV2SpecMetric:
    """One more Pod for each ``average`` of the external metric ``name`` where it has ``match_labels``
    (the metric's value divided by the replicas)."""
    return HorizontalPodAutoscalerV2SpecMetric(
        type="External",
        external=HorizontalPodAutoscalerV2SpecMetricExternal(
            metric=HorizontalPodAutoscalerV2SpecMetricExternalMetric(
                name=name,
                selector=[HorizontalPodAutoscalerV2SpecMetricExternalMetricSelector(match_labels=match_labels)],
            ),
            target=HorizontalPodAutoscalerV2SpecMetricExternalTarget(type="AverageValue", average_value=str(average)),
        ),
    )
