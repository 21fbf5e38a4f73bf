"""One rank of a 2-rank gloo job that ends right after a collective, made to race.

``sys.setswitchinterval(30)`` keeps the GIL with the main thread after its last
``all_reduce`` returns, so it reaches interpreter shutdown before gloo's worker thread has
dropped the finished collective (which takes the GIL): without
:func:`seesaw_ds.distributed.register_clean_exit` this aborts ("terminate called without an
active exception", exit -6) in most runs. Argument ``guard``: call it; ``none``: do not.
"""

import sys

import torch
import torch.distributed as dist

from seesaw_ds.distributed import register_clean_exit

dist.init_process_group("gloo")
if sys.argv[1] == "guard":
    assert register_clean_exit()
sys.setswitchinterval(30.0)
for _ in range(3):
    dist.all_reduce(torch.ones(4))
