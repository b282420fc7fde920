"""Typed configs: dataclasses filled from TOML presets, with strict checking.

A config is resolved from layers, later ones winning: the dataclass defaults (or
a named preset), a TOML file, then command-line overrides. Unknown keys and wrong
types end in one sentence that names the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dacite

from camfields.errors import CamfieldsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

T = TypeVar("T")

#: Where the presets live: ``scenes/`` of a source checkout (and of an editable install), else the
#: copy an installed package holds as ``camfields/_presets``.
SCENES_DIR = next(
    (
        d
        for d in (Path(__file__).resolve().parent.parent / "scenes", Path(__file__).resolve().parent / "_presets")
        if d.is_dir()
    ),
    Path(__file__).resolve().parent / "_presets",
)


def find_preset(name_or_path: str) -> Path:
    """A config file path, or a preset name such as ``image/natural`` under ``scenes/``."""
    path = Path(name_or_path)
    candidates = [path, SCENES_DIR / path, SCENES_DIR / f"{name_or_path}.toml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CamfieldsError(f"config {name_or_path!r} is neither a file nor a preset in {SCENES_DIR}")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML config file, with one clear error when it is missing or malformed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise CamfieldsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise CamfieldsError(f"config file {path} is not valid TOML: {e}") from None


def read_config(name_or_path: str | None) -> tuple[dict[str, Any], str]:
    """The data of a config file or preset, and a label naming it for error messages.

    A file may start from another preset with ``extends = "nerf/blender"``: its own keys
    are merged over that preset's (chains allowed, cycles rejected). ``None`` gives ``{}``.
    """
    if name_or_path is None:
        return {}, "command line"
    chain: list[Path] = []
    data: dict[str, Any] = {}
    name: str | None = name_or_path
    while name is not None:
        path = find_preset(name).resolve()
        if path in chain:
            raise CamfieldsError(f"config {chain[0]}: 'extends' loops back to {path}")
        chain.append(path)
        layer = read_toml(path)
        name = layer.pop("extends", None)
        if name is not None and not isinstance(name, str):
            raise CamfieldsError(f"config {path}: 'extends' must name a preset or file, got {name!r}")
        data = deep_merge(layer, data)
    return data, f"config {chain[0]}"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in, nested tables merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_keys(cls: type, data: dict[str, Any], source: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
            raise CamfieldsError(f"{source}: unknown config key '{prefix}{key}'{hint}")
        options = typing.get_args(hints[key]) or [hints[key]]
        nested = [t for t in options if dataclasses.is_dataclass(t)]
        if nested and isinstance(value, dict):  # a dataclass, or an optional one
            _check_keys(nested[0], value, source, f"{prefix}{key}.")
        elif nested and not (value is None and type(None) in options):
            raise CamfieldsError(f"{source}: '{prefix}{key}' must be a table of settings, got {value!r}")


def _int_as_float(value: Any) -> Any:
    """An integer given for a float field (``lr = 1``) as that float; anything else unchanged, for
    the type check to refuse (a bool is not a number here)."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    _check_keys(cls, data, source)
    try:
        return dacite.from_dict(cls, data, config=dacite.Config(strict=True, type_hooks={float: _int_as_float}))
    except dacite.WrongTypeError as e:  # its message can show a generator dacite made of the value
        value: Any = data
        for key in (e.field_path or "").split("."):
            value = value.get(key) if isinstance(value, dict) else None
        kind = e.field_type
        if dataclasses.is_dataclass(kind) or any(dataclasses.is_dataclass(t) for t in typing.get_args(kind)):
            expected = "a table"
        else:
            expected = str(kind) if typing.get_args(kind) else getattr(kind, "__name__", str(kind))
        raise CamfieldsError(f"{source}: {e.field_path} must be {expected}, got {value!r}") from None
    except dacite.DaciteError as e:
        raise CamfieldsError(f"{source}: {e}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain nested dicts and lists (for JSON and comparison)."""
    return dataclasses.asdict(config)


def check_choice(value: str, choices: typing.Iterable[str], what: str) -> None:
    """Raise a CamfieldsError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise CamfieldsError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in config_differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def upgraded(recorded: dict[str, Any], config_class: type) -> dict[str, Any]:
    """``recorded`` (a config.json or config file) with every setting an earlier version kept
    elsewhere moved to where ``config_class`` keeps it now (its ``LEGACY_KEYS``: old top-level
    name -> dotted path), unless the new place already holds one."""
    moved = dict(recorded)
    for old, new in getattr(config_class, "LEGACY_KEYS", {}).items():
        if old not in moved:
            continue
        value = moved.pop(old)
        *tables, leaf = new.split(".")
        node = moved
        for table in tables:
            node[table] = dict(node.get(table) or {})
            node = node[table]
        node.setdefault(leaf, value)
    return moved


def resolve_preset_config(
    cls: type[T],
    presets: dict[str, dict[str, Any]],
    default: str,
    model: str | None = None,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Layer a model preset, a config file (path or ``scenes/`` preset) and overrides into ``cls``.

    ``presets`` maps each model name to its settings (a dict in the layout of ``cls``);
    ``model`` defaults to the file's ``model`` key, else ``default``. A config file's
    top-level keys apply to every model; its ``[models.<name>]`` tables apply to that model
    only (e.g. smaller widths for a CPU-sized run). The result is validated.
    """
    file_data, source = read_config(config)
    file_data = upgraded(file_data, cls)
    per_model = file_data.pop("models", {})
    if not isinstance(per_model, dict) or not all(isinstance(v, dict) for v in per_model.values()):
        raise CamfieldsError(f"{source}: [models] must hold one table of settings per model")
    per_model = {name: upgraded(table, cls) for name, table in per_model.items()}
    for table in (file_data, *per_model.values()):  # before merging, which would drop a scalar given for a table
        _check_keys(cls, table, source)
    name = model or file_data.get("model", default)
    check_choice(name, presets, "model")
    unknown = set(per_model) - set(presets)
    if unknown:
        raise CamfieldsError(f"{source}: [models.{sorted(unknown)[0]}] names no model; choose from {list(presets)}")
    data = deep_merge(presets[name], file_data)
    data = deep_merge(deep_merge(data, per_model.get(name, {})), {**(overrides or {}), "model": name})
    cfg = from_dict(cls, data, source)
    cfg.validate()
    return cfg


#: A preset: settings in the layout of the task's config (a partial dict is merged over the defaults).
PresetMaker = Callable[[], dict[str, Any]]


class Presets:
    """A task's model presets by name, registered with a decorator (as CompressAI's ``register_model``).

    Example::

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class ToyConfig:
        ...     model: str = "small"
        ...     width: int = 8
        ...     def validate(self) -> None: ...
        >>> PRESETS = Presets(ToyConfig, default="small")
        >>> @PRESETS.register("small")
        ... def small(): return {"width": 8}
        >>> @PRESETS.register("wide")
        ... def wide(): return {"width": 64}
        >>> PRESETS.resolve("wide").width, list(PRESETS)
        (64, ['small', 'wide'])
    """

    def __init__(self, config_class: type, default: str):
        self.config_class, self.default = config_class, default
        self._makers: dict[str, PresetMaker] = {}

    def register(self, name: str) -> Callable[[PresetMaker], PresetMaker]:
        """Decorator registering a function that returns the preset's settings under ``name``."""

        def add(maker: PresetMaker) -> PresetMaker:
            if name in self._makers:
                raise ValueError(f"preset {name!r} is registered twice")
            self._makers[name] = maker
            return maker

        return add

    def settings(self, name: str) -> dict[str, Any]:
        """Every setting of preset ``name``: its own over the config class's defaults."""
        return deep_merge(to_dict(self.config_class()), self._makers[name]())

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __contains__(self, name: object) -> bool:
        return name in self._makers

    def __len__(self) -> int:
        return len(self._makers)

    def resolve(
        self, model: str | None = None, config: str | None = None, overrides: dict[str, Any] | None = None
    ) -> Any:
        """Layer the preset (``model``, else the file's ``model`` key, else the default), a config file
        (path or ``scenes/`` preset, whose ``[models.<name>]`` tables apply to that model only) and
        overrides; the result is validated (see ``config.resolve_preset_config``)."""
        presets = {name: self.settings(name) for name in self._makers}
        return resolve_preset_config(self.config_class, presets, self.default, model, config, overrides)
