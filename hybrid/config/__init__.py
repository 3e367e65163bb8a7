"""An environment's typed settings, one module per domain: import them from here.

from hybrid.config import Environment, load_environment
"""

from hybrid.config.budget import BudgetSettings
from hybrid.config.cluster import ClusterSettings
from hybrid.config.database import DatabaseSettings
from hybrid.config.environment import Environment, StateSettings
from hybrid.config.errors import ConfigError, must
from hybrid.config.inference import GkeModelServerSettings, InferenceSettings
from hybrid.config.loading import describe, load_environment, load_environments, parse_environment, read_toml
from hybrid.config.names import ResourceNames
from hybrid.config.network import NetworkSettings
from hybrid.config.redis import RedisSettings
from hybrid.config.services import (
    CloudRunServices,
    CloudRunSizing,
    FrontendSizing,
    GatewaySizing,
    GpuServiceSizing,
    OrchestratorSizing,
    memory_gib,
)
from hybrid.config.validation import Settings
from hybrid.config.workers import WorkersTier

__all__ = [
    "BudgetSettings",
    "CloudRunServices",
    "CloudRunSizing",
    "ClusterSettings",
    "ConfigError",
    "DatabaseSettings",
    "Environment",
    "FrontendSizing",
    "GatewaySizing",
    "GkeModelServerSettings",
    "GpuServiceSizing",
    "InferenceSettings",
    "NetworkSettings",
    "OrchestratorSizing",
    "RedisSettings",
    "ResourceNames",
    "Settings",
    "StateSettings",
    "WorkersTier",
    "describe",
    "load_environment",
    "load_environments",
    "memory_gib",
    "must",
    "parse_environment",
    "read_toml",
]
