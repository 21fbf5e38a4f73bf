"""Run by test_gpt_data: build GPTDatasets inside a 2-rank gloo group, print a digest.

argv: PREPARED_DIR CACHE_DIR SEQ SPLIT; env: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
"""

import hashlib
import os
import sys

import torch.distributed as dist

from seesaw_ds.data.gpt_data import build_gpt_datasets, fixed_validation_batches

prepared_dir, cache_dir, seq, split = sys.argv[1:5]
dist.init_process_group("gloo")
train, valid = build_gpt_datasets(prepared_dir, int(seq), split=split, cache_dir=cache_dir)
batch = fixed_validation_batches(valid, 2, 1)[0]["tokens"]
digest = hashlib.sha256(batch.numpy().tobytes() + train[3]["tokens"].numpy().tobytes())
print(f"rank{os.environ['RANK']} {len(train)} {len(valid)} {digest.hexdigest()}", flush=True)
dist.barrier()
dist.destroy_process_group()
