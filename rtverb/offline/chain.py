"""CHAIN text -> `pedalboard.Pedalboard`, parsed safely (no ``eval``).

A chain is plugins separated by ``|``; each plugin is one of

* a pedalboard built-in called with keyword literals::

      HighpassFilter(cutoff_frequency_hz=80) | Compressor(threshold_db=-18, ratio=3)
      LadderFilter(mode=HPF12, cutoff_hz=300) | Invert

* a VST3 / Audio Unit path followed by ``name=value`` parameters (spaces or commas between
  them; quote a path or value that contains ``|``)::

      /usr/lib/vst3/Surge.vst3 mix=0.5 drive_db=3 | Gain(gain_db=-3)

Names and parameters are checked against pedalboard's plugin classes (their constructor
signatures) and, for external plugins, against the loaded plugin's ``parameters``; every
error lists the valid names. Values are literals only: numbers, ``True``/``False``, strings,
and for enum parameters the member name (``mode=HPF12``).
"""

from __future__ import annotations

import ast
import math
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pedalboard

from rtverb.room.hints import did_you_mean

#: Built-ins left out of chains: containers, abstract bases and plugins with no parameters to
#: set from text (IIRFilter is an abstract base; Convolution is `rtverb.to_pedalboard`'s job
#: but a file path works too, so it stays in).
_EXCLUDED = {
    "Chain",
    "Mix",
    "Pedalboard",
    "Plugin",
    "PluginContainer",
    "ExternalPlugin",
    "VST3Plugin",
    "AudioUnitPlugin",
    "IIRFilter",
}
#: Built-ins that do not work block by block (``reset=False``), measured with pedalboard 0.9.26.
NOT_STREAMABLE = {
    "PitchShift": "PitchShift outputs silence when streamed block by block (pedalboard 0.9.26); "
    "pitch-shift the file first, e.g. with pedalboard in Python",
}
#: Ranges rtverb holds built-in parameters to, by name, where pedalboard checks none and an
#: extreme value hurts (measured with pedalboard 0.9.26): Resample(target_sample_rate=1e12)
#: runs out of memory (std::bad_alloc); Phaser(rate_hz=1e12) never returns. (low, high, unit)
SANE_RANGES: dict[str, tuple[float, float, str]] = {
    "target_sample_rate": (1000.0, 384000.0, "Hz"),
    "sample_rate": (1000.0, 384000.0, "Hz"),
    "rate_hz": (0.0, 100.0, "Hz"),
}
#: File extensions loaded with `pedalboard.load_plugin`.
EXTERNAL_SUFFIXES = (".vst3", ".component")
_EXTERNAL_RE = re.compile(
    r"""^\s*(?P<path>(?:"[^"]+"|'[^']+'|.+?\.(?:vst3|component)))(?=\s|\(|,|$)""", re.I
)


class ChainError(ValueError):
    """A CHAIN text is invalid; the message names the problem and lists the valid names."""


@dataclass(frozen=True)
class ParamInfo:
    """One constructor parameter of a pedalboard built-in."""

    name: str
    kind: str  # "float", "bool", "str", "path" or "enum"
    default: str
    enum: tuple[str, ...] = ()
    enum_path: str = ""  # e.g. "LadderFilter.Mode"

    def describe(self) -> str:
        choices = f" (one of {', '.join(self.enum)})" if self.enum else ""
        return f"{self.name}={self.default}{choices}"


_SIG_PARAM = re.compile(r"(\w+): ([\w.\[\], ]+?)(?: = ([^,]+?|<[^>]*>))?(?:, (?=\w+:)|$)")


def _parse_signature(cls: type) -> tuple[ParamInfo, ...] | None:
    """Read a pybind11 class's keyword parameters from its ``__init__`` docstring."""
    doc = (getattr(cls, "__init__").__doc__ or "").strip()  # noqa: B009 (mypy: unsound access)
    match = re.match(
        r"__init__\(self: [\w.]+(?:, (.*))?\) -> None", doc.splitlines()[0] if doc else ""
    )
    if not match:
        return None
    params = []
    for name, annotation, default in _SIG_PARAM.findall(match.group(1) or ""):
        enum: tuple[str, ...] = ()
        if annotation in ("float", "Optional[float]"):
            kind = "float"
        elif annotation == "bool":
            kind = "bool"
        elif "str" in annotation:
            kind = "path" if "filename" in name else "str"
        else:
            enum_path = annotation.removeprefix("pedalboard_native.")
            enum_cls = _resolve_enum(enum_path)
            if enum_cls is None:
                return None
            kind, enum = "enum", tuple(enum_cls.__members__)
            default = default.strip("<>").split(":")[0].split(".")[-1]
        params.append(
            ParamInfo(name, kind, default.strip() or "required", enum, enum_path if enum else "")
        )
    return tuple(params)


def _resolve_enum(path: str) -> Any:
    """``"LadderFilter.Mode"`` -> ``pedalboard.LadderFilter.Mode`` (None if not an enum)."""
    obj: Any = pedalboard
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj if obj is not None and hasattr(obj, "__members__") else None


@cache
def builtin_plugins() -> dict[str, tuple[ParamInfo, ...]]:
    """Pedalboard's built-in plugins usable in a chain, with their keyword parameters."""
    out = {}
    for name in sorted(dir(pedalboard)):
        cls = getattr(pedalboard, name)
        if (
            name.startswith("_")
            or name in _EXCLUDED
            or name in NOT_STREAMABLE
            or not isinstance(cls, type)
            or not issubclass(cls, pedalboard.Plugin)
        ):
            continue
        params = _parse_signature(cls)
        if params is not None:
            out[name] = params
    return out


def describe_plugins() -> str:
    """One line per built-in: ``Name(param=default, ...)``, for help texts and errors."""
    return "\n".join(
        f"  {name}({', '.join(p.describe() for p in params)})"
        for name, params in builtin_plugins().items()
    )


def _split_chain(text: str) -> list[str]:
    """Split on ``|`` outside quotes and brackets."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote or depth:
        raise ChainError(f"unbalanced quotes or brackets in chain {text!r}")
    parts.append(text[start:])
    return parts


def _literal(node: ast.expr, where: str) -> Any:
    """A keyword value: a literal, or a bare/dotted name (enum member or True/False)."""
    if isinstance(node, ast.Name | ast.Attribute):
        return ast.unparse(node).split(".")[-1]  # enum member name; checked later
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ChainError(
            f"{where}: {ast.unparse(node)!r} is not a literal; use numbers, True/False, "
            "'strings' or an enum member name"
        ) from None


def _coerce(plugin: str, info: ParamInfo, value: Any) -> Any:
    where = f"{plugin}({info.name}=...)"
    if info.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ChainError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ChainError(f"{where}: {str(value)[:12]}... is too large for a number") from None
        if not math.isfinite(number):
            raise ChainError(f"{where}: expected a finite number, got {value!r}")
        if info.name.endswith("_hz") and number <= 0:
            raise ChainError(f"{where}: a frequency must be > 0 Hz, got {value!r}")
        if info.name in SANE_RANGES:
            low, high, unit = SANE_RANGES[info.name]
            if not low <= number <= high:
                raise ChainError(
                    f"{where}: {number:g} {unit} is outside {low:g}..{high:g} {unit}; "
                    "give a value in that range"
                )
        return number
    if info.kind == "bool":
        if not isinstance(value, bool):
            raise ChainError(f"{where}: expected True or False, got {value!r}")
        return value
    if info.kind == "enum":
        if not isinstance(value, str) or value not in info.enum:
            raise ChainError(
                f"{where}: expected one of {', '.join(info.enum)}, got {value!r}."
                f"{did_you_mean(str(value), info.enum)}"
            )
        return _resolve_enum(info.enum_path).__members__[value]
    if not isinstance(value, str):
        raise ChainError(f"{where}: expected a 'string', got {value!r}")
    if info.kind == "path" and not Path(value).is_file():
        raise ChainError(f"{where}: no such file {value!r}")
    return value


def _builtin(segment: str) -> pedalboard.Plugin:
    plugins = builtin_plugins()
    try:
        tree = ast.parse(segment.strip(), mode="eval").body
    except SyntaxError as e:
        raise ChainError(
            f"cannot parse {segment.strip()!r}: {e.msg}; write Name(param=value, ...), e.g. "
            "HighpassFilter(cutoff_frequency_hz=80)"
        ) from None
    if isinstance(tree, ast.Name):
        tree = ast.Call(func=tree, args=[], keywords=[])
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        raise ChainError(
            f"{segment.strip()!r}: expected Name(param=value, ...) or a .vst3/.component path"
        )
    name = tree.func.id
    if name in NOT_STREAMABLE:
        raise ChainError(f"{name} cannot be used in a chain: {NOT_STREAMABLE[name]}")
    if name not in plugins:
        raise ChainError(
            f"unknown plugin {name!r}.{did_you_mean(name, plugins)} Built-in plugins:\n"
            f"{describe_plugins()}\nor give a .vst3/.component path"
        )
    if tree.args:
        raise ChainError(
            f"{name}: give parameters by name, e.g. {name}({plugins[name][0].name}=...)"
            if plugins[name]
            else f"{name} takes no parameters"
        )
    by_name = {p.name: p for p in plugins[name]}
    kwargs = {}
    for kw in tree.keywords:
        if kw.arg is None:
            raise ChainError(f"{name}: give parameters as name=value, not **mapping")
        if kw.arg not in by_name:
            valid = ", ".join(p.describe() for p in plugins[name]) or "none"
            raise ChainError(
                f"{name}: unknown parameter {kw.arg!r}.{did_you_mean(kw.arg, by_name)} "
                f"Valid parameters (with defaults): {valid}"
            )
        kwargs[kw.arg] = _coerce(name, by_name[kw.arg], _literal(kw.value, f"{name}.{kw.arg}"))
    missing = [p.name for p in plugins[name] if p.default == "required" and p.name not in kwargs]
    if missing:
        raise ChainError(f"{name}: missing {', '.join(missing)}")
    try:
        return getattr(pedalboard, name)(**kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ChainError(f"{name}: {e}") from None


def _external_params(text: str, where: str) -> dict[str, Any]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("(") and text.endswith(")"):
        try:
            call = ast.parse(f"f{text}", mode="eval").body
        except SyntaxError as e:
            raise ChainError(f"{where}: cannot parse parameters {text!r}: {e.msg}") from None
        assert isinstance(call, ast.Call)
        if call.args:
            raise ChainError(f"{where}: give parameters as name=value")
        return {str(kw.arg): _literal(kw.value, f"{where}.{kw.arg}") for kw in call.keywords}
    out: dict[str, Any] = {}
    for token in shlex.split(text.replace(",", " ")):
        name, sep, raw = token.partition("=")
        if not sep or not name.isidentifier():
            raise ChainError(f"{where}: expected name=value, got {token!r}")
        try:
            out[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[name] = raw  # a text value such as an enum label: the plugin validates it
    return out


def _external(path_text: str, rest: str) -> pedalboard.Plugin:
    path = Path(path_text.strip("\"'")).expanduser()
    where = str(path)
    params = _external_params(rest, where)
    if not path.exists():
        raise ChainError(f"{where}: no such plugin file or bundle")
    try:
        plugin = pedalboard.load_plugin(str(path))
    except (ImportError, ValueError, RuntimeError, OSError) as e:
        raise ChainError(f"{where}: cannot load the plugin ({e})") from None
    valid = dict(getattr(plugin, "parameters", {}))
    for name, value in params.items():
        if name not in valid:
            raise ChainError(
                f"{where}: unknown parameter {name!r}.{did_you_mean(name, valid)} Valid "
                f"parameters: {', '.join(sorted(valid)) or 'none'}"
            )
        try:
            setattr(plugin, name, value)
        except (ValueError, TypeError, OverflowError) as e:
            raise ChainError(f"{where}: {name}={value!r}: {e}") from None
    return plugin


def parse_plugin(segment: str) -> pedalboard.Plugin:
    """Parse one plugin of a chain (built-in call or external path with parameters)."""
    match = _EXTERNAL_RE.match(segment)
    if match and match.group("path").strip("\"'").lower().endswith(EXTERNAL_SUFFIXES):
        return _external(match.group("path"), segment[match.end() :])
    return _builtin(segment)


def parse_chain(text: str) -> pedalboard.Pedalboard:
    """Parse CHAIN text into a `pedalboard.Pedalboard` (see the module docstring).

    Raises:
        ChainError: empty text, syntax errors, unknown plugins or parameters, bad values;
            the message lists the valid names.
    """
    if not isinstance(text, str) or not text.strip():
        raise ChainError(
            "empty chain; give plugins separated by '|', e.g. "
            '"HighpassFilter(cutoff_frequency_hz=80) | Compressor(threshold_db=-18, ratio=3)"'
        )
    plugins = []
    for segment in _split_chain(text):
        if not segment.strip():
            raise ChainError(f"empty plugin between '|' in chain {text!r}")
        plugins.append(parse_plugin(segment))
    return pedalboard.Pedalboard(plugins)
