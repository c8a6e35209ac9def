"""Long commands show a progress bar on stderr in a terminal, and only there; stdout stays machine-readable.

Each command runs as a real subprocess whose stderr is a pseudo-terminal (what a user sees) or a pipe
(what a log or a script sees).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, *, tty: bool) -> tuple[int, str, str]:
    """Run ``python -m geoscout ARGS``; stderr is a 100-column pseudo-terminal when ``tty``, else a pipe."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "TERM": "xterm"}
    env.pop("COLUMNS", None)
    cmd = [sys.executable, "-m", "geoscout", *args]
    if not tty:
        res = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        return res.returncode, res.stdout, res.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    out, _ = proc.communicate(timeout=600)
    reader.join(timeout=60)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    """8 real Street View photos with their truth (manifest.csv) in a dataset folder."""
    import shutil

    import pandas as pd

    src = shared_data("streetview-world")
    m = pd.read_csv(src / "manifest.csv").iloc[::20].head(8)
    root = tmp_path_factory.mktemp("progress") / "ds"
    for p in m["path"]:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / p, root / p)
    m.to_csv(root / "manifest.csv", index=False)
    return root


def test_locate_shows_progress_in_a_terminal_only(photos):
    cwd = photos.parent
    rc, out, err = _run(["locate", "ds/images", "-f", "jsonl"], cwd, tty=True)
    assert rc == 0, err
    assert "locate geoscout-lite" in err and "8/8" in err and "photo" in err  # tqdm's bar, on stderr
    preds = [json.loads(line) for line in out.splitlines()]  # stdout: nothing but the 8 JSON lines
    assert len(preds) == 8 and all(p["candidates"] for p in preds)
    rc, out_pipe, err_pipe = _run(["locate", "ds/images", "-f", "jsonl"], cwd, tty=False)
    assert rc == 0 and "8/8" not in err_pipe and "locate geoscout-lite" not in err_pipe
    assert out_pipe == out
    (cwd / "preds.jsonl").write_text(out)


def test_evaluate_and_label_show_progress_in_a_terminal(photos):
    cwd = photos.parent
    if not (cwd / "preds.jsonl").is_file():
        rc, out, err = _run(["locate", "ds/images", "-f", "jsonl", "-q"], cwd, tty=False)
        assert rc == 0, err
        (cwd / "preds.jsonl").write_text(out)
    rc, out, err = _run(["evaluate", "-p", "preds.jsonl", "-t", "ds", "-o", "report", "-f", "json"], cwd, tty=True)
    assert rc == 0, err
    assert "check images" in err and "write report" in err
    # the report bar runs to its end, whatever the number of files a report has
    assert re.search(r"write report.*\b(\d+)/\1\b", err), err
    assert json.loads(out)["metrics"]["n_answered"] == 8  # stdout is the JSON report alone
    rc, out, err = _run(["label", "ds", "-o", "labelled", "--no-aux", "--cells", "country"], cwd, tty=True)
    assert rc == 0, err
    assert "label 8 points" in err and "3/3" in err
    rc, out, err = _run(["label", "ds", "-o", "labelled2", "--no-aux"], cwd, tty=False)
    assert rc == 0 and "label 8 points" not in err and "check images" not in err
    rc, out, err = _run(["label", "ds", "-o", "labelled3", "--no-aux", "--quiet"], cwd, tty=True)
    assert rc == 0 and "label 8 points" not in err and "check images" not in err and "labelled 8" in out
