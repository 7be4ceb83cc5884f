"""The arms of an evaluation: each a name, a workflow and its config, run on the same items.

`--arm NAME=CONFIG_FILE` (a workflow config; a top-level `workflow:` key picks another workflow than
the command's) and/or `--arms FILE.yaml` mapping names to `{workflow?, config?}` where `config` is a
mapping or a config file path (relative to the arms file). No arm at all: one arm `default`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braid.agents.runtime.config import ConfigError, load_config_file

__all__ = ["Arm", "ArmError", "resolve_arms"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class ArmError(ValueError):
    """An arm that cannot be read; the message names it."""


@dataclass(frozen=True)
class Arm:
    name: str
    workflow: str
    config: dict[str, Any] = field(default_factory=dict)
    """Not validated here: the workflow's config model does that when it is loaded."""
    source: str = "the workflow's defaults"


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ArmError(f"arm name {name!r}: use letters, digits and _ . + - (starting with a letter or digit)")
    return name


def _from_file(name: str, path: Path, workflow: str) -> Arm:
    try:
        config = load_config_file(path)
    except ConfigError as exc:
        raise ArmError(f"arm {name!r}: {exc}") from None
    chosen = config.pop("workflow", None) or workflow
    if not isinstance(chosen, str):
        raise ArmError(f"arm {name!r}: `workflow` in {path} must be a workflow name")
    return Arm(name, chosen, config, str(path))


def parse_arm_option(text: str, workflow: str) -> Arm:
    name, sep, path = text.partition("=")
    if not sep or not path:
        raise ArmError(f"--arm {text!r}: write it as NAME=CONFIG_FILE")
    return _from_file(_check_name(name.strip()), Path(path.strip()), workflow)


def load_arms_file(path: Path, workflow: str) -> list[Arm]:
    try:
        data = load_config_file(path)
    except ConfigError as exc:
        raise ArmError(f"arms file: {exc}") from None
    arms = []
    for name, spec in data.items():
        name = _check_name(str(name))
        spec = {} if spec is None else spec
        if not isinstance(spec, dict) or set(spec) - {"workflow", "config"}:
            raise ArmError(f"arms file {path}, arm {name!r}: give a mapping with `config` (a mapping or a file) "
                           "and optionally `workflow`")
        chosen = spec.get("workflow") or workflow
        config = spec.get("config") or {}
        if isinstance(config, str):
            arm = _from_file(name, (path.parent / config), chosen)
            arms.append(arm if "workflow" not in spec else Arm(name, chosen, arm.config, arm.source))
        elif isinstance(config, dict):
            arms.append(Arm(name, str(chosen), dict(config), f"{path} (inline)"))
        else:
            raise ArmError(f"arms file {path}, arm {name!r}: `config` must be a mapping or a file path")
    return arms


def resolve_arms(workflow: str, arm_options: list[str], arms_file: Path | None) -> list[Arm]:
    """The arms of `--arms FILE` then `--arm` options, in that order; `default` when none is given."""
    arms = load_arms_file(arms_file, workflow) if arms_file is not None else []
    arms += [parse_arm_option(text, workflow) for text in arm_options]
    if not arms:
        return [Arm("default", workflow)]
    names = [arm.name for arm in arms]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ArmError(f"arm names must be unique; repeated: {', '.join(duplicates)}")
    return arms
