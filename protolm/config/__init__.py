"""Typed configuration: one dataclass per config section, each default, meaning and check once.

The sections of a run (:mod:`.model`, :mod:`.training`, :mod:`.prototypes`), the run itself and its
cross-checks (:mod:`.run`), the commands' schemas (:mod:`.tools`), the task schema (:mod:`.task`),
reading sections (:mod:`.reading`) and the resolvers the YAML files use (:mod:`.resolvers`).
Importing this package registers the resolvers and the schemas with Hydra. Nothing here imports torch.
"""

from protolm.config.model import (
    HEADS,
    BackboneConfig,
    InitConfig,
    LinearHeadConfig,
    LoraConfig,
    LossConfig,
    PackagedConfig,
    PrototypeHeadConfig,
)
from protolm.config.prototypes import FaithfulnessConfig, HealthConfig, ProjectConfig, PruneConfig
from protolm.config.reading import head_section, known_part, section, to_container
from protolm.config.resolvers import CONF_DIR, REPO_ROOT, asset, default_data_dir, register_resolvers
from protolm.config.run import RunConfig, Settings, read_settings
from protolm.config.store import register_schemas
from protolm.config.task import TaskSpec
from protolm.config.training import CallbacksConfig, CheckpointConfig, DataConfig, OptimConfig

register_resolvers()
register_schemas()

__all__ = [
    "CONF_DIR",
    "HEADS",
    "REPO_ROOT",
    "BackboneConfig",
    "CallbacksConfig",
    "CheckpointConfig",
    "DataConfig",
    "FaithfulnessConfig",
    "HealthConfig",
    "InitConfig",
    "LinearHeadConfig",
    "LoraConfig",
    "LossConfig",
    "OptimConfig",
    "PackagedConfig",
    "ProjectConfig",
    "PrototypeHeadConfig",
    "PruneConfig",
    "RunConfig",
    "Settings",
    "TaskSpec",
    "asset",
    "default_data_dir",
    "head_section",
    "known_part",
    "read_settings",
    "section",
    "to_container",
]
