"""The declarative spec: what to train, as plain data.

A spec has four sections: ``data``, ``model``, ``objective``, ``train``. A component
(``data``, ``objective`` and ``model.{encoder,decoder,likelihood,prior,guide,variant}``) is a
bare name or a table ``{name: ..., option: value}``. Specs load from YAML/TOML/JSON
files, dicts or the dataclasses below; ``--set a.b=value`` overrides any key. Every
error names the key path, the bad value and the valid choices.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError


@dataclass
class Component:
    """A registered component chosen by ``name`` with its ``options``."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value, key: str) -> Component:
        if isinstance(value, Component):
            return Component(value.name, dict(value.options))
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict):
            if "name" not in value:
                raise SpecError(key, f"a component table needs a 'name' key, got {value!r}")
            opts = {k: v for k, v in value.items() if k != "name"}
            if not isinstance(value["name"], str):
                raise SpecError(key + ".name", f"must be a string, got {value['name']!r}")
            return cls(value["name"], opts)
        raise SpecError(
            key, f"must be a component name or a table with 'name', got {value!r}"
        )

    def to_dict(self):
        return {"name": self.name, **self.options} if self.options else self.name


def _component(name: str, **options) -> Any:
    return field(default_factory=lambda: Component(name, copy.deepcopy(options)))


@dataclass
class ModelSpec:
    """``model`` section: the latent size, the five components of p(z)p(x|z)q(z|x) and the
    ``variant``: ``vae`` (unconditional), ``cvae`` (conditional on labels y) or ``m2``
    (semi-supervised, y partly observed)."""

    latent_dim: int = 8
    encoder: Component = _component("mlp", hidden=[256, 128])
    decoder: Component = _component("mlp", hidden=[128, 256])
    likelihood: Component = _component("bernoulli")
    prior: Component = _component("standard_normal")
    guide: Component = _component("diagonal_normal")
    variant: Component = _component("vae")


@dataclass
class TrainSpec:
    """``train`` section: the SVI loop's settings."""

    epochs: int = 500
    batch_size: int = 128
    lr: float = 1.0e-3
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 10  # epochs; the last epoch is always saved


@dataclass
class Spec:
    """A whole spec. ``Spec.load`` accepts a dict, a path, YAML text or a ``Spec``."""

    data: Component = _component("digits")
    model: ModelSpec = field(default_factory=ModelSpec)
    objective: Component = _component("elbo")
    train: TrainSpec = field(default_factory=TrainSpec)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict | None) -> Spec:
        d = {} if d is None else d
        if not isinstance(d, dict):
            raise SpecError("", f"a spec must be a mapping of sections, got {d!r}")
        _check_keys(d, "", [f.name for f in dataclasses.fields(cls)])
        spec = cls()
        if "data" in d:
            spec.data = Component.parse(d["data"], "data")
        if "objective" in d:
            spec.objective = Component.parse(d["objective"], "objective")
        if "model" in d:
            spec.model = _section(ModelSpec, d["model"], "model")
        if "train" in d:
            spec.train = _section(TrainSpec, d["train"], "train")
        _check_values(spec)
        return spec

    @classmethod
    def load(cls, source=None, overrides=()) -> Spec:
        """Load from a ``Spec``, dict, file path (.yaml/.yml/.toml/.json) or None (defaults),
        then apply ``overrides`` (``"a.b=value"`` strings)."""
        if isinstance(source, Spec):
            d = source.to_dict()
        elif isinstance(source, (str, Path)):
            d = read_file(Path(source))
        else:
            d = copy.deepcopy(source) if source is not None else {}
        for item in overrides:
            d = apply_override(d, item)
        return cls.from_dict(d)

    # ---- output ------------------------------------------------------------------
    def to_dict(self) -> dict:
        def conv(v):
            if isinstance(v, Component):
                return v.to_dict()
            if dataclasses.is_dataclass(v):
                return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
            return copy.deepcopy(v)

        return conv(self)

    def dump(self, path: Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    def components(self):
        """(key path, Component) for every component in the spec."""
        yield "data", self.data
        for f in ("encoder", "decoder", "likelihood", "prior", "guide", "variant"):
            yield f"model.{f}", getattr(self.model, f)
        yield "objective", self.objective


def read_file(path: Path) -> dict:
    if not path.exists():
        raise SpecError("--config", f"file {str(path)!r} does not exist")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise SpecError("--config", f"cannot parse {str(path)!r}: {e}") from e
    raise SpecError(
        "--config", f"unknown spec file type {suffix!r}", choices=[".yaml", ".yml", ".toml", ".json"]
    )


def apply_override(d: dict, item: str) -> dict:
    """Apply one ``dotted.key=value`` override (value parsed as YAML) to a spec dict.

    Setting a component key to a name replaces the whole component (its old options
    may not apply to the new one); setting ``key.option`` adds an option.
    """
    if "=" not in item:
        raise SpecError("--set", f"expected key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise SpecError(key, f"cannot parse value {raw!r}: {e}") from e
    parts = key.split(".")
    if not all(parts):
        raise SpecError("--set", f"bad key {key!r}")
    d = copy.deepcopy(d)
    node = d
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = _default_at(parts[: i + 1])
        if isinstance(child, str):  # bare component name -> table, to hold an option
            child = {"name": child}
        if isinstance(child, Component):
            child = child.to_dict()
            child = {"name": child} if isinstance(child, str) else child
        if not isinstance(child, dict):
            raise SpecError(".".join(parts[: i + 1]), f"is {child!r}, which has no keys")
        node[part] = child
        node = child
    node[parts[-1]] = value
    return d


def _default_at(parts):
    """The default value at a key path, as a plain dict/str (for overrides of absent keys)."""
    node: Any = Spec().to_dict()
    for p in parts:
        if isinstance(node, str):
            node = {"name": node}
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return {}
    return node


def _check_keys(d: dict, prefix: str, valid) -> None:
    for k in d:
        if k not in valid:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise SpecError(where, "unknown key", value=k, choices=list(valid))


def _section(cls, d, key):
    if not isinstance(d, dict):
        raise SpecError(key, f"must be a table, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(d, key, list(fields))
    obj = cls()
    for name, value in d.items():
        default = getattr(obj, name)
        if isinstance(default, Component):
            value = Component.parse(value, f"{key}.{name}")
        else:
            value = _coerce(value, type(default), f"{key}.{name}")
        setattr(obj, name, value)
    return obj


def _coerce(value, typ, key):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise SpecError(key, f"must be {typ.__name__}, got {value!r}", value=value)
    return value


def _check_values(spec: Spec) -> None:
    positive = {
        "model.latent_dim": spec.model.latent_dim,
        "train.epochs": spec.train.epochs,
        "train.batch_size": spec.train.batch_size,
        "train.checkpoint_every": spec.train.checkpoint_every,
    }
    for key, v in positive.items():
        if v < 1:
            raise SpecError(key, f"must be a positive integer, got {v!r}", value=v)
    if not spec.train.lr > 0:
        raise SpecError("train.lr", f"must be > 0, got {spec.train.lr!r}")
    dev = spec.train.device
    if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise SpecError("train.device", f"unknown device {dev!r}", choices=["auto", "cpu", "cuda", "cuda:N"])
