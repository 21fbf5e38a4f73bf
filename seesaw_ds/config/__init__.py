"""Config parsing: the ``seesaw`` section and the DeepSpeed config around it."""

from seesaw_ds.config.ds_config import (
    BatchTriple,
    load_config_file,
    peak_lr_of,
    plan_from_ds_config,
    resolve_batch_triple,
    seesaw_section_of,
)
from seesaw_ds.config.section import (
    CBSGuardSettings,
    SeesawSection,
    parse_seesaw_section,
    parse_token_count,
)

__all__ = [
    "BatchTriple", "load_config_file", "peak_lr_of", "plan_from_ds_config",
    "resolve_batch_triple", "seesaw_section_of", "CBSGuardSettings", "SeesawSection",
    "parse_seesaw_section", "parse_token_count",
]
