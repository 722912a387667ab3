"""Run configs: YAML in, a validated :class:`ResolvedConfig` out.

A config names one job and its parameters (see ``CONTRIBUTING.md``)::

    job: izhikevich_patterns
    description: one line that `neurosuite list` shows
    seed: 0
    demo_stage: 10
    params: {dt_ms: 0.25}
    quick: {dt_ms: 0.5}     # overrides for the demo / --quick
    smoke: {dt_ms: 1.0}     # overrides for the tests / --smoke

Unknown keys, at the top level or in ``params``, are refused with the list of valid keys and
a close-match suggestion; so are bad values (pydantic's message, with the field's path).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from neurosuite.jobs import get_job, suggest
from neurosuite.parallel import check_n_jobs

LEVELS = ("full", "quick", "smoke")


class ConfigError(ValueError):
    """A config that cannot run; the message names the file, the key and what was expected."""


class RunConfig(BaseModel):
    """The top level of a config file."""

    model_config = ConfigDict(extra="forbid")

    job: str = Field(description="registered job name (`neurosuite list`)")
    description: str = Field("", description="one line shown by `neurosuite list`")
    seed: int = Field(0, ge=0, description="seed of every random generator of the run")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    n_jobs: int = Field(1, description="CPUs the run may use, MNE-like (-1: all); torch "
                        "threads or worker processes (neurosuite.parallel)")
    demo_stage: int | None = Field(None, description="order of this config in `neurosuite demo`")
    params: dict[str, Any] = Field(default_factory=dict)
    quick: dict[str, Any] = Field(default_factory=dict)
    smoke: dict[str, Any] = Field(default_factory=dict)

    @field_validator("n_jobs", mode="before")
    @classmethod
    def _check_n_jobs(cls, value: Any) -> int:
        return check_n_jobs(value)


@dataclass
class ResolvedConfig:
    """A config after overrides and validation, ready to run."""

    path: Path | None
    top: RunConfig
    level: str
    params: BaseModel
    overrides: list[str] = field(default_factory=list)

    @property
    def job(self) -> str:
        return self.top.job

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as written into the run folder (defaults filled in)."""
        return {
            "job": self.top.job,
            "description": self.top.description,
            "seed": self.top.seed,
            "device": self.top.device,
            "n_jobs": self.top.n_jobs,
            "level": self.level,
            "params": self.params.model_dump(mode="json"),
            "source": str(self.path) if self.path else None,
            "overrides": list(self.overrides),
        }


def _format_validation_error(err: ValidationError, where: str, model: type[BaseModel]) -> str:
    lines = []
    valid = list(model.model_fields)
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            lines.append(
                f"{where}{loc}: unknown key {key!r}; valid keys are: {', '.join(valid)}."
                f"{suggest(key, valid)}"
            )
        elif e["type"] == "missing":
            lines.append(f"{where}{loc}: required key is missing")
        else:
            lines.append(f"{where}{loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set key=value``: a dotted key and a YAML value.

    A bare key that is not a top-level key is taken as ``params.<key>``.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set params.n=100")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"--set {item!r}: the value {raw!r} is not valid YAML ({first}); quote text, "
            "e.g. --set 'params.name=\"a b\"'"
        ) from None
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    if parts[0] not in RunConfig.model_fields:
        parts = ["params", *parts]
    return parts, value


def _set_path(tree: dict, parts: list[str], value: Any) -> None:
    node = tree
    for p in parts[:-1]:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {}
            node[p] = child
        node = child
    node[parts[-1]] = value


def deep_merge(base: dict, over: dict) -> dict:
    """``base`` updated recursively with ``over`` (neither is modified)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file; a missing file or bad YAML is a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte "
                          f"{err.start}); expected a YAML config") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def resolve(
    source: str | Path | dict[str, Any],
    level: str = "full",
    sets: list[str] | None = None,
) -> ResolvedConfig:
    """Load, override and validate a config.

    Parameters
    ----------
    source : path | dict
        A YAML file or an already-parsed mapping.
    level : {"full", "quick", "smoke"}
        ``quick`` applies the config's ``quick:`` overrides, ``smoke`` applies ``quick:`` then
        ``smoke:``.
    sets : list of str
        ``key=value`` overrides applied last (``--set``).
    """
    if level not in LEVELS:
        raise ConfigError(f"level: expected one of {LEVELS}, got {level!r}")
    path = None
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        raw = load_yaml(path)
    where = f"{path}: " if path else ""
    overrides = []
    for item in sets or []:
        parts, value = parse_set(item)
        _set_path(raw, parts, value)
        overrides.append(item)
    try:
        top = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, where, RunConfig)) from None
    try:
        _, model = get_job(top.job)
    except KeyError as err:
        raise ConfigError(f"{where}{err.args[0]}") from None
    params = dict(top.params)
    if level in ("quick", "smoke"):
        params = deep_merge(params, top.quick)
    if level == "smoke":
        params = deep_merge(params, top.smoke)
    # --set params.* wins over quick/smoke overrides
    for item in sets or []:
        parts, value = parse_set(item)
        if parts[0] == "params":
            _set_path(params, parts[1:], value)
    try:
        validated = model.model_validate(params)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"{where}params.", model)) from None
    # the overrides must name real parameters too, even at levels that do not apply them
    for name in ("quick", "smoke"):
        extra = sorted(set(getattr(top, name)) - set(model.model_fields))
        if extra:
            valid = list(model.model_fields)
            raise ConfigError(
                f"{where}{name}.{extra[0]}: unknown key {extra[0]!r}; valid keys are: "
                f"{', '.join(valid)}.{suggest(extra[0], valid)}"
            )
    return ResolvedConfig(path=path, top=top, level=level, params=validated, overrides=overrides)
