"""Write one throughput file per paper model size (150M, 300M, 600M) on 8-GPU H100 nodes,
derived from cited public figures; the derivation is written into each file.

    python bench/throughput_h100.py          # -> bench/records/throughput_h100_{size}.json

Cited (see /work/shared/REFERENCE.md, "Measured on the review of round 2"):
- llm.c trained GPT-2 124M at about 460k tokens/s per H100 (seq 1024, bf16);
- nccl-tests: 8 x H100 NVLink all-reduce bus bandwidth about 370 GB/s (ring) to 480 GB/s
  (NVLS); NDR InfiniBand about 47 GB/s per 400 Gb/s NIC.

Assumed (not cited; stated in each file): the fixed cost of a micro-batch (kernel launches
and small ops, 0.4 ms per layer), the largest micro-batch that fits in 80 GB, the optimizer
step's memory traffic, ring latencies, 8 NICs per node.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# cited
LLMC_TOKENS_PER_SECOND = 460e3  # GPT-2 124M, one H100
NVLINK_RING_BUSBW = 370e9  # 8 x H100, nccl-tests all_reduce_perf, ring
NDR_NIC_BYTES_PER_SECOND = 47e9  # one 400 Gb/s NIC, nccl-tests across nodes
# GPT-2 124M: 12 layers, d 768, vocab 50257, seq 1024; matmul parameters incl. the LM head
GPT2_LAYERS, GPT2_D, GPT2_VOCAB, SEQ = 12, 768, 50257, 1024
# assumed
FIXED_SECONDS_PER_LAYER = 0.4e-3  # per micro-batch: launches, norms, small kernels
OPTIMIZER_BYTES_PER_PARAMETER = 30  # fused AdamW: fp32 master, m, v, grad read+write; bf16 out
HBM_BYTES_PER_SECOND = 2.5e12  # ~75% of H100 SXM's 3.35 TB/s
INTRA_LATENCY, INTER_LATENCY = 1.5e-6, 5e-6  # per ring hop
GPUS_PER_NODE, NICS_PER_NODE = 8, 8

SHAPES = {  # layers, d_model, d_mlp, parameters (with embeddings), largest micro-batch
    "150m": (12, 1024, 4096, 216_820_224, 64),
    "300m": (24, 1024, 4096, 367_841_280, 32),
    "600m": (24, 1408, 5632, 661_494_144, 32),
}
VOCAB = 32128


def flops_per_token(layers: int, d_model: int, matmul_parameters: float) -> float:
    """Training FLOPs per token: 6 N (matmuls, LM head included) + 12 L d seq (attention)."""
    return 6 * matmul_parameters + 12 * layers * d_model * SEQ


def gpt2_matmul_parameters() -> float:
    return GPT2_LAYERS * 12 * GPT2_D ** 2 + GPT2_D * GPT2_VOCAB


def throughput_file(size: str) -> dict:
    layers, d_model, d_mlp, parameters, largest = SHAPES[size]
    achieved = LLMC_TOKENS_PER_SECOND * flops_per_token(GPT2_LAYERS, GPT2_D,
                                                        gpt2_matmul_parameters())
    matmul = parameters - VOCAB * d_model  # the input embedding is a lookup
    per_sequence = flops_per_token(layers, d_model, matmul) * SEQ / achieved
    fixed = FIXED_SECONDS_PER_LAYER * layers
    micro = {}
    size_ = 1
    while size_ <= largest:
        micro[str(size_)] = round(fixed + per_sequence * size_, 6)
        size_ *= 2
    optimizer = parameters * OPTIMIZER_BYTES_PER_PARAMETER / HBM_BYTES_PER_SECOND
    derivation = [
        f"compute: llm.c's GPT-2 124M at {LLMC_TOKENS_PER_SECOND:.0f} tokens/s per H100 is "
        f"{achieved / 1e12:.0f} TFLOP/s at 6 N + 12 L d seq FLOPs per token "
        f"(N = {gpt2_matmul_parameters() / 1e6:.1f}M matmul parameters); assumed the same for "
        f"this shape (larger matmuls usually do better: conservative)",
        f"this shape: {layers} layers, d {d_model}, d_mlp {d_mlp}, vocab {VOCAB}, seq {SEQ}: "
        f"{flops_per_token(layers, d_model, matmul) / 1e9:.3f} GFLOP per token, "
        f"{per_sequence * 1e3:.2f} ms per sequence",
        f"fixed cost per micro-batch (assumed, not cited): {FIXED_SECONDS_PER_LAYER * 1e3:.1f} "
        f"ms per layer = {fixed * 1e3:.1f} ms",
        f"largest micro-batch {largest} (assumed: bf16, flash attention, no activation "
        "checkpointing, about 34 bytes x seq x d x layers of activations per sequence plus "
        "fp32 logits, in 80 GB)",
        f"optimizer: fused AdamW moves ~{OPTIMIZER_BYTES_PER_PARAMETER} bytes per parameter "
        f"at {HBM_BYTES_PER_SECOND / 1e12:.1f} TB/s (assumed): {optimizer * 1e3:.2f} ms for "
        "the whole model on one GPU (divided by the ranks under ZeRO >= 1)",
        f"network: inside a node the nccl-tests ring busbw {NVLINK_RING_BUSBW / 1e9:.0f} GB/s "
        f"(8 x H100 NVLink; NVLS reaches ~480); across nodes {NICS_PER_NODE} NDR NICs per node "
        f"x {NDR_NIC_BYTES_PER_SECOND / 1e9:.0f} GB/s = "
        f"{NICS_PER_NODE * NDR_NIC_BYTES_PER_SECOND / 1e9:.0f} GB/s; ring latencies "
        f"{INTRA_LATENCY * 1e6:.1f} / {INTER_LATENCY * 1e6:.1f} us per hop (assumed)",
        "gradients and all-gathered parameters in bf16 (2 bytes per parameter); the ZeRO "
        "stage comes from the DeepSpeed config (the paper configs: stage 1)",
    ]
    return {
        "description": f"{size} shape on 8-GPU H100 nodes, derived from public figures "
                       "(bench/throughput_h100.py), not measured",
        "source": "derived",
        "derivation": derivation,
        "model_shape": size,
        "seq_length": SEQ,
        "micro_batch_seconds": micro,
        "optimizer_seconds": round(optimizer, 6),
        "gradient_bytes": 2 * parameters,
        "parameter_bytes": 2 * parameters,
        "network": {
            "gpus_per_node": GPUS_PER_NODE,
            "intra_node": {"bus_bytes_per_second": NVLINK_RING_BUSBW,
                           "latency_seconds": INTRA_LATENCY},
            "inter_node": {"nic_bytes_per_second": NDR_NIC_BYTES_PER_SECOND,
                           "nics_per_node": NICS_PER_NODE, "latency_seconds": INTER_LATENCY},
        },
    }


def path_of(size: str) -> str:
    return os.path.join(HERE, "records", f"throughput_h100_{size}.json")


def main() -> int:
    for size in SHAPES:
        with open(path_of(size), "w", encoding="utf-8") as handle:
            json.dump(throughput_file(size), handle, indent=2)
            handle.write("\n")
        print(f"written {path_of(size)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
