"""A SLURM chain of jobs whose node count grows with the batch (``seesaw-ds plan --max-ranks``).

    python launch/grow_chain.py 150m 128 seesaw --throughput bench/records/throughput_gpu_like.json \
        --ranks 8 --max-ranks 64 --gpus-per-node 8            # prints the sbatch commands
    ... --submit                                                 # submits them

Lays the plan out with ``seesaw_ds.layout`` (the jobs of the chain: ranks and start tokens),
writes the DeepSpeed config every job uses (the paper config with ``seesaw.batch_multiple``
set to the layout's batch multiple and, when the jobs round batches to their own rank counts,
``seesaw.batch_multiple_stages``; micro-batch 1 growing up to the throughput file's largest
micro-batch, so one plan holds on every job's rank count) to
``$SEESAW_RESULTS/RUN/launch/ds_config_chain.json``, and chains, each after the previous one
succeeded (``--dependency=afterok``):

  job k: ``launch/slurm_paper.sbatch`` on ranks_k / gpus-per-node nodes with
         ``--stop-at-tokens`` at the next job's start (the last job runs to the end); every
         job after the first first runs ``seesaw-ds universal`` on the checkpoint on its own
         allocation (``SEESAW_UNIVERSAL_FIRST=1``, no separate queued job), so it resumes
         the ZeRO optimizer state on its larger rank count.

Each job queues again; ``launch/grow_in_allocation.py`` grows inside one allocation instead.

Each training job passes ``--resume`` when a checkpoint exists (slurm_paper.sbatch does).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from seesaw_ds.atomic_files import write_json_atomic  # noqa: E402
from seesaw_ds.config import load_config_file, plan_from_ds_config  # noqa: E402
from seesaw_ds.errors import SeesawConfigError  # noqa: E402
from seesaw_ds.layout import load_throughput, project_wallclock, zero_of_config  # noqa: E402


def chain_config(ds_config: dict, batch_multiple: int, max_micro: int,
                 stages=()) -> dict:
    """The paper config with the layout's batch multiple (and its stages, when each job
    rounds to its own rank count); micro 1 that may grow."""
    config = json.loads(json.dumps(ds_config))
    config["train_micro_batch_size_per_gpu"] = 1
    config.pop("gradient_accumulation_steps", None)
    section = config["seesaw"]
    section.update(batch_multiple=batch_multiple, growth_policy="micro_batch_first",
                   max_micro_batch=max_micro)
    if stages:
        section["batch_multiple_stages"] = list(stages)
    return config


def _slurm_time(seconds: float) -> str:
    """A job's ``--time``: twice its projected seconds plus 30 minutes, as H:MM:SS."""
    total = int(2 * seconds + 1800)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def build_chain(run_name: str, ds_path: str, throughput_path: str, ranks: int,
                max_ranks: int, gpus_per_node: int, results: str,
                relaunch_seconds=None):
    """(chain config, stages, list of sbatch argument lists with a DEP placeholder)."""
    ds_config = load_config_file(ds_path)
    throughput = zero_of_config(load_throughput(throughput_path), ds_config)
    projection = project_wallclock(plan_from_ds_config(ds_config, 1), throughput, ranks,
                                   max_ranks, gpus_per_node, relaunch_seconds).to_dict()
    stage_seconds = [0.0] * len(projection["stages"])
    starts = [s["start_tokens"] for s in projection["stages"]]
    for phase in projection["phases"]:
        index = max(i for i, start in enumerate(starts) if start <= phase["start_tokens"])
        stage_seconds[index] += phase["seconds"]
    config = chain_config(ds_config, projection["batch_multiple"], throughput.max_micro_batch,
                          projection["batch_multiple_stages"])
    stages = projection["stages"]
    run_dir = os.path.join(results, run_name)
    config_path = os.path.join(run_dir, "launch", "ds_config_chain.json")
    jobs = []
    for index, stage in enumerate(stages):
        stage_ranks = int(stage["ranks"])  # one partial node or whole nodes: the search's rule
        nodes = max(1, stage_ranks // gpus_per_node)
        ngpus = min(stage_ranks, gpus_per_node)
        env = (f"ALL,SEESAW_RUN={run_name},SEESAW_DS_CONFIG={config_path},NGPUS={ngpus},"
               f"SEESAW_RESULTS={results}" + (",SEESAW_UNIVERSAL_FIRST=1" if index else ""))
        train_args = []
        if index + 1 < len(stages):
            train_args = ["--stop-at-tokens", repr(float(stages[index + 1]["start_tokens"]))]
        jobs.append({"what": f"train {stage_ranks} ranks", "args": [
            f"--nodes={nodes}", f"--gpus-per-node={ngpus}", f"--export={env}",
            f"--time={_slurm_time(stage_seconds[index] + projection['relaunch_seconds'])}",
            f"--job-name=seesaw-{run_name}-{index}", "launch/slurm_paper.sbatch", *train_args]})
    return config, config_path, projection, jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("batch")
    parser.add_argument("schedule")
    parser.add_argument("--throughput", required=True)
    parser.add_argument("--ranks", type=int, required=True)
    parser.add_argument("--max-ranks", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--relaunch-seconds", type=float, default=None,
                        help="seconds each extra job costs (start-up, save, conversion, load; "
                        "a queue wait is extra; default 300, see docs/wallclock.md)")
    parser.add_argument("--submit", action="store_true", help="run sbatch (default: print)")
    args = parser.parse_args(argv)
    run_name = f"{args.model}_b{args.batch}_{args.schedule}"
    ds_path = os.path.join(REPO, "ds_configs", f"{run_name}.json")
    results = os.path.abspath(os.environ.get("SEESAW_RESULTS", os.path.join(REPO,
                                                                            "results/paper")))
    try:
        config, config_path, projection, jobs = build_chain(
            run_name, ds_path, args.throughput, args.ranks, args.max_ranks,
            args.gpus_per_node, results, args.relaunch_seconds)
    except SeesawConfigError as error:
        print(f"grow_chain: error: {error}", file=sys.stderr)
        return 2
    if args.submit:  # a dry run leaves the checkout as it was
        os.makedirs(os.path.dirname(config_path), exist_ok=True)
        write_json_atomic(config_path, config)
    else:
        print(f"(dry run: {config_path} is written with --submit)")
    print(f"{run_name}: {len(projection['stages'])} jobs "
          + " -> ".join(str(s["ranks"]) for s in projection["stages"])
          + f" ranks; projected {projection['projected_seconds'] / 3600:.2f} h vs baseline "
          f"{projection['baseline_projected_seconds'] / 3600:.2f} h "
          f"(ratio {projection['time_ratio']:.3f}); config {config_path}")
    previous = None
    for job in jobs:
        command = ["sbatch", "--parsable"]
        if previous is not None:
            command.append(f"--dependency=afterok:{previous}")
        command += job["args"]
        if not args.submit:
            print(" ".join(shlex.quote(part) for part in command))
            previous = "$PREVIOUS_JOB"
            continue
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
        previous = result.stdout.strip().split(";")[0]
        print(f"{job['what']}: job {previous}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
