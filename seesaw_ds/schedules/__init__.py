"""Pure schedule math: base LR schedules, batch schedules and the plan. No torch import."""

from seesaw_ds.schedules.batch_schedules import (
    BATCH_SCHEDULES,
    AdaptiveBatch,
    BatchSchedule,
    ConstantBatch,
    LateSwitchBatch,
    LinearRampBatch,
    SeesawBatch,
    SeesawStabilityWarning,
    StepBatch,
    round_to_multiple,
)
from seesaw_ds.schedules.limits import BatchLimit, apply_batch_limits
from seesaw_ds.schedules.lr_schedules import (
    LR_SCHEDULES,
    ConstantLR,
    CosineLR,
    InverseSqrtLR,
    LinearLR,
    LRSchedule,
    StepDecayLR,
    WSDLR,
)
from seesaw_ds.schedules.phases import Phase
from seesaw_ds.schedules.plan import GROWTH_POLICIES, Plan, StepSetting, build_plan, layout_batch

__all__ = [
    "BATCH_SCHEDULES", "AdaptiveBatch", "BatchSchedule", "ConstantBatch", "LateSwitchBatch", "LinearRampBatch",
    "SeesawBatch", "SeesawStabilityWarning", "StepBatch", "round_to_multiple",
    "LR_SCHEDULES", "ConstantLR", "CosineLR", "InverseSqrtLR", "LinearLR", "LRSchedule",
    "StepDecayLR", "WSDLR", "Phase", "GROWTH_POLICIES", "Plan", "StepSetting", "build_plan",
    "layout_batch", "BatchLimit", "apply_batch_limits",
]
