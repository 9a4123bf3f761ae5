"""``trainer.*`` is handed to Lightning's Trainer: its names, types and accelerator are checked here."""

from __future__ import annotations

import inspect
import typing

from protolm.utils.errors import ConfigError, check_keys


def check_trainer_args(trainer: dict) -> None:
    """Every name must be one of the Trainer's arguments, every value of the type its signature
    declares, and the accelerator one this machine has."""
    from lightning.pytorch import Trainer
    from pydantic import ConfigDict, TypeAdapter
    from pydantic import ValidationError as WrongType

    valid = set(inspect.signature(Trainer.__init__).parameters) - {"self", "callbacks", "logger", "plugins"}
    check_keys("trainer", list(trainer), valid)
    hints = typing.get_type_hints(Trainer.__init__)
    for key, value in trainer.items():
        adapter = TypeAdapter(hints[key], config=ConfigDict(arbitrary_types_allowed=True))
        try:
            adapter.validate_python(value, strict=True)
        except WrongType:
            wanted = hints[key].__name__ if isinstance(hints[key], type) else str(hints[key])
            wanted = wanted.replace("typing.", "").replace("NoneType", "None")
            raise ConfigError(
                f"trainer.{key}={value!r} is not of the type Lightning's Trainer takes: {wanted}"
            ) from None
    check_accelerator(str(trainer.get("accelerator", "auto")))


def check_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda", "mps"):
        import torch

        available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not (any(available.values()) if accelerator == "gpu" else available[accelerator]):
            raise ConfigError(
                f"trainer.accelerator={accelerator}: torch sees no {'GPU' if accelerator == 'gpu' else accelerator} "
                "device on this machine; use trainer.accelerator=cpu, or auto to take one where there is one"
            )
