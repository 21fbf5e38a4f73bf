"""Resolve a run-config template into the file a launch passes to ``seesaw_ds.train``.

Usage (the launch scripts call it; ``launch/README.md``)::

    python -m seesaw_ds.launch_config TEMPLATE.yaml [--out RESOLVED.yaml]
        [--output-dir DIR] [--ds-config DS.json --dp N] [--data prepare|check|skip]

String values in the template may hold ``${VAR}`` or ``${VAR:-default}``, taken from the
environment; a value that is nothing but one placeholder is read as YAML after substitution
(``${SEESAW_MAX_BYTES:-70000000000}`` stays a number). Paths become absolute, so the resolved
file means the same on every node and in every working directory. Then, before any GPU is
touched: the run config is validated (``parse_run_config``), the tokenizer and corpus must
exist, the DeepSpeed config must give a plan on ``--dp`` ranks, and the prepared data is
built (``prepare``: one process, reused when up to date), checked (``check``) or left alone.

Every mistake ends the program with exit code 2 and one line naming the variable or field.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence

import yaml

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.run_config import RunConfig, parse_run_config

__all__ = ["substitute", "resolve", "check_inputs", "check_plan", "ensure_data", "main"]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PATH_FIELDS = (("data", "prepared_dir"), ("data", "tokenizer_model"), ("checkpoint", "dir"))


def _fill(text: str, where: str, env: Dict[str, str], source: str, used: Dict[str, List[str]]):
    def one(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name) or default
        if value is None:
            raise SeesawConfigError(
                f"environment variable {name} is not set; {source} needs it for {where} "
                "(see launch/README.md).")
        used.setdefault(where, []).append(name)
        return value

    filled = _PLACEHOLDER.sub(one, text)
    whole = _PLACEHOLDER.fullmatch(text) is not None
    return yaml.safe_load(filled) if whole and filled.strip() else filled


def substitute(raw: Any, env: Dict[str, str], source: str = "the run config",
               used: Optional[Dict[str, List[str]]] = None, where: str = "") -> Any:
    """``raw`` with every ``${VAR}``/``${VAR:-default}`` in its strings replaced from ``env``.

    ``used`` (when given) collects, per field path, the variables that filled it.
    """
    used = {} if used is None else used
    if isinstance(raw, dict):
        return {key: substitute(value, env, source, used, f"{where}{key}.")
                for key, value in raw.items()}
    if isinstance(raw, list):
        return [substitute(value, env, source, used, f"{where[:-1]}[{index}].")
                for index, value in enumerate(raw)]
    if isinstance(raw, str):
        return _fill(raw, where[:-1], env, source, used)
    return raw


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def resolve(template: str, env: Optional[Dict[str, str]] = None,
            output_dir: Optional[str] = None) -> Dict[str, Any]:
    """The template's mapping, substituted, with absolute paths and ``output_dir`` applied.

    The returned mapping has a private key ``_vars`` (field path -> variables); drop it
    before writing. Raises :class:`SeesawConfigError`.
    """
    if not os.path.isfile(template):
        raise SeesawConfigError(f"run config template {template} does not exist.")
    with open(template, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise SeesawConfigError(f"{template} must hold a mapping at the top level.")
    used: Dict[str, List[str]] = {}
    raw = substitute(raw, dict(os.environ if env is None else env), template, used)
    if output_dir is not None:
        raw["output_dir"] = output_dir
    if isinstance(raw.get("output_dir"), str) and raw["output_dir"]:
        raw["output_dir"] = _absolute(raw["output_dir"])
    for section, key in _PATH_FIELDS:
        value = (raw.get(section) or {}).get(key)
        if isinstance(value, str) and value:
            raw[section][key] = _absolute(value)
    inputs = (raw.get("data") or {}).get("inputs")
    if isinstance(inputs, list):
        raw["data"]["inputs"] = [_absolute(item) if isinstance(item, str) else item
                                 for item in inputs]
    parse_run_config(raw)
    raw["_vars"] = used
    return raw


def _from(used: Dict[str, List[str]], where: str) -> str:
    names = used.get(where)
    return f" (from ${', $'.join(names)})" if names else ""


def check_inputs(raw: Dict[str, Any]) -> None:
    """The tokenizer file and every corpus input exist (globs must match something)."""
    data, used = raw.get("data") or {}, raw.get("_vars", {})
    model = data.get("tokenizer_model")
    if model is not None and not os.path.isfile(model):
        raise SeesawConfigError(
            f"data.tokenizer_model = {model} is not a file{_from(used, 'data.tokenizer_model')}.")
    for index, item in enumerate(data.get("inputs") or []):
        if not (glob.glob(item) if glob.has_magic(item) else os.path.exists(item)):
            where = f"data.inputs[{index}]"
            raise SeesawConfigError(f"{where} = {item} matches nothing{_from(used, where)}.")


def check_plan(ds_config: str, dp: int) -> Any:
    """The plan ``ds_config`` follows on ``dp`` data-parallel ranks (raises on a bad config)."""
    from seesaw_ds.config import load_config_file, plan_from_ds_config

    if not os.path.isfile(ds_config):
        raise SeesawConfigError(f"DeepSpeed config {ds_config} does not exist.")
    try:
        return plan_from_ds_config(load_config_file(ds_config), dp)
    except SeesawConfigError as error:
        raise SeesawConfigError(f"{ds_config} on {dp} data-parallel ranks: {error}") from None


def ensure_data(config: RunConfig, mode: str) -> None:
    """``prepare``: build or reuse ``data.prepared_dir``; ``check``: it must be up to date."""
    data = config.data
    if mode == "skip":
        return
    if mode == "prepare":
        from seesaw_ds.data.prepare import prepare

        # the same call as seesaw_ds.train's rank 0
        prepare(data.inputs, data.prepared_dir, **data.prepare_options())
        return
    from seesaw_ds.data.manifest import outputs_intact, read_manifest

    manifest = read_manifest(data.prepared_dir)
    params = (manifest or {}).get("params", {})
    wanted = {"inputs": list(data.inputs) if data.inputs else "stdlib",
              "text_field": data.text_field, "max_bytes": data.max_bytes,
              "encoding": data.encoding, "encoding_errors": data.encoding_errors,
              "doc_separator": data.doc_separator}
    if (manifest is None or not outputs_intact(data.prepared_dir, manifest)
            or any(params.get(key) != value for key, value in wanted.items())):
        raise SeesawConfigError(
            f"data.prepared_dir = {data.prepared_dir} is not prepared for these inputs; "
            "prepare it once first (launch/README.md, 'Data') or set SEESAW_DATA=prepare.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m seesaw_ds.launch_config",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("template", help="run-config YAML, may hold ${VAR} placeholders")
    parser.add_argument("--out", help="write the resolved YAML here")
    parser.add_argument("--output-dir", help="set output_dir (the run directory)")
    parser.add_argument("--ds-config", help="DeepSpeed JSON whose plan must build on --dp")
    parser.add_argument("--dp", type=int, default=None, help="data-parallel ranks")
    parser.add_argument("--data", choices=("prepare", "check", "skip"), default="skip",
                        help="prepare, check or ignore data.prepared_dir (default: skip)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        raw = resolve(args.template, output_dir=args.output_dir)
        check_inputs(raw)
        raw.pop("_vars")
        if args.ds_config is not None:
            check_plan(args.ds_config, args.dp or 1)
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(f"# resolved from {args.template} by seesaw_ds.launch_config;"
                             " edit the template, not this file\n")
                yaml.safe_dump(raw, handle, sort_keys=False)
        ensure_data(parse_run_config(raw), args.data)
    except SeesawConfigError as error:
        print(f"launch: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
