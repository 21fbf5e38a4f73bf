"""Who drives the engine: refuse a framework that decides the accumulation boundary itself.

accelerate (and so HF ``Trainer`` with ``deepspeed=``) builds the engine in
``Accelerator.prepare`` and then drives it through its ``DeepSpeedEngineWrapper``: it fixes
``gradient_accumulation_steps`` at start, sets the accumulation boundary from its own counter
and calls ``engine.step()`` only at that boundary. A Seesaw plan changes the accumulation per
step, so such a driver cannot follow it: from the first batch growth the token clock would
count batches that were never trained. :func:`refuse_foreign_driver` turns that into one
line at ``seesaw_ds.initialize``, before anything is built.
"""

from __future__ import annotations

import sys
from typing import Optional

from seesaw_ds.errors import SeesawConfigError

__all__ = ["foreign_driver", "refuse_foreign_driver", "SUPPORTED_PATHS"]

#: Modules that build an engine to drive it with a wrapper owning the accumulation boundary
#: and ``engine.step()`` (accelerate's ``Accelerator.prepare``), and the framework's name.
#: Only these count: a script started by ``accelerate.notebook_launcher`` that calls
#: ``seesaw_ds.initialize`` itself has accelerate's launcher frames on its stack and is fine.
_DRIVERS = {"accelerate.accelerator": "accelerate", "accelerate.utils.deepspeed": "accelerate"}

SUPPORTED_PATHS = (
    "for HF Trainer use seesaw_ds.integrations.hf_trainer.SeesawTrainer; otherwise call "
    "seesaw_ds.initialize yourself and run engine(batch), engine.backward(loss), "
    "engine.step() on its loader (docs/hf_trainer.md)"
)


def foreign_driver(depth: int = 2) -> Optional[str]:
    """The driving framework whose code is on the call stack above the caller, if any."""
    frame = sys._getframe(depth)
    while frame is not None:
        driver = _DRIVERS.get(str(frame.f_globals.get("__name__", "")))
        if driver is not None:
            return driver
        frame = frame.f_back
    return None


def refuse_foreign_driver() -> None:
    """Raise one line when ``seesaw_ds.initialize`` is called by accelerate's ``prepare``."""
    driver = foreign_driver(depth=2)
    if driver is not None:
        raise SeesawConfigError(
            f"seesaw_ds.initialize is being called by {driver} (Accelerator.prepare with a "
            "DeepSpeedPlugin): its DeepSpeedEngineWrapper fixes gradient accumulation at "
            "start and calls engine.step() itself, so it cannot follow a growing batch; "
            f"{SUPPORTED_PATHS}."
        )
