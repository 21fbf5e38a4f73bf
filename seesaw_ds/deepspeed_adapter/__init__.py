"""DeepSpeed integration: Seesaw batch-size scheduling for an unchanged training loop.

Change one line, ``deepspeed.initialize`` -> ``seesaw_ds.initialize``, and add a ``seesaw``
section to the DeepSpeed JSON::

    engine, optimizer, loader, scheduler = seesaw_ds.initialize(
        args=args, model=model, model_parameters=model.parameters(), training_data=dataset)
    for batch in loader:
        loss = engine(batch)
        engine.backward(loss)
        engine.step()

Importing this package does not import deepspeed; :func:`initialize` does.
"""

from seesaw_ds.deepspeed_adapter.batch_sampler import PlanBatchSampler
from seesaw_ds.deepspeed_adapter.checkpoint import (
    load_checkpoint,
    read_latest,
    save_checkpoint,
    write_latest_atomically,
)
from seesaw_ds.deepspeed_adapter.data_contract import DataContract
from seesaw_ds.deepspeed_adapter.engine_hook import SeesawEngineHook
from seesaw_ds.deepspeed_adapter.initialize import data_parallel_size, initialize, prepare_config
from seesaw_ds.deepspeed_adapter.iterable import PlanIterableLoader
from seesaw_ds.deepspeed_adapter.logging_ import SeesawStepLogger, StepRecord
from seesaw_ds.deepspeed_adapter.sampler import (
    GlobalSampleOrder,
    SeesawBatchSampler,
    SeesawDataLoader,
)
from seesaw_ds.deepspeed_adapter.scheduler import SeesawLRScheduler
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.deepspeed_adapter.validation import ValidatedConfig, validate_ds_config

__all__ = [
    "initialize", "prepare_config", "data_parallel_size",
    "SeesawLRScheduler", "SeesawState", "SeesawEngineHook",
    "SeesawDataLoader", "SeesawBatchSampler", "GlobalSampleOrder",
    "PlanBatchSampler", "PlanIterableLoader", "DataContract",
    "save_checkpoint", "load_checkpoint", "write_latest_atomically", "read_latest",
    "SeesawStepLogger", "StepRecord", "ValidatedConfig", "validate_ds_config",
]
