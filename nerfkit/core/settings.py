"""Typed settings dataclasses with flat keys: how presets, ``config.yaml`` and ``--set KEY=VALUE``
reach them.

A settings class is a dataclass deriving from :class:`Settings`. Its fields are either scalars
(``bool``, ``int``, ``float``, ``str``, a ``Literal`` of choices, or a number-or-``"auto"`` union
such as ``int | Literal["auto"]``) or *groups*: fields whose type is another :class:`Settings`
dataclass (the hash-grid options of a field, the occupancy-grid options of an estimator). Every
scalar of the tree is addressed by its own name, so files and flags stay flat
(``log2_table_size: 19``, not ``hash_grid: {log2_table_size: 19}``); names are unique within a tree.

``"auto"`` marks a value that code decides (from the device, the scene or another setting).
:func:`auto_field` may name the number that meant "auto" in files written before the explicit
``"auto"`` existed (e.g. ``0``), so those files still load.

Checks happen in one place per class: choices (``Literal``) and types on every override,
:meth:`Settings.validate` (cross-field rules) whenever an instance is made.

Example (a module of its own, as settings classes are resolved from their module)::

    @dataclass
    class Grid(Settings):
        resolution: int = 64

    @dataclass
    class Method(Settings):
        lr: float | Literal["auto"] = auto_field(legacy=0.0)
        grid: Grid = field(default_factory=Grid)

    m = apply_overrides(Method(), {"resolution": "128", "lr": 0}, "example")
    m.grid.resolution, m.lr, flat_dict(m)   # (128, 'auto', {'lr': 'auto', 'resolution': 128})
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import field
from typing import Any, Literal, Mapping, TypeVar

from nerfkit.core.errors import NerfkitError

AUTO = "auto"
LEGACY_AUTO = "nerfkit_legacy_auto"     # field metadata key: the value that meant "auto" before
ABSENT = "nerfkit_absent"                # field metadata key: what a saved run without the key used
T = TypeVar("T", bound="Settings")


class Settings:
    """Base of every settings dataclass: choices checked and :meth:`validate` run on creation."""

    def __post_init__(self) -> None:
        for name, hint in _hints(type(self)).items():
            if name in _group_names(type(self)):
                continue
            value = getattr(self, name)
            choices = _choices(hint)
            if choices and isinstance(value, str) and value not in choices:
                raise NerfkitError(f"{name} must be {choices_text(choices)}, got '{value}'")
        self.validate()

    def validate(self) -> None:
        """Raise :class:`NerfkitError` (one sentence) for values that do not fit together."""

    def resolve(self: T, device_type: str) -> T:
        """A copy with the "auto" values that depend on the device filled in (default: itself)."""
        return self

    def resolve_scene(self: T, unbounded: bool) -> T:
        """A copy with the "auto" values that depend on the scene's kind (an object, or an unbounded
        capture) filled in when a run starts (default: itself)."""
        return self

    def updated(self: T, **values: Any) -> T:
        """A copy with flat ``values`` set (typed like :func:`apply_overrides`), for code and tests."""
        return apply_overrides(self, values, type(self).__name__)


def auto_field(legacy: Any = None, absent: Any = None) -> Any:
    """A field defaulting to ``"auto"``; ``legacy`` is the number earlier files wrote for it, and
    ``absent`` the value that runs saved before the setting existed used (see :func:`fill_absent`)."""
    metadata = {key: value for key, value in ((LEGACY_AUTO, legacy), (ABSENT, absent)) if value is not None}
    return field(default=AUTO, metadata=metadata)


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


# ----------------------------------------------------------------------------- the flat view

@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def _group_names(cls: type) -> frozenset[str]:
    hints = _hints(cls)
    return frozenset(f.name for f in dataclasses.fields(cls)
                     if isinstance(hints[f.name], type) and issubclass(hints[f.name], Settings))


@functools.lru_cache(maxsize=None)
def leaf_paths(cls: type) -> dict[str, tuple[str, ...]]:
    """Flat name -> attribute path of every scalar setting of ``cls``, in declaration order."""
    paths: dict[str, tuple[str, ...]] = {}
    hints = _hints(cls)
    for item in dataclasses.fields(cls):
        if item.name in _group_names(cls):
            inner = leaf_paths(hints[item.name])
            nested = {name: (item.name,) + path for name, path in inner.items()}
        else:
            nested = {item.name: (item.name,)}
        for name, path in nested.items():
            if name in paths:
                raise TypeError(f"{cls.__name__}: setting '{name}' appears twice "
                                f"({'.'.join(paths[name])} and {'.'.join(path)})")
            paths[name] = path
    return paths


def fill_absent(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """A saved run's flat ``values`` with the settings it predates filled in as it trained.

    A setting whose default became ``auto`` after runs were saved without it (``auto_field(absent=)``)
    would otherwise resolve, on loading, to what a new run picks rather than what the old run used.
    Only for ``config.yaml`` of runs: presets and the command line leave absent settings at ``auto``.
    """
    filled = dict(values)
    for name, path in leaf_paths(cls).items():
        owner = cls
        for attribute in path[:-1]:
            owner = _hints(owner)[attribute]
        item = next(f for f in dataclasses.fields(owner) if f.name == path[-1])
        if ABSENT in item.metadata and name not in filled:
            filled[name] = item.metadata[ABSENT]
    return filled


def setting_names(cls: type) -> list[str]:
    """The flat names of every scalar setting of ``cls``."""
    return list(leaf_paths(cls))


def flat_dict(settings: Settings) -> dict[str, Any]:
    """Flat name -> value of every scalar setting (what ``config.yaml`` stores)."""
    out = {}
    for name, path in leaf_paths(type(settings)).items():
        value: Any = settings
        for attribute in path:
            value = getattr(value, attribute)
        out[name] = value
    return out


def left_at_defaults(settings: Settings, values: Mapping[str, Any]) -> dict[str, Any]:
    """The items of flat ``values`` whose settings are still at their class defaults in ``settings``
    (a profile that must not undo what a user or a preset set)."""
    current, defaults = flat_dict(settings), flat_dict(type(settings)())
    return {key: value for key, value in values.items() if current[key] == defaults[key]}


def apply_overrides(settings: T, values: Mapping[str, Any], source: str) -> T:
    """A copy of ``settings`` with flat ``values`` set, each coerced to its field's type.

    Args:
        values: flat name -> value (strings from the command line are converted).
        source: where the values come from (a file, "command line"), named in errors.
    Raises:
        NerfkitError: an unknown name, a value of the wrong type, a choice not offered, or
            values that do not fit together (:meth:`Settings.validate`).
    """
    paths = leaf_paths(type(settings))
    grouped: dict[str, Any] = {}
    for key, value in values.items():
        if key not in paths:
            raise NerfkitError(f"{source}: unknown setting '{key}' for {type(settings).__name__}; "
                               f"expected one of {', '.join(sorted(paths))}")
        grouped[key] = value
    try:
        return _replace(settings, grouped, source)
    except NerfkitError as error:          # from validate(): say where the values came from
        if str(error).startswith(source):
            raise
        raise NerfkitError(f"{source}: {error}") from None


def _replace(settings: T, values: dict[str, Any], source: str) -> T:
    cls = type(settings)
    hints = _hints(cls)
    own: dict[str, Any] = {}
    groups = _group_names(cls)
    for item in dataclasses.fields(cls):
        if item.name in groups:
            inner_names = leaf_paths(hints[item.name])
            inner = {k: v for k, v in values.items() if k in inner_names}
            if inner:
                own[item.name] = _replace(getattr(settings, item.name), inner, source)
        elif item.name in values:
            legacy = item.metadata.get(LEGACY_AUTO)
            own[item.name] = coerce(values[item.name], hints[item.name], source, item.name, legacy)
    return dataclasses.replace(settings, **own)


# ----------------------------------------------------------------------------- coercion

def _choices(hint: Any) -> tuple[str, ...]:
    """The strings a ``Literal`` (or a union holding one) allows."""
    if typing.get_origin(hint) is Literal:
        return tuple(str(c) for c in typing.get_args(hint))
    if _is_union(hint):
        return tuple(c for arg in typing.get_args(hint) for c in _choices(arg))
    return ()


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def choices_text(choices: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]


def coerce(value: Any, hint: Any, source: str, name: str, legacy_auto: Any = None) -> Any:
    """``value`` converted to the type ``hint`` (bool, int, float, str, Literal, or a union of a
    number and a Literal); ``legacy_auto`` (if given) is read as ``"auto"``. Errors name the setting
    ``name`` and where the value came from (``source``)."""
    where = f"{source}: setting '{name}'"
    if legacy_auto is not None and not isinstance(value, bool) and _same_number(value, legacy_auto):
        return AUTO
    choices = _choices(hint)
    if _is_union(hint):
        if isinstance(value, str) and value in choices:
            return value
        numbers = [arg for arg in typing.get_args(hint) if arg in (int, float)]
        if numbers:
            try:
                return coerce(value, numbers[0], source, name)
            except NerfkitError:
                raise NerfkitError(f"{where} must be {choices_text(choices)} or a number, got {value!r}") from None
        hint = str
    if typing.get_origin(hint) is Literal:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            text = "on" if value else "off"          # YAML 1.1 reads a bare on / off as a bool
        if text not in choices:
            raise NerfkitError(f"{source}: {name} must be {choices_text(choices)}, got {value!r}")
        return text
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise NerfkitError(f"{where} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise NerfkitError(f"{where} must be a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise NerfkitError(f"{where} must be a number, got {value!r}") from None
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise NerfkitError(f"{where} must be a whole number, got {value!r}")
        return number
    if hint is str:
        return str(value)
    return value


def _same_number(value: Any, reference: Any) -> bool:
    try:
        return float(value) == float(reference)
    except (TypeError, ValueError):
        return False


__all__ = ["AUTO", "Settings", "apply_overrides", "auto_field", "coerce", "fill_absent", "flat_dict", "is_auto",
           "leaf_paths", "setting_names"]
