"""Settings declared once, on the dataclass field; names, parsing, help and docs derived.

A worker setting used to be written in five places (the field and its default, an
``ENV_*`` constant, a ``from_environ`` line repeating the default, an argparse flag,
a list of flag names), which drift apart: a changed default in one place and not the
others is a silent misconfiguration. Here a setting is a field made by
:func:`setting`, which carries its default, a one-line help text and its unit. From
that declaration and the field's type annotation come:

* the environment name, ``TYMPAN_`` + the upper-case field name (``max_batch`` gives
  ``TYMPAN_MAX_BATCH``) unless the field names an older one;
* the flag, ``--`` + the field name with dashes (``--max-batch``), its ``dest`` being
  the field name;
* parsing: ``int``, ``float``, ``str``, ``Path``, ``X | None`` (an empty variable is
  the default), ``Literal[...]`` (the flag's choices) and ``tuple[X, ...]``
  (comma-separated in the environment, a repeated flag);
* the help text and the documentation table (``docs/configuration.md``);
* the range checks (``minimum``, ``above``, ``maximum``), which each class's
  ``__post_init__`` runs with :func:`check_bounds` before its cross-field checks.

A field whose type is itself a settings dataclass (a policy) is a group: its settings
are walked as if they were the outer class's, so names are unique across the tree
and the command line stays flat (``--max-batch`` sets ``batching.max_batch``).

Values come from flags, then the environment, then the field's default; a value
that does not parse, or that the dataclass's own validation refuses, is a
:class:`~stream.errors.ConfigError` naming the variable or flag it came from.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from stream.errors import ConfigError

ENV_PREFIX = "TYMPAN_"
_KEY = "tympan.setting"
_SCALARS: tuple[type, ...] = (int, float, str, Path)


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a field's metadata says about its setting (see :func:`setting`)."""

    help: str
    unit: str = ""
    env: str | None = None
    flag: str | None = None
    default_text: str | None = None
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    why: str = ""
    external: bool = False

    def bounds_text(self) -> str:
        """The allowed range as read in the docs (``">= 1"``, ``"> 0"``, ``"in 0..65535"``);
        empty when there is none."""
        if self.minimum is not None and self.maximum is not None:
            return f"in {self.minimum:g}..{self.maximum:g}"
        parts = [
            f"{op} {bound:g}"
            for op, bound in ((">=", self.minimum), (">", self.above), ("<=", self.maximum))
            if bound is not None
        ]
        return " and ".join(parts)


def setting(
    default: Any,
    *,
    help: str,
    unit: str = "",
    env: str | None = None,
    flag: str | None = None,
    default_text: str | None = None,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    why: str = "",
) -> Any:
    """A dataclass field that is a setting: its default and how it is presented.

    Parameters
    ----------
    default : Any
        The one default of the setting (immutable: a number, string, path, tuple).
    help : str
        One line for ``--help`` and the documentation table: what it bounds or means.
    unit : str
        Shown after the default (``"ms"``, ``"bytes"``, ``"windows"``).
    env, flag : str, optional
        An older environment name (``TYMPAN_JSON_MAX_DEPTH``) or flag name
        (``trusted-key``, without dashes) that users' scripts already use; by default
        both are derived from the field name.
    default_text : str, optional
        How the default reads when the value alone says little (``None`` is "the
        latest scene model").
    minimum, above, maximum : float, optional
        The allowed range (``above`` is exclusive), checked by :func:`check_bounds`;
        ``None`` as a value is always allowed.
    why : str
        Why the range is what it is, added to the error of a value outside it.

    Returns
    -------
    Any
        A ``dataclasses.field`` carrying the declaration in its metadata.
    """
    declared = Declaration(help, unit, env, flag, default_text, minimum, above, maximum, why)
    return dataclasses.field(default=default, metadata={_KEY: declared})


def external(default_factory: Any) -> Any:
    """A field configured by its own ``from_environ`` (the Kafka client): not walked, its
    value passed to :func:`from_sources` by the caller."""
    declared = Declaration(help="", external=True)
    return dataclasses.field(default_factory=default_factory, metadata={_KEY: declared})


def check_bounds(settings: Any) -> None:
    """Refuse a field of ``settings`` outside its declared range (nested groups check
    themselves when they are built).

    Raises
    ------
    ConfigError
        ``max_batch=0 must be >= 1``: the field, its value and the bound.
    """
    for field in dataclasses.fields(settings):
        declared = field.metadata.get(_KEY)
        value = getattr(settings, field.name)
        if isinstance(declared, Declaration) and value is not None:
            _check_range(field.name, value, declared)


def _check_range(name: str, value: Any, declared: Declaration) -> None:
    low, above, high = declared.minimum, declared.above, declared.maximum
    if (
        (low is not None and value < low)
        or (above is not None and value <= above)
        or (high is not None and value > high)
    ):
        why = f" ({declared.why})" if declared.why else ""
        raise ConfigError(f"{name}={value} must be {declared.bounds_text()}{why}")


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One leaf setting, everything derived from its declaration.

    Attributes
    ----------
    name: the field name, unique in the settings tree; the flag's ``dest``.
    path: attribute names from the root class down to the field
        (``("batching", "max_batch")``).
    kind: the scalar type a value is parsed to (``int``, ``float``, ``str``, ``Path``).
    many: a tuple of ``kind`` (comma-separated variable, repeated flag).
    choices: the allowed values of a ``Literal`` field.
    default, help, unit: from the declaration.
    env, flag: the environment name and the flag (with its dashes).
    default_text: how the default reads in help and docs.
    minimum, above, maximum: the declared range (``above`` exclusive).
    bounds: the allowed range or choices as text (``">= 1"``).
    """

    name: str
    path: tuple[str, ...]
    kind: type
    many: bool
    choices: tuple[str, ...] | None
    default: Any
    help: str
    unit: str
    env: str
    flag: str
    default_text: str
    minimum: float | None
    above: float | None
    maximum: float | None
    bounds: str

    def parse(self, raw: str) -> Any:
        """The value of environment text ``raw``; a ConfigError names the variable."""
        items = [item.strip() for item in raw.split(",")] if self.many else [raw]
        try:
            values = tuple(self._scalar(item) for item in items if item)
        except ValueError as exc:
            raise ConfigError(f"{self.env}={raw!r} is not a valid {self.name}: {exc}") from exc
        return values if self.many else values[0]

    def coerce(self, value: Any) -> Any:
        """A flag's value (already typed by argparse, or given by a caller) as the field's."""
        try:
            if not self.many:
                return self._scalar(value)
            items = value.split(",") if isinstance(value, str) else value
            return tuple(self._scalar(str(i).strip()) for i in items if str(i).strip())
        except ValueError as exc:
            raise ConfigError(f"{self.flag} {value!r} is not a valid {self.name}: {exc}") from exc

    def argv(self, value: Any) -> list[str]:
        """The command-line words that give this setting ``value`` (a child's flags)."""
        values = value if self.many else (value,)
        return [word for item in values for word in (self.flag, str(item))]

    def help_text(self) -> str:
        """``--help`` line: the meaning, then the variable and the default."""
        return f"{self.help} ({self.env}; default: {self.default_text})"

    def _scalar(self, raw: Any) -> Any:
        value = self.kind(raw)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return value


def specs(cls: type) -> tuple[SettingSpec, ...]:
    """Every leaf setting of ``cls`` and of its groups, in declaration order.

    Raises
    ------
    TypeError
        A field that is neither a declared setting nor a group of them, a type that
        cannot be parsed, or a name used twice: mistakes in the code, found at import.
    """
    return _specs(cls)


@cache
def _specs(cls: type) -> tuple[SettingSpec, ...]:
    found = tuple(_walk(cls, ()))
    names = [spec.name for spec in found]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise TypeError(f"{cls.__name__}: settings {twice} are declared more than once")
    return found


def _walk(cls: type, path: tuple[str, ...]) -> Iterator[SettingSpec]:
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        declared = field.metadata.get(_KEY)
        hint = hints[field.name]
        if isinstance(declared, Declaration) and declared.external:
            continue
        if isinstance(declared, Declaration):
            yield _spec(field, hint, declared, (*path, field.name))
        elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _walk(hint, (*path, field.name))
        else:
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with setting()")


def _spec(
    field: dataclasses.Field[Any], hint: Any, declared: Declaration, path: tuple[str, ...]
) -> SettingSpec:
    kind, many, choices = _parsed_type(hint, field.name)
    return SettingSpec(
        name=field.name,
        path=path,
        kind=kind,
        many=many,
        choices=choices,
        default=field.default,
        help=declared.help,
        unit=declared.unit,
        env=declared.env or ENV_PREFIX + field.name.upper(),
        flag="--" + (declared.flag or field.name).replace("_", "-"),
        default_text=declared.default_text or _shown(field.default, declared.unit),
        minimum=declared.minimum,
        above=declared.above,
        maximum=declared.maximum,
        bounds=", ".join(choices) if choices else declared.bounds_text(),
    )


def _parsed_type(hint: Any, name: str) -> tuple[type, bool, tuple[str, ...] | None]:
    """``(kind, many, choices)`` of a field annotation."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return _parsed_type(rest[0], name)
    if origin is Literal and all(isinstance(arg, str) for arg in args):
        return str, False, tuple(args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
        return args[0], True, None
    if hint in _SCALARS:
        return hint, False, None
    raise TypeError(f"setting {name}: cannot parse values of type {hint!r}")


def _shown(default: Any, unit: str) -> str:
    if default is None or default == ():
        return "none"
    if unit == "bytes":
        for size, name in ((1024 * 1024, "MiB"), (1024, "KiB")):
            if default >= size and default % size == 0:
                return f"{default // size} {name}"
    text = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{text} {unit}" if unit else text


def from_sources(
    cls: type, environ: Mapping[str, str], flags: Mapping[str, Any], **fixed: Any
) -> Any:
    """An instance of ``cls`` from flags, then ``environ``, then the defaults.

    Parameters
    ----------
    cls : type
        A dataclass whose fields are settings or groups of them.
    environ : Mapping[str, str]
        The environment (``TYMPAN_*``); an empty variable counts as unset.
    flags : Mapping[str, Any]
        Flag values by setting name; ``None`` means "flag not given".
    **fixed : Any
        Values of ``cls``'s external fields (built by their own ``from_environ``).

    Raises
    ------
    ConfigError
        A value that does not parse, or that the classes' validation refuses; the
        message names the variables and flags the values came from.
    TypeError
        A flag name that is no setting of ``cls`` (a mistake in the calling code).
    """
    given = {name: value for name, value in flags.items() if value is not None}
    unknown = sorted(set(flags) - {spec.name for spec in specs(cls)})
    if unknown:
        raise TypeError(f"{cls.__name__} has no settings {unknown}")
    sources: dict[str, str] = {}
    return _build(cls, environ, given, sources, fixed)


def _build(
    cls: type,
    environ: Mapping[str, str],
    flags: Mapping[str, Any],
    sources: dict[str, str],
    fixed: Mapping[str, Any],
) -> Any:
    leaves = {spec.path[-1]: spec for spec in specs(cls) if len(spec.path) == 1}
    groups = _groups(cls)
    values: dict[str, Any] = dict(fixed)
    for field in dataclasses.fields(cls):
        spec = leaves.get(field.name)
        if spec is not None:
            values[field.name] = _value(spec, environ, flags, sources)
        elif field.name in groups:
            values[field.name] = _build(groups[field.name], environ, flags, sources, {})
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(_with_sources(str(exc), sources)) from exc


def _groups(cls: type) -> dict[str, type]:
    hints = get_type_hints(cls)
    return {
        field.name: hints[field.name]
        for field in dataclasses.fields(cls)
        if _KEY not in field.metadata and dataclasses.is_dataclass(hints[field.name])
    }


def _value(
    spec: SettingSpec, environ: Mapping[str, str], flags: Mapping[str, Any], sources: dict[str, str]
) -> Any:
    if spec.name in flags:
        value = spec.coerce(flags[spec.name])
        sources[spec.name] = " ".join(spec.argv(value))
        return value
    raw = environ.get(spec.env)
    if not raw:
        return spec.default
    sources[spec.name] = f"{spec.env}={raw!r}"
    return spec.parse(raw)


def _with_sources(message: str, sources: Mapping[str, str]) -> str:
    """``message`` followed by where the settings it names were given."""
    named = [text for name, text in sources.items() if re.search(rf"\b{name}\b", message)]
    return f"{message} (from {', '.join(named)})" if named else message


def replaced(settings: Any, **changes: Any) -> Any:
    """A copy of ``settings`` with leaf settings replaced by name, at any depth.

    ``replaced(worker, max_batch=8)`` replaces ``worker.batching.max_batch``; a name
    of one of the root's own fields (a whole group, the Kafka config) is replaced as is.
    """
    own = {field.name for field in dataclasses.fields(settings)}
    by_name = {spec.name: spec.path for spec in specs(type(settings))}
    unknown = sorted(set(changes) - own - set(by_name))
    if unknown:
        raise TypeError(f"{type(settings).__name__} has no settings {unknown}")
    result = dataclasses.replace(settings, **{k: v for k, v in changes.items() if k in own})
    for name, value in changes.items():
        if name not in own:
            result = _replace_at(result, by_name[name], value)
    return result


def _replace_at(obj: Any, path: tuple[str, ...], value: Any) -> Any:
    head, *rest = path
    inner = _replace_at(getattr(obj, head), tuple(rest), value) if rest else value
    return dataclasses.replace(obj, **{head: inner})


def spec_of(cls: type, name: str) -> SettingSpec:
    """Setting ``name`` of ``cls`` (for a command that reads one setting alone)."""
    return {spec.name: spec for spec in specs(cls)}[name]


def markdown_table(cls: type) -> str:
    """The documentation table of every setting of ``cls``: flag, variable, default,
    allowed range, meaning."""
    rows = [
        "| flag | environment | default | allowed | meaning |",
        "|---|---|---|---|---|",
        *(
            f"| `{s.flag}` | `{s.env}` | {s.default_text} | {s.bounds} | {s.help} |"
            for s in specs(cls)
        ),
    ]
    return "\n".join(rows) + "\n"
