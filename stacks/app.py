"""The app: every layer of every environment, as one cdktf App."""

from __future__ import annotations

from cdktf import App

from hybrid.config import Environment
from stacks.analytics import AnalyticsStack
from stacks.cluster import ClusterStack
from stacks.database import DatabaseStack
from stacks.edge import EdgeStack
from stacks.inference import InferenceStack
from stacks.network import NetworkStack
from stacks.observability import ObservabilityStack
from stacks.registry import RegistryStack
from stacks.services import ServicesStack
from stacks.workers import WorkersK8sStack, WorkersStack


def build_app(environments: list[Environment], outdir: str | None = None) -> App:
    app = App(outdir=outdir) if outdir else App()
    for env in environments:
        network = NetworkStack(app, env)
        registry = RegistryStack(app, env, network)
        database = DatabaseStack(app, env, network)
        if env.inference.placement == "gke":
            cluster = ClusterStack(app, env, network, registry)
            InferenceStack(app, env, network, registry, cluster)
        services = ServicesStack(app, env, network, registry, database)
        if env.edge.enabled:
            EdgeStack(app, env, services)
        if env.workers.enabled:
            workers = WorkersStack(app, env, network, registry, database)
            WorkersK8sStack(app, env, workers, database)
            # The orchestrator publishes to the workers layer's topic, with its grants there.
            services.add_dependency(workers)
        if env.slo is not None:
            ObservabilityStack(app, env, network)
        if env.analytics.enabled:
            AnalyticsStack(app, env, network)
    return app
