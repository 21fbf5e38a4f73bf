"""The YAML run config of ``python -m seesaw_ds.train``: model, data, evaluation, output.

The schedule itself lives in the DeepSpeed JSON config's ``seesaw`` section; this file
holds what the DeepSpeed config does not: which model, which data, how often to evaluate
and where to write. Every field is validated before any process group or engine exists.

Example::

    model: {shape: tiny}
    data: {prepared_dir: results/data/stdlib, vocab_size: 2048}
    # or existing Megatron data: {paths: [0.7, c4/c4_text_document, 0.3, wiki/wiki_text_document],
    #                             tokenizer_model: c4/tokenizer.model}
    eval: {interval_tokens: 2.0e5, batches: 8, batch_size: 32}
    checkpoint: {interval_tokens: 1.0e6}
    divergence: {max_bad_steps: 3, spike_factor: null}  # stop a diverged run (the default)
    output_dir: results/run
    seed: 0
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional

from seesaw_ds.config.section import parse_token_count
from seesaw_ds.config.typed import close_match, is_number, key_name
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.training.divergence import DivergenceSettings

__all__ = ["ModelSettings", "DataSettings", "EvalSettings", "CheckpointSettings",
           "DivergenceSettings", "RunConfig", "parse_run_config", "load_run_config"]


@dataclass(frozen=True)
class ModelSettings:
    shape: str = "tiny"
    z_loss_coef: float = 1e-4
    init_seed: Optional[int] = None  # defaults to the run seed


@dataclass(frozen=True)
class DataSettings:
    prepared_dir: str = "results/data/stdlib"
    inputs: Optional[List[str]] = None  # None: the embedded standard-library corpus
    vocab_size: int = 2048
    tokenizer_model: Optional[str] = None
    text_field: str = "text"
    max_bytes: Optional[int] = None
    split: str = "98,2,0"
    encoding: str = "utf-8"
    encoding_errors: str = "strict"  # or replace / ignore / backslashreplace
    doc_separator: str = "blank-line"  # .txt files: paragraphs; "file"; or a literal string
    # existing Megatron data instead of a prepared folder: [w1, prefix1, w2, prefix2] or
    # [prefix], with data.tokenizer_model or data.hf_tokenizer (seesaw_ds.data.megatron_blend)
    paths: Optional[List[Any]] = None
    hf_tokenizer: Optional[str] = None
    cache_dir: Optional[str] = None  # data.paths: megatron-core's index cache (default
    #                                  <output_dir>/data_cache)

    def prepare_options(self) -> Dict[str, Any]:
        """The keyword arguments of ``seesaw_ds.data.prepare.prepare`` for these settings."""
        return {
            "vocab_size": self.vocab_size if self.tokenizer_model is None else None,
            "tokenizer_model": self.tokenizer_model, "text_field": self.text_field,
            "max_bytes": self.max_bytes, "encoding": self.encoding,
            "encoding_errors": self.encoding_errors, "doc_separator": self.doc_separator,
        }


@dataclass(frozen=True)
class EvalSettings:
    interval_tokens: float = 2.0e5
    batches: int = 8
    batch_size: int = 32


@dataclass(frozen=True)
class CheckpointSettings:
    dir: Optional[str] = None  # default: <output_dir>/checkpoints
    interval_tokens: Optional[float] = None  # None: only at the end


@dataclass(frozen=True)
class RunConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    output_dir: str = "results/run"
    seed: int = 0
    name: Optional[str] = None  # the schedule's label in summaries; default from config
    divergence: DivergenceSettings = field(default_factory=DivergenceSettings)

    @property
    def checkpoint_dir(self) -> str:
        return self.checkpoint.dir or os.path.join(self.output_dir, "checkpoints")


def _reject_unknown(section: str, given: Mapping[str, Any], cls) -> None:
    known = [f.name for f in fields(cls)]
    for key in given:
        if key not in known:
            raise SeesawConfigError(
                f"run config: {section}{key_name(key)} is not a known key."
                f"{close_match(key, known)} Known: {known}.")


def _positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SeesawConfigError(f"run config: {where} = {value!r} must be a positive integer.")
    return value


def _section(cls, name: str, raw: Any):
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise SeesawConfigError(f"run config: {name} must be a mapping.")
    _reject_unknown(f"{name}.", raw, cls)
    return cls(**raw)


def _expect(where: str, value: Any, kind, what: str, optional: bool = False) -> None:
    if (value is None and optional) or (isinstance(value, kind) and not isinstance(value, bool)):
        if kind is str and value is not None and "\x00" in value:  # os calls refuse it
            raise SeesawConfigError(f"run config: {where} = {value!r} holds a NUL byte.")
        return
    raise SeesawConfigError(f"run config: {where} = {value!r} must be {what}.")


#: Seeds go to torch.manual_seed, which takes 64-bit values.
_SEED_LIMIT = 2 ** 63


def _seed(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _SEED_LIMIT:
        raise SeesawConfigError(
            f"run config: {where} = {value!r} must be an integer in [0, 2**63).")


def _check_types(model: ModelSettings, data: DataSettings, checkpoint: CheckpointSettings,
                 name: Any) -> None:
    """Types that would otherwise fail later, after the process group is up."""
    _expect("model.shape", model.shape, str, "a shape name")
    _expect("model.z_loss_coef", model.z_loss_coef, (int, float), "a number >= 0")
    if not is_number(model.z_loss_coef) or model.z_loss_coef < 0:
        raise SeesawConfigError(f"run config: model.z_loss_coef = {model.z_loss_coef!r} "
                                "must be a finite number >= 0.")
    _expect("model.init_seed", model.init_seed, int, "an integer or null", optional=True)
    if model.init_seed is not None:
        _seed("model.init_seed", model.init_seed)
    _expect("data.prepared_dir", data.prepared_dir, str, "a directory path")
    _expect("data.tokenizer_model", data.tokenizer_model, str, "a path or null", optional=True)
    _expect("data.text_field", data.text_field, str, "a string")
    _expect("data.split", data.split, str, "a string like '98,2,0'")
    from seesaw_ds.data.corpus import check_text_options

    try:
        check_text_options(data.encoding, data.encoding_errors, data.doc_separator)
    except SeesawConfigError as error:
        raise SeesawConfigError(f"run config: data.{error}") from None
    if data.inputs is not None and (not isinstance(data.inputs, list) or not all(
            isinstance(i, str) and "\x00" not in i for i in data.inputs)):
        raise SeesawConfigError(f"run config: data.inputs = {data.inputs!r} must be a list of "
                                "paths or globs (or null for the standard library corpus).")
    _check_paths(data)
    _expect("checkpoint.dir", checkpoint.dir, str, "a directory path or null", optional=True)
    _expect("name", name, str, "a string or null", optional=True)


def _check_paths(data: DataSettings) -> None:
    """data.paths (existing Megatron data) against the prepare options (cheap checks only;
    files and vocabulary: ``seesaw_ds.data.megatron_blend.open_blend``)."""
    _expect("data.hf_tokenizer", data.hf_tokenizer, str, "a tokenizer name or folder or null",
            optional=True)
    _expect("data.cache_dir", data.cache_dir, str, "a directory path or null", optional=True)
    if data.paths is None:
        if data.hf_tokenizer is not None or data.cache_dir is not None:
            key = "hf_tokenizer" if data.hf_tokenizer is not None else "cache_dir"
            raise SeesawConfigError(
                f"run config: data.{key} applies to data.paths (existing Megatron data) only; "
                "a prepared folder uses a sentencepiece data.tokenizer_model.")
        return
    from seesaw_ds.data.megatron_blend import parse_blend

    try:
        parse_blend(data.paths)
    except SeesawConfigError as error:
        raise SeesawConfigError(f"run config: {error}") from None
    if data.inputs is not None:
        raise SeesawConfigError(
            "run config: data.inputs and data.paths exclude each other: inputs are prepared "
            "into data.prepared_dir, paths are Megatron data that is already tokenized.")
    if (data.tokenizer_model is None) == (data.hf_tokenizer is None):
        raise SeesawConfigError(
            "run config: data.paths needs the tokenizer the data was written with: set "
            "exactly one of data.tokenizer_model (a sentencepiece .model) and "
            "data.hf_tokenizer (a Hugging Face tokenizer name or folder).")


def parse_run_config(raw: Mapping[str, Any]) -> RunConfig:
    """Validate a run-config mapping; raises :class:`SeesawConfigError`."""
    if not isinstance(raw, Mapping):
        raise SeesawConfigError("run config must be a mapping at the top level.")
    _reject_unknown("", raw, RunConfig)
    model = _section(ModelSettings, "model", raw.get("model"))
    data = _section(DataSettings, "data", raw.get("data"))
    evaluation = _section(EvalSettings, "eval", raw.get("eval"))
    checkpoint = _section(CheckpointSettings, "checkpoint", raw.get("checkpoint"))
    _positive_int("data.vocab_size", data.vocab_size)
    if data.max_bytes is not None:
        _positive_int("data.max_bytes", data.max_bytes)
    evaluation = EvalSettings(
        interval_tokens=parse_token_count("eval.interval_tokens", evaluation.interval_tokens),
        batches=_positive_int("eval.batches", evaluation.batches),
        batch_size=_positive_int("eval.batch_size", evaluation.batch_size),
    )
    if checkpoint.interval_tokens is not None:
        checkpoint = CheckpointSettings(
            checkpoint.dir,
            parse_token_count("checkpoint.interval_tokens", checkpoint.interval_tokens))
    seed = raw.get("seed", 0)
    _seed("seed", seed)
    output_dir = raw.get("output_dir", "results/run")
    if not isinstance(output_dir, str) or not output_dir or "\x00" in output_dir:
        raise SeesawConfigError("run config: output_dir must be a non-empty path.")
    _check_types(model, data, checkpoint, raw.get("name"))
    from seesaw_ds.model.shapes import SHAPES

    if model.shape not in SHAPES:
        raise SeesawConfigError(
            f"run config: model.shape = {model.shape!r} is unknown; choose one of "
            f"{sorted(SHAPES)}.")
    divergence = _section(DivergenceSettings, "divergence", raw.get("divergence"))
    return RunConfig(model, data, evaluation, checkpoint, output_dir, seed, raw.get("name"),
                     divergence)


def load_run_config(path: str, overrides: Optional[Dict[str, Any]] = None) -> RunConfig:
    """Load YAML (or JSON) from ``path``; ``overrides`` replace top-level keys."""
    from seesaw_ds.config import load_config_file

    if not path.endswith((".yaml", ".yml", ".json")):
        raise SeesawConfigError(f"run config {path} must end in .yaml, .yml or .json.")
    if not os.path.isfile(path):
        raise SeesawConfigError(f"run config {path} does not exist (--run-config).")
    raw = load_config_file(path)
    raw = dict(raw)
    raw.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return parse_run_config(raw)
