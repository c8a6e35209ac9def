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


def _commands() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def test_flags_show_no_bool_type_in_help():
    """On/off flags take no value: no help screen shows them a '<bool>' type."""
    runner = CliRunner(env={"COLUMNS": "120"})
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "--version" in res.output and "<bool>" not in res.output
    assert len(_commands()) >= 10
    for name in _commands():
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "<bool>" not in res.output, name


def test_bad_head_parameter_is_a_clear_error_without_traceback(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoscout",
            "train",
            str(tmp_path),
            "-o",
            str(tmp_path / "m"),
            "--head",
            "knn",
            "-p",
            "k=bad",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "head 'knn' parameter 'k' expects int" in res.stderr and "--param k=" in res.stderr


def test_locate_failure_note_matches_the_output_format(tmp_path):
    """The note about unreadable inputs points at what the chosen format really shows."""
    missing = str(tmp_path / "missing.jpg")
    runner = CliRunner(env={"COLUMNS": "120"})
    res = runner.invoke(app, ["locate", "--example", missing])
    assert res.exit_code == 0, res.output
    assert "1 of 2 inputs could not be read (each is listed above with its reason)" in res.stderr
    assert "missing.jpg" in res.stdout and "error column" not in res.output
    res = runner.invoke(app, ["locate", "--example", missing, "-f", "csv"])
    assert res.exit_code == 0 and "(see the error column)" in res.stderr
    assert "error" in res.stdout.splitlines()[0].split(",")
    res = runner.invoke(app, ["locate", "--example", missing, "-f", "jsonl"])
    assert res.exit_code == 0 and "(see each one's error field)" in res.stderr


def test_protonet_refinement_prints_no_library_warnings():
    """scikit-learn's OPTICS warns on spread-out cells ('all reachability values are inf'): none reaches the user."""
    res = subprocess.run(
        [sys.executable, "-m", "geoscout", "locate", "--example", "--refine", "protonet", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "reachability" not in res.stderr
    assert res.stdout.lstrip().startswith("[")


def test_stdout_is_what_dash_o_writes_for_every_format_and_failures_are_kept(tmp_path):
    """One writer per format: `-f FMT` on stdout prints exactly the file `-o` writes, failed photos included."""
    import csv
    import io
    import json

    from geoscout.predictions import CSV_COLUMNS

    missing = str(tmp_path / "missing.jpg")
    runner = CliRunner()
    for fmt in ("csv", "json", "jsonl", "geojson"):
        printed = runner.invoke(app, ["locate", "--example", missing, "-f", fmt, "--cues", "none"])
        assert printed.exit_code == 0, printed.output
        out = tmp_path / f"p.{fmt}"
        written = runner.invoke(app, ["locate", "--example", missing, "-f", fmt, "-o", str(out), "--cues", "none"])
        assert written.exit_code == 0, written.output
        assert printed.stdout == out.read_text(encoding="utf-8"), fmt
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(printed.stdout)))
            assert tuple(rows[0]) == CSV_COLUMNS
            assert any(r["image_id"].endswith("missing.jpg") and r["error"] for r in rows)
        if fmt == "geojson":
            feats = json.loads(printed.stdout)["features"]
            failed = [f for f in feats if f["properties"]["error"]]
            assert len(failed) == 1 and failed[0]["geometry"] is None
            assert any(f["geometry"] is not None for f in feats)
