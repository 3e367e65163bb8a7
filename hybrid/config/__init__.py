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
    FrontendSettings,
    GatewaySettings,
    GpuServiceSettings,
    OrchestratorSettings,
    ServiceSettings,
    ServicesSettings,
    memory_gib,
)
from hybrid.config.validation import Settings
from hybrid.config.workers import WorkersSettings

__all__ = [
    "BudgetSettings",
    "ClusterSettings",
    "ConfigError",
    "DatabaseSettings",
    "Environment",
    "FrontendSettings",
    "GatewaySettings",
    "GkeModelServerSettings",
    "GpuServiceSettings",
    "InferenceSettings",
    "NetworkSettings",
    "OrchestratorSettings",
    "RedisSettings",
    "ResourceNames",
    "ServiceSettings",
    "ServicesSettings",
    "Settings",
    "StateSettings",
    "WorkersSettings",
    "describe",
    "load_environment",
    "load_environments",
    "memory_gib",
    "must",
    "parse_environment",
    "read_toml",
]
