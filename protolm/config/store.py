"""The schemas as Hydra knows them: ``run_schema``, ``head/<name>_schema`` and ``<command>_schema``,
which the YAML files list first in their defaults (so a composed config carries their types)."""

from __future__ import annotations


def register_schemas() -> None:
    from hydra.core.config_store import ConfigStore

    from protolm.config.model import HEADS
    from protolm.config.run import RunConfig
    from protolm.config.tools import TOOL_SCHEMAS

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for name, schema in HEADS.items():
        store.store(group="head", name=f"{name}_schema", node=schema)
    for name, schema in TOOL_SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
