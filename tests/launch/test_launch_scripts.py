"""The GPU launch scripts, checked without a GPU: syntax, configs, and the exact command
each script would run (``deepspeed``, ``torchrun``, ``srun``, ``scontrol`` are fakes that
record their arguments)."""

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import seesaw_ds.launch_config as resolver
from seesaw_ds.config import load_config_file, parse_token_count, plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.run_config import parse_run_config

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(glob.glob(str(LAUNCH / "*.sh")) + glob.glob(str(LAUNCH / "*.sbatch")))
TEMPLATES = sorted(glob.glob(str(LAUNCH / "run_configs" / "*.yaml")))
PAPER_150M = str(LAUNCH / "run_configs" / "paper_150m.yaml")
DS_CONFIGS = sorted(glob.glob(str(REPO / "ds_configs" / "*.json")))


_RECORD = '#!/usr/bin/env bash\nprintf "%s\\n" "$(basename "$0")" "$@" > "$FAKE_LOG"\n'
FAKES = {
    "deepspeed": _RECORD,
    "torchrun": _RECORD,
    "srun": '#!/usr/bin/env bash\nwhile [ "${1#-}" != "$1" ]; do shift; done\n'
            'SLURM_NODEID=0 exec "$@"\n',
    "scontrol": '#!/usr/bin/env bash\n[ "$1" = show ] && printf "gpu-a\\ngpu-b\\n"\n',
    # stands in for python -m seesaw_ds.launch_config where only the shell logic is under test
    "fake-python": '#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$FAKE_LOG.python"\n',
}


@pytest.fixture
def env(tmp_path):
    """An environment with the data variables set, fake launchers first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "c4.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "spiece.model").write_bytes(b"not read here")
    values = dict(os.environ)
    for name in list(values):
        if name.startswith(("SEESAW_", "SLURM_", "NGPUS", "NNODES", "MASTER_", "HOSTFILE")):
            del values[name]
    values.update(
        PATH=f"{bin_dir}{os.pathsep}{values['PATH']}", PYTHON=sys.executable,
        FAKE_LOG=str(tmp_path / "launched.txt"), C4_JSONL=str(tmp_path / "c4.jsonl"),
        T5_SPM=str(tmp_path / "spiece.model"), SEESAW_RESULTS=str(tmp_path / "results"),
        SEESAW_DATA_DIR=str(tmp_path / "data"), SEESAW_DATA="skip")
    return values


def run(script, args, env):
    return subprocess.run(["bash", str(LAUNCH / script), *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)


def launched(env, suffix=""):
    path = Path(env["FAKE_LOG"] + suffix)
    return path.read_text().splitlines() if path.exists() else None


def shell_only(env):
    """``env`` with the resolver replaced by a stub that records its arguments."""
    return dict(env, PYTHON=str(Path(env["PATH"].split(os.pathsep)[0]) / "fake-python"))


def resolver_args(env):
    args = launched(env, ".python")
    assert args[:2] == ["-m", "seesaw_ds.launch_config"], args
    return dict(zip(args[3::2], args[4::2]))  # [-m, module, template, --out, X, ...]


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("template", TEMPLATES, ids=os.path.basename)
def test_run_configs_resolve_and_parse(template, env):
    raw = resolver.resolve(template, env=env, output_dir="results/x")
    raw.pop("_vars")
    config = parse_run_config(raw)
    assert config.output_dir == os.path.abspath("results/x")
    assert os.path.isabs(config.data.prepared_dir)


@pytest.mark.parametrize("shape", ["150m", "300m", "600m"])
def test_paper_run_configs(shape, env):
    raw = resolver.resolve(str(LAUNCH / "run_configs" / f"paper_{shape}.yaml"), env=env)
    assert raw.pop("_vars")["data.inputs[0]"] == ["C4_JSONL"]
    config = parse_run_config(raw)
    assert config.model.shape == shape
    assert config.data.inputs == [env["C4_JSONL"]]
    assert config.data.tokenizer_model == env["T5_SPM"]
    assert config.data.prepared_dir == env["SEESAW_DATA_DIR"]
    assert config.data.max_bytes == 70_000_000_000
    ds_configs = glob.glob(str(REPO / "ds_configs" / f"{shape}_b*.json"))
    assert len(ds_configs) == 6
    for path in ds_configs:
        total = parse_token_count("total_tokens", load_config_file(path)["seesaw"]["total_tokens"])
        assert config.eval.interval_tokens == pytest.approx(total / 100)
        assert config.checkpoint.interval_tokens == pytest.approx(total / 10)


def test_template_errors_name_the_variable(env, tmp_path):
    del env["T5_SPM"]
    with pytest.raises(SeesawConfigError, match="T5_SPM is not set.*data.tokenizer_model"):
        resolver.resolve(PAPER_150M, env=env)
    env["T5_SPM"] = str(tmp_path / "missing.model")
    raw = resolver.resolve(PAPER_150M, env=env)
    with pytest.raises(SeesawConfigError, match=r"missing.model is not a file \(from \$T5_SPM\)"):
        resolver.check_inputs(raw)


@pytest.mark.parametrize("path", DS_CONFIGS, ids=os.path.basename)
def test_ds_configs_build_plans(path):
    config = load_config_file(path)
    paper = re.match(r"\d+m_b\d+_", os.path.basename(path))  # others: CPU, micro 8, dp <= 4
    for dp in (1, 8) if paper else (1, 2):
        plan = plan_from_ds_config(config, dp)
        assert plan.optimizer_steps > 0


def test_data_check_and_prepare(env, tmp_path, monkeypatch):
    raw = resolver.resolve(PAPER_150M, env=env)
    raw.pop("_vars")
    config = parse_run_config(raw)
    with pytest.raises(SeesawConfigError, match="is not prepared for these inputs"):
        resolver.ensure_data(config, "check")
    calls = []
    fake = type(sys)("seesaw_ds.data.prepare")
    fake.prepare = lambda *args, **kwargs: calls.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "seesaw_ds.data.prepare", fake)
    resolver.ensure_data(config, "prepare")
    assert calls == [((config.data.inputs, env["SEESAW_DATA_DIR"]), dict(
        vocab_size=None, tokenizer_model=env["T5_SPM"], text_field="text",
        max_bytes=70_000_000_000, encoding="utf-8", encoding_errors="strict",
        doc_separator="blank-line"))]


@pytest.mark.parametrize("missing", ["C4_JSONL", "T5_SPM"])
def test_single_node_missing_variable(env, missing):
    del env[missing]
    result = run("single_node.sh", ["150m", "256", "seesaw"], dict(env, NGPUS="1"))
    assert result.returncode == 2
    assert missing in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert launched(env) is None


def test_single_node_missing_config(env):
    result = run("single_node.sh", ["150m", "999", "seesaw"], env)
    assert result.returncode == 2
    assert "no DeepSpeed config ds_configs/150m_b999_seesaw.json" in result.stderr
    assert "150m_b256_seesaw" in result.stderr and launched(env) is None


def test_single_node_command(env, monkeypatch):
    env = shell_only(env)
    result = run("single_node.sh", ["150m", "256", "seesaw", "--resume"], env)
    assert result.returncode == 0, result.stderr
    run_dir = f"{env['SEESAW_RESULTS']}/150m_b256_seesaw"
    run_yaml = f"{run_dir}/launch/run_config.yaml"
    ds_config = f"{REPO}/ds_configs/150m_b256_seesaw.json"
    assert launched(env) == [
        "deepspeed", "--num_gpus", "8", "--master_port", "29500", "--module", "seesaw_ds.train",
        "--run-config", run_yaml, "--deepspeed_config", ds_config, "--output-dir", run_dir,
        "--resume"]
    resolver_argv = launched(env, ".python")
    assert resolver_argv == [
        "-m", "seesaw_ds.launch_config", "launch/run_configs/paper_150m.yaml", "--out", run_yaml,
        "--output-dir", run_dir, "--ds-config", ds_config, "--dp", "8", "--data", "skip"]
    # the same arguments, to the real resolver (in-process: no second torch import)
    for name in ("C4_JSONL", "T5_SPM", "SEESAW_DATA_DIR"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.chdir(REPO)
    assert resolver.main(resolver_argv[2:]) == 0
    resolved = parse_run_config(yaml.safe_load(Path(run_yaml).read_text()))
    assert resolved.output_dir == run_dir and resolved.model.shape == "150m"
    assert resolved.data.tokenizer_model == env["T5_SPM"]


def test_multi_node_command(env, tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# two nodes\nnode-0 slots=8\nnode-1 slots=8\n\n")
    env = shell_only(dict(env, HOSTFILE=str(hostfile), NGPUS="4"))
    result = run("multi_node.sh", ["600m", "1024", "cosine"], env)
    assert result.returncode == 0, result.stderr
    assert resolver_args(env)["--dp"] == "8"  # 2 hosts x min(8 slots, NGPUS 4)
    run_dir = f"{env['SEESAW_RESULTS']}/600m_b1024_cosine"
    assert launched(env) == [
        "deepspeed", "--hostfile", str(hostfile), "--master_addr", "node-0", "--master_port",
        "29500", "--num_gpus", "4", "--module", "seesaw_ds.train",
        "--run-config", f"{run_dir}/launch/run_config.yaml", "--deepspeed_config",
        f"{REPO}/ds_configs/600m_b1024_cosine.json", "--output-dir", run_dir]


def test_a_data_parallel_size_the_config_cannot_use_fails_before_launch():
    with pytest.raises(SeesawConfigError, match="batch_multiple = 16"):
        resolver.check_plan(str(REPO / "ds_configs" / "150m_b128_seesaw.json"), 16)


@pytest.mark.parametrize("task, run_name, resume", [
    ("0", "150m_b128_cosine", False), ("17", "600m_b1024_seesaw", True)])
def test_slurm_array(env, task, run_name, resume):
    run_dir = Path(env["SEESAW_RESULTS"]) / run_name
    if resume:
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "latest").write_text("step_100")
    env = shell_only(env)
    del env["SEESAW_DATA"]
    env.update(SLURM_JOB_ID="4242", SLURM_ARRAY_TASK_ID=task, SLURM_NNODES="2",
               SLURM_JOB_NODELIST="gpu-[a-b]", SLURM_SUBMIT_DIR=str(REPO), NGPUS="4")
    result = run("slurm_paper.sbatch", ["--extra"], env)
    assert result.returncode == 0, result.stderr
    assert resolver_args(env)["--dp"] == "8" and resolver_args(env)["--data"] == "check"
    assert launched(env) == [
        "torchrun", "--nnodes", "2", "--node_rank", "0", "--nproc_per_node", "4",
        "--rdzv_backend", "static", "--rdzv_endpoint", "gpu-a:24242", "-m", "seesaw_ds.train",
        "--run-config", f"{run_dir}/launch/run_config.yaml", "--deepspeed_config",
        f"{REPO}/ds_configs/{run_name}.json", "--output-dir", str(run_dir),
    ] + (["--resume"] if resume else []) + ["--extra"]


def test_slurm_needs_a_run(env):
    env.update(SLURM_JOB_ID="1", SLURM_NNODES="1", SLURM_SUBMIT_DIR=str(REPO))
    result = run("slurm_paper.sbatch", [], env)
    assert result.returncode == 2 and "SEESAW_RUN" in result.stderr
