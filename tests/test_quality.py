"""Lint and type checks run with the tests: ruff on everything, mypy on the runtime package."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check():
    pytest.importorskip("ruff")
    result = _run("ruff", "check", "rtverb", "train", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_runtime_package():
    pytest.importorskip("mypy")
    result = _run("mypy")  # files and options in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
