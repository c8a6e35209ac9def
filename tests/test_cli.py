"""The ``geoscout`` command itself: version, help, ``python -m geoscout``."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import geoscout
from geoscout.cli import app


def test_version_prints_and_exits_0():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"geoscout {geoscout.__version__}"


def test_python_dash_m_runs_the_cli():
    res = subprocess.run(
        [sys.executable, "-m", "geoscout", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"geoscout {geoscout.__version__}"
