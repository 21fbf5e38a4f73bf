"""accelerate driving a Seesaw engine: the shim a user would write, refused in one line.

Run under torchrun (1 rank). An ``Accelerator`` with a ``DeepSpeedPlugin`` whose config
holds a ``seesaw`` section prepares a model, with ``deepspeed.initialize`` replaced by
``seesaw_ds.initialize`` (the only way accelerate can reach our engine). Writes JSON with
the error text, or "built" if an engine came back.
"""

import json
import sys

import deepspeed
import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, DummyOptim, DummyScheduler

import seesaw_ds
from seesaw_ds.errors import SeesawConfigError


def main() -> None:
    spec = json.loads(open(sys.argv[sys.argv.index("--spec") + 1]).read())
    deepspeed.initialize = seesaw_ds.initialize  # the shim
    accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=spec["config"]))
    model = torch.nn.Linear(4, 1)
    loader = torch.utils.data.DataLoader(torch.randn(16, 4), batch_size=1)
    optimizer = DummyOptim(model.parameters(), lr=0.01)
    scheduler = DummyScheduler(optimizer, lr_scheduler_callable=lambda opt: None)
    out = {"steps_per_print": accelerator.state.deepspeed_plugin.deepspeed_config.get(
        "steps_per_print")}
    try:
        accelerator.prepare(model, optimizer, loader, scheduler)
        out["result"] = "built"
    except SeesawConfigError as error:
        out["error"] = str(error)
    with open(f"{spec['out']}.rank0.json", "w") as handle:
        json.dump(out, handle, default=str)


if __name__ == "__main__":
    main()
