"""Integrations with other training frameworks, each a module of its own.

Each one imports the plan, the clock and the engine hook (``seesaw_ds.schedules``,
``seesaw_ds.deepspeed_adapter``), never another integration; its framework is an optional
extra (``pip install "seesaw-ds[hf]"`` for :mod:`seesaw_ds.integrations.hf_trainer`).
Importing this package imports no framework.
"""
