"""Imports run one way: from commands down to the room, never back up (read from the source).

rtverb is one folder per stage of the signal path. A module may import its own stage and the
stages below it; a stage never imports one above it, nor one beside it (same rank). The order,
lowest first, and why each stage sits where it does:

-1. ``files``: output files written atomically, write failures told in one line (every stage
   that writes: room files and presets, analysis' pictures, offline's audio files, bench's
   plots). Needs nothing.
0. ``room``: the parameter table, `Room`, presets, microphone pairs. Needs only ``files``.
1. ``synth``: room -> impulse response (early part, envelope model, late part).
2. ``dsp``: partitioned convolution and the engine; ``analysis``: measuring IRs (T30, C50 ...),
   reading IR files and plotting them. Both use rooms only; neither needs the other.
3. ``osc``: the controller that validates and stores room changes; ``offline``: audio files
   (`offline.audio_io`), pedalboard chains, rendering files through the engine.
4. ``live``: the real-time app; it builds on dsp, synth, osc and offline's files and chains.
   ``capture``: measuring an IR through a chain or a sound card (analysis, offline's chains).
5. ``rtverb`` itself (``rtverb/__init__``): the names users type, which reach up to capture.
6. ``bench``: benchmarks of every stage below.
7. ``cli``: the commands (each parses arguments and prints), benchmarks' included.

``train/`` (data generation, training, export) is never imported by ``rtverb/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rtverb"
#: Each stage's rank (a folder, or one module such as ``files``): an import must go to a lower
#: rank, or stay inside its own stage.
RANKS = {
    "files": -1,
    "room": 0,
    "synth": 1,
    "dsp": 2,
    "analysis": 2,
    "osc": 3,
    "offline": 3,
    "live": 4,
    "capture": 4,
    "matching": 4,  # rooms fitted with synth and analysis; beside capture, never importing it
    "rtverb": 5,  # the package's own __init__: the public names
    "bench": 6,
    "cli": 7,
}
#: Modules outside the stages: the package's entry points.
ENTRY_POINTS = {"__init__", "__main__"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _stage_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in ``path``, those inside functions included;
    ``from rtverb import x`` names ``rtverb.x`` when ``x`` is a stage, else ``rtverb``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports (rtverb.x.y)"
            module = node.module or ""
            if module == "rtverb":
                found += [
                    (node.lineno, f"rtverb.{a.name}" if a.name in RANKS else "rtverb")
                    for a in node.names
                ]
            else:
                found.append((node.lineno, module))
    return found


def _target_stage(module: str) -> str | None:
    """The stage an import reaches (``rtverb`` for the package's own names), None outside."""
    parts = module.split(".")
    if parts[0] != "rtverb":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else "rtverb"


def test_every_folder_is_a_ranked_stage() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - ENTRY_POINTS  # a one-module stage
    assert folders | modules == set(RANKS) - {"rtverb"}, (
        "give a new stage its rank in RANKS (and why)"
    )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_stage_imports_a_stage_above_or_beside_it(path: Path) -> None:
    stage = _stage_of(path)
    if stage in ENTRY_POINTS:
        stage = "rtverb"
    wrong = []
    for line, module in imports(path):
        target = _target_stage(module)
        if target is None or target == stage:
            continue
        if stage == "rtverb" and path.stem == "__main__":
            continue  # `python -m rtverb` runs the command line
        if RANKS[target] >= RANKS[stage]:
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({stage}) imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_rtverb_never_imports_train(path: Path) -> None:
    assert not [m for _, m in imports(path) if m.split(".")[0] == "train"]


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The parser finds imports inside functions and package-relative names."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from rtverb.cli import main\nfrom rtverb import synth, Room\n")
    found = imports(module)
    assert found == [(3, "rtverb.synth"), (3, "rtverb"), (2, "rtverb.cli")]
    assert [_target_stage(m) for _, m in found] == ["synth", "rtverb", "cli"]
