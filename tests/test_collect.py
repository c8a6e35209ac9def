"""Collect jobs against a fake Street View / Mapillary server on 127.0.0.1 (real HTTP, real JPEGs)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from fakeproviders import GOOGLE_KEY, MAPILLARY_TOKEN, FakeProviders, load_source_jpegs
from geoscout.collect import (
    AccessDenied,
    CollectJob,
    RetryPolicy,
    SamplePoint,
    Sampler,
    collect,
    create_provider,
    create_sampler,
)
from geoscout.errors import InvalidInput

FAST = RetryPolicy(max_retries=5, base=0.05, max_delay=2.0, jitter=0.25, timeout=0.5)
BOX = "15.0,45.0,16.0,46.0"  # W,S,E,N inland Croatia / Slovenia


@pytest.fixture(scope="module")
def server():
    with FakeProviders(load_source_jpegs(SHARED if (SHARED / "data").is_dir() else None)) as fs:
        yield fs


@pytest.fixture()
def fs(server):
    server.reset()
    return server


@pytest.fixture(scope="module")
def box_sampler():
    return create_sampler("bbox", bbox=BOX, land_only=False)


def _sv(fs, **kw):
    return create_provider("streetview", key=kw.pop("key", GOOGLE_KEY), base_url=fs.streetview_url, **kw)


def _check_dataset(root: Path, n_locations: int, views: int):
    from geoscout.data import Dataset
    from geoscout.data.schema import validate_frame

    ds = Dataset.open(root)
    df = ds.frame
    validate_frame(df)
    assert len(df) == n_locations * views
    assert df["location_id"].nunique() == n_locations
    assert not df["image_id"].duplicated().any()
    for i, row in df.iterrows():
        data = ds.image_path(i).read_bytes()
        assert hashlib.sha256(data).hexdigest()[:16] == row["image_id"] == row["sha256"][:16]
    files = sorted(p.relative_to(root).as_posix() for p in (root / "images").rglob("*") if p.is_file())
    assert files == sorted(df["path"])  # no orphan or temporary file
    return df


def test_streetview_collect_makes_a_valid_dataset(fs, tmp_path, box_sampler):
    fs.reset(user_pct=20)
    rep = collect(
        tmp_path / "ds", provider=_sv(fs), sampler=box_sampler, n=6, seed=3, rate=500, retry=FAST, progress=False
    )
    assert rep.complete and rep.locations == 6 and rep.images == 24
    df = _check_dataset(tmp_path / "ds", 6, 4)
    assert (df["source"] == "google-streetview").all() and (df["attribution"] == "© Google").all()
    assert df["license"].str.contains("Google").all()
    assert (df["pano_id"] == df["location_id"]).all()
    assert df["captured_at"].str.match(r"^\d{4}-\d{2}$").all()
    for _, g in df.groupby("location_id"):  # 4 headings 90° apart from a random start
        h = np.sort(g["heading"].to_numpy())
        assert np.allclose(np.diff(h), 90.0, atol=0.02)
    starts = df.groupby("location_id")["heading"].min()
    assert starts.nunique() > 1
    # the images fetched are exactly the panos the metadata named, with the requested parameters
    img_reqs = fs.requests("image")
    assert {r.query["pano"] for r in img_reqs} == set(df["pano_id"])
    assert all(
        r.query["size"] == "640x640" and r.query["fov"] == "90" and r.query["return_error_code"] == "true"
        for r in img_reqs
    )
    meta = fs.requests("metadata")
    assert all(r.query["source"] == "outdoor" and r.query["radius"] == "50" for r in meta)
    # misses and user uploads were asked but not kept; no image was requested for them
    assert rep.points.get("located") == 6
    assert sum(rep.points.values()) == len(meta)
    assert rep.billable_requests == 24 and rep.cost_usd == pytest.approx(24 * 7.0 / 1000)
    # metadata lat/lon (the pano's position) lies within the search radius of the sampled point
    from geoscout.geo import haversine_km

    assert (haversine_km(df["lat"], df["lon"], df["sample_lat"], df["sample_lon"]) * 1000 <= 50.0 + 1e-6).all()


def test_user_uploads_and_zero_results_are_skipped(fs, tmp_path, box_sampler):
    fs.reset(user_pct=60, hit_pct=70)
    fs.fault("metadata", "zero", count=3)
    rep = collect(
        tmp_path / "ds", provider=_sv(fs, headings=1), sampler=box_sampler, n=3, rate=500, retry=FAST, progress=False
    )
    assert rep.points.get("user_upload", 0) >= 1
    assert rep.points.get("no_imagery", 0) >= 3
    df = _check_dataset(tmp_path / "ds", 3, 1)
    assert not df["pano_id"].str.startswith("AF1Qip").any()  # the fake's user-upload ids
    rep2 = collect(
        tmp_path / "ds2",
        provider=_sv(fs, headings=1, allow_user_uploads=True),
        sampler=box_sampler,
        n=3,
        rate=500,
        retry=FAST,
        progress=False,
    )
    assert rep2.points.get("user_upload", 0) == 0


class _Repeat(Sampler):
    """Each point twice in a row (a pano found twice must be kept once)."""

    name = "repeat"

    def _stream(self, rng):
        while True:
            lat, lon = rng.uniform(45.0, 46.0), rng.uniform(15.0, 16.0)
            yield SamplePoint(lat, lon)
            yield SamplePoint(lat + 1e-6, lon)


def test_dedupe_by_pano_id(fs, tmp_path):
    fs.reset(hit_pct=100, user_pct=0)
    rep = collect(
        tmp_path / "ds", provider=_sv(fs, headings=2), sampler=_Repeat(), n=4, rate=500, retry=FAST, progress=False
    )
    assert rep.locations == 4 and rep.points.get("duplicate") == 3
    _check_dataset(tmp_path / "ds", 4, 2)
    assert len(fs.requests("image")) == 8


def test_backoff_grows_and_faults_are_survived(fs, tmp_path, box_sampler):
    fs.reset(hit_pct=100, user_pct=0)
    fs.fault("image", "429", count=3)
    policy = RetryPolicy(max_retries=5, base=0.25, jitter=0.25, timeout=1.0)
    rep = collect(
        tmp_path / "ds", provider=_sv(fs, headings=1), sampler=box_sampler, n=1, rate=1000, retry=policy, progress=False
    )
    assert rep.complete
    t = [r.t for r in fs.requests("image")]
    assert [r.status for r in fs.requests("image")] == [429, 429, 429, 200]
    gaps = np.diff(t)  # waits of 0.25-0.31, 0.5-0.63, 1.0-1.25 s (+ request time)
    assert np.all(np.diff(gaps) > 0), gaps  # each wait longer than the one before
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5 and gaps[2] >= 1.0, gaps
    # 500s, OVER_QUERY_LIMIT, slow responses (timeouts), truncated and corrupt bodies: retried, not kept
    fs.reset(hit_pct=100, user_pct=0)
    fs.fault("metadata", "500", count=2)
    fs.fault("metadata", "over_query_limit", count=1)
    fs.fault("image", "slow", count=1, delay=1.5)
    fs.fault("image", "truncate", count=2)
    fs.fault("image", "corrupt", count=1)
    fs.fault("image", "503", count=1)
    rep = collect(tmp_path / "ds2", provider=_sv(fs), sampler=box_sampler, n=3, rate=1000, retry=FAST, progress=False)
    assert rep.complete and rep.images == 12 and not rep.problems
    df = _check_dataset(tmp_path / "ds2", 3, 4)
    from PIL import Image

    for p in df["path"]:
        with Image.open(tmp_path / "ds2" / p) as im:
            im.load()
    kinds = [r.fault for r in fs.requests() if r.fault]
    assert sorted(kinds) == sorted(["500", "500", "over_query_limit", "slow", "truncate", "truncate", "corrupt", "503"])


def test_failing_item_is_skipped_and_a_dead_provider_stops(fs, tmp_path, box_sampler):
    fs.reset(hit_pct=100, user_pct=0)
    fs.fault("image", "500", count=FAST.max_retries + 1)  # one image fails for good
    rep = collect(
        tmp_path / "ds", provider=_sv(fs, headings=2), sampler=box_sampler, n=2, rate=1000, retry=FAST, progress=False
    )
    assert rep.complete and rep.images == 3 and rep.image_status.get("failed") == 1
    assert "gave up after" in rep.problems[0]
    # a rerun retries the failed image
    rep = collect(
        tmp_path / "ds", provider=_sv(fs, headings=2), sampler=box_sampler, n=2, rate=1000, retry=FAST, progress=False
    )
    assert rep.images == 4 and not rep.image_status.get("failed")
    fs.reset()
    fs.fault("any", "500", count=10_000)
    job = CollectJob(
        tmp_path / "dead",
        _sv(fs),
        box_sampler,
        5,
        rate=1000,
        progress=False,
        retry=RetryPolicy(max_retries=1, base=0.001, timeout=0.5),
        max_consecutive_failures=4,
    )
    rep = job.run()
    assert rep.stopped == "failures" and "in a row failed" in rep.message
    assert len(fs.requests()) == 8


def test_daily_quota_is_respected_and_persisted(fs, tmp_path, box_sampler):
    fs.reset(hit_pct=100, user_pct=0)
    rep = collect(
        tmp_path / "ds",
        provider=_sv(fs),
        sampler=box_sampler,
        n=10,
        rate=1000,
        retry=FAST,
        daily_quota=12,
        progress=False,
    )
    assert rep.stopped == "quota" and "daily quota of 12" in rep.message
    assert len(fs.requests()) == 12 == rep.requests_today
    # 2 x (1 metadata + 4 images), then 1 metadata + 1 image of the third location
    assert rep.locations == 3 and rep.images == 9 and rep.image_status == {"done": 9, "pending": 3}
    fs.reset(hit_pct=100, user_pct=0)
    rep = collect(
        tmp_path / "ds",
        provider=_sv(fs),
        sampler=box_sampler,
        n=10,
        rate=1000,
        retry=FAST,
        daily_quota=12,
        progress=False,
    )
    assert rep.stopped == "quota" and len(fs.requests()) == 0  # persisted across runs
    rep = collect(
        tmp_path / "ds",
        provider=_sv(fs),
        sampler=box_sampler,
        n=10,
        rate=1000,
        retry=FAST,
        daily_quota=100,
        progress=False,
    )
    assert rep.complete and rep.locations == 10
    _check_dataset(tmp_path / "ds", 10, 4)


def test_country_quotas_fill_each_group(fs, tmp_path):
    fs.reset(hit_pct=60, user_pct=0)
    rep = collect(
        tmp_path / "ds",
        provider=_sv(fs, headings=1),
        sampler="countries",
        sampler_options={"countries": "HR:3,SI:2"},
        rate=1000,
        retry=FAST,
        progress=False,
    )
    assert rep.complete and rep.target == 5 and rep.locations == 5
    df = _check_dataset(tmp_path / "ds", 5, 1)
    assert df["sample_group"].value_counts().to_dict() == {"HR": 3, "SI": 2}
    from geoscout.places import country_of

    cc = country_of(df["sample_lat"].to_numpy(), df["sample_lon"].to_numpy())
    assert list(cc) == list(df["sample_group"])


def test_rate_limit_spaces_requests(fs, tmp_path, box_sampler):
    fs.reset(hit_pct=100, user_pct=0)
    collect(
        tmp_path / "ds", provider=_sv(fs, headings=4), sampler=box_sampler, n=2, rate=20, retry=FAST, progress=False
    )
    t = np.array([r.t for r in fs.requests()])
    assert len(t) == 10
    assert t[-1] - t[0] >= 9 * 0.05 * 0.97  # 20 requests/s, evenly spaced (arrival times jitter a little)
    assert np.diff(t).min() >= 0.05 * 0.6


def test_request_denied_stops_with_a_clear_message(fs, tmp_path, box_sampler):
    bad = "AIzaSyWRONG-key-zz9988776655"
    with pytest.raises(AccessDenied) as ei:
        collect(
            tmp_path / "ds", provider=_sv(fs, key=bad), sampler=box_sampler, n=3, rate=1000, retry=FAST, progress=False
        )
    msg = str(ei.value)
    assert "REQUEST_DENIED" in msg and "Street View Static API" in msg and bad not in msg
    assert len(fs.requests()) == 1  # no retry on a refused key
    fs.reset(hit_pct=100, user_pct=0)
    fs.fault("image", "deny", count=1)
    with pytest.raises(AccessDenied, match="HTTP 403"):
        collect(tmp_path / "ds2", provider=_sv(fs), sampler=box_sampler, n=3, rate=1000, retry=FAST, progress=False)


def test_resume_refuses_other_options(fs, tmp_path, box_sampler):
    fs.reset(hit_pct=100, user_pct=0)
    collect(
        tmp_path / "ds", provider=_sv(fs, headings=1), sampler=box_sampler, n=1, rate=1000, retry=FAST, progress=False
    )
    with pytest.raises(InvalidInput, match="other options"):
        collect(
            tmp_path / "ds",
            provider=_sv(fs, headings=2),
            sampler=box_sampler,
            n=1,
            rate=1000,
            retry=FAST,
            progress=False,
        )
    # extending n is fine and keeps the first location
    rep = collect(
        tmp_path / "ds", provider=_sv(fs, headings=1), sampler=box_sampler, n=3, rate=1000, retry=FAST, progress=False
    )
    assert rep.locations == 3
    _check_dataset(tmp_path / "ds", 3, 1)


def test_mapillary_collect(fs, tmp_path, box_sampler):
    fs.reset(hit_pct=60)
    fs.fault("thumb", "expired", count=1)  # a signed thumbnail URL that expired: refreshed through the Graph API
    prov = create_provider("mapillary", key=MAPILLARY_TOKEN, base_url=fs.mapillary_url, thumb=1024)
    rep = collect(tmp_path / "ds", provider=prov, sampler=box_sampler, n=5, rate=1000, retry=FAST, progress=False)
    assert rep.complete and rep.billable_requests == 0 and rep.cost_usd == 0
    df = _check_dataset(tmp_path / "ds", 5, 1)
    assert (df["license"] == "CC-BY-SA-4.0").all() and (df["source"] == "mapillary").all()
    assert df["attribution"].str.match(r"^© mapper\d+, Mapillary, CC BY-SA 4\.0$").all()
    assert (df["mapillary_image_id"] == df["location_id"]).all()
    assert df["captured_at"].str.match(r"^\d{4}-\d{2}-\d{2}T").all()
    assert df["heading"].between(0, 360).all()
    graph = fs.requests("graph")
    assert all(r.headers.get("Authorization") == f"OAuth {MAPILLARY_TOKEN}" for r in graph)
    assert all(MAPILLARY_TOKEN not in r.raw for r in fs.requests())  # the token never travels in a URL
    assert any(r.path != "/mapillary/images" for r in graph)  # the refresh
    assert all("/1024.jpg" in r.path for r in fs.requests("thumb"))
    with pytest.raises(AccessDenied, match="OAuth"):
        collect(
            tmp_path / "bad",
            provider=create_provider("mapillary", key="MLY|nope", base_url=fs.mapillary_url),
            sampler=box_sampler,
            n=1,
            rate=1000,
            retry=FAST,
            progress=False,
        )


def _cli(args, env_extra, **kw):
    env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", "from geoscout.cli import main; main()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _polygon_file(tmp_path: Path) -> Path:
    p = tmp_path / "area.geojson"
    p.write_text(
        json.dumps(
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[15.0, 45.0], [16.0, 45.0], [16.0, 46.0], [15.0, 46.0], [15.0, 45.0]]],
                },
            }
        )
    )
    return p


def _scan_for(root: Path, secrets: list[str]) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            hits += [f"{p}: {s}" for s in secrets if s.encode() in data]
    return hits


@pytest.mark.slow
def test_kill_9_resume_no_duplicates_no_losses_and_key_never_leaks(fs, tmp_path):
    fs.reset(hit_pct=80, user_pct=10)
    fs.fault("image", "429", count=2)
    fs.fault("image", "truncate", count=1)
    out = tmp_path / "ds"
    args = [
        "collect",
        "-o",
        str(out),
        "--provider",
        "streetview",
        "--sampler",
        "polygon",
        "--polygon",
        str(_polygon_file(tmp_path)),
        "--n",
        "12",
        "--seed",
        "7",
        "--rate",
        "40/s",
        "--base-url",
        fs.streetview_url,
        "--timeout",
        "30",
        "--backoff-base",
        "0.05",
        "--verbose",
    ]
    env = {"GOOGLE_MAPS_API_KEY": GOOGLE_KEY, "GEOSCOUT_KEYS_FILE": str(tmp_path / "none.toml")}
    # 17 image requests are answered (2 x 429 and 1 truncated, retried, then 14 good images); the 18th is held
    # unanswered, and the job (one request at a time, each step committed) is killed while it waits for it
    fs.hold("image", after=17)
    proc = _cli(args, env)
    try:
        assert fs.held.wait(120), "the job never reached its 18th image request"
        proc.send_signal(signal.SIGKILL)
        out1, err1 = proc.communicate(timeout=30)
    finally:
        fs.release()
    assert proc.returncode == -signal.SIGKILL
    served = [r for r in fs.requests("image") if r.status == 200 and r.fault is None]
    assert len(served) == 14
    with sqlite3.connect(out / "collect_state.sqlite") as c:
        done_before = c.execute("SELECT COUNT(*) FROM images WHERE status = 'done'").fetchone()[0]
    assert done_before == len(served), "every image answered before the kill is kept, and only those"
    proc = _cli(args, env)
    out2, err2 = proc.communicate(timeout=120)
    assert proc.returncode == 0, err2
    assert "12/12 locations, 48 images" in out2
    df = _check_dataset(out, 12, 4)
    # each pano/heading was downloaded into the dataset exactly once; the run did not re-ask finished points
    assert not df.duplicated(["location_id", "heading"]).any()
    meta = [r.query["location"] for r in fs.requests("metadata")]
    assert len(meta) - len(set(meta)) <= 1  # at most the one point in flight at the kill is asked again
    # the same seed gives the same dataset as an uninterrupted run
    fs.reset(hit_pct=80, user_pct=10)
    ref = tmp_path / "ref"
    proc = _cli([*args[:2], str(ref), *args[3:]], env)
    out3, err3 = proc.communicate(timeout=120)
    assert proc.returncode == 0, err3
    from geoscout.data import Dataset

    assert sorted(Dataset.open(ref).frame["image_id"]) == sorted(df["image_id"])
    # the key is nowhere: not in stdout/stderr (verbose logs include the retries), the SQLite files, the manifest
    text = out1 + err1 + out2 + err2 + out3 + err3
    assert "retry" in text and "HTTP 429" in text
    assert "HTTP Request: GET" in text and "key=***" in text  # httpx's own request log, redacted
    assert GOOGLE_KEY not in text
    assert _scan_for(out, [GOOGLE_KEY]) == [] and _scan_for(ref, [GOOGLE_KEY]) == []
    assert all(r.query.get("key") == GOOGLE_KEY for r in fs.requests())  # ...although every request carried it


def test_cli_denied_key_and_logs_redacted(fs, tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app

    keys = tmp_path / "keys.toml"
    bad = "AIzaSyBAD-key-in-a-file-123456"
    keys.write_text(f'google_maps_api_key = "{bad}"\n')
    keys.chmod(0o644)
    runner = CliRunner()
    args = [
        "collect",
        "-o",
        str(tmp_path / "ds"),
        "--sampler",
        "polygon",
        "--polygon",
        str(_polygon_file(tmp_path)),
        "--n",
        "2",
        "--base-url",
        fs.streetview_url,
        "--keys-file",
        str(keys),
        "--no-progress",
        "--rate",
        "1000/s",
    ]
    env = {"GOOGLE_MAPS_API_KEY": ""}
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 2 and "chmod 600" in res.output and bad not in res.output
    keys.chmod(0o600)
    fs.fault("metadata", "500", count=1)  # a retry, logged with the URL by httpx at INFO level
    res = runner.invoke(app, [*args, "--verbose"], env=env)
    assert res.exit_code == 2
    assert "REQUEST_DENIED" in res.output and "The provided API key is invalid" in res.output
    assert bad not in res.output
    assert _scan_for(tmp_path / "ds", [bad]) == []
    assert fs.requests("metadata")[0].query["key"] == bad  # the file's key was used


def test_cli_options_are_checked(tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app

    res = CliRunner().invoke(
        app, ["collect", "-o", str(tmp_path), "--sampler", "land", "--cities", "London", "--n", "1"]
    )
    assert res.exit_code == 2 and "--cities does not apply" in res.output
    res = CliRunner().invoke(
        app,
        [
            "collect",
            "-o",
            str(tmp_path),
            "--sampler",
            "polygon",
            "--polygon",
            str(_polygon_file(tmp_path)),
            "--n",
            "3",
            "--dry-run",
        ],
    )
    assert res.exit_code == 0 and "12 billable requests at $7/1000 = $0.08" in res.output
    res = CliRunner().invoke(
        app,
        [
            "collect",
            "-o",
            str(tmp_path / "x"),
            "--sampler",
            "polygon",
            "--polygon",
            str(_polygon_file(tmp_path)),
            "--n",
            "3",
            "--size",
            "800x800",
        ],
        env={"GOOGLE_MAPS_API_KEY": "k"},
    )
    assert res.exit_code == 2 and "640x640" in res.output


@pytest.mark.slow
def test_collected_dataset_is_accepted_by_embed_and_train(fs, tmp_path, box_sampler):
    from typer.testing import CliRunner

    from geoscout.cli import app

    fs.reset(hit_pct=100, user_pct=0)
    rep = collect(
        tmp_path / "ds", provider=_sv(fs, headings=2), sampler=box_sampler, n=10, rate=1000, retry=FAST, progress=False
    )
    assert rep.images == 20
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "embed",
            str(tmp_path / "ds"),
            "--backbone",
            "effnet-lite0",
            "-o",
            str(tmp_path / "emb"),
            "--workers",
            "0",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    from geoscout.embeddings import EmbeddingStore

    store = EmbeddingStore.open(tmp_path / "emb")
    assert len(store.ids) == 20 and len(store.failures) == 0
    res = runner.invoke(
        app,
        [
            "train",
            str(tmp_path / "ds"),
            "-o",
            str(tmp_path / "bundle"),
            "--backbone",
            "effnet-lite0",
            "--head",
            "knn",
            "--cells",
            "grid:5",
            "--store-dir",
            str(tmp_path / "stores"),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "bundle" / "config.json").is_file()


def test_cli_quota_stop_exits_3_and_resumes(fs, tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app

    fs.reset(hit_pct=100, user_pct=0)
    args = [
        "collect",
        "-o",
        str(tmp_path / "ds"),
        "--sampler",
        "polygon",
        "--polygon",
        str(_polygon_file(tmp_path)),
        "--n",
        "2",
        "--headings",
        "2",
        "--base-url",
        fs.streetview_url,
        "--no-progress",
        "--rate",
        "1000/s",
    ]
    env = {"GOOGLE_MAPS_API_KEY": GOOGLE_KEY}
    res = CliRunner().invoke(app, [*args, "--daily-quota", "4"], env=env)
    assert (
        res.exit_code == 3 and "daily quota of 4" in res.output and "2/2 locations, 2 images" in res.output
    )  # 2nd pano located, views pending
    res = CliRunner().invoke(app, [*args, "--daily-quota", "10"], env=env)
    assert res.exit_code == 0 and "2/2 locations, 4 images" in res.output
    _check_dataset(tmp_path / "ds", 2, 2)
    assert len(fs.requests()) == 6


def test_a_provider_failing_97_percent_stops_on_the_failure_rate(fs, tmp_path, box_sampler):
    """Rare successes interleave with the failures, so no run of 25 failures in a row ever comes; the
    failure rate over the last requests stops the run, and the report counts the missing images."""
    fs.reset(hit_pct=100, user_pct=0, fail_pct=97)
    retry = RetryPolicy(max_retries=2, base=0.001, max_delay=0.01, timeout=0.5)
    rep = collect(tmp_path / "ds", provider=_sv(fs), sampler=box_sampler, n=5, rate=1000, retry=retry, progress=False)
    assert rep.stopped == "failures", rep.summary()
    assert "of the last 40 requests failed" in rep.message and "unreliable" in rep.message
    failed_requests = sum(r.fault == "500" for r in fs.requests())
    assert failed_requests / len(fs.requests()) > 0.9
    if rep.locations:
        assert rep.missing_images == rep.locations * 4 - rep.images
        assert f"{rep.missing_images} image(s) missing" in rep.summary()


def test_cli_exit_codes_for_a_failing_provider_and_for_missing_images(fs, tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app

    base = [
        "collect",
        "--sampler",
        "polygon",
        "--polygon",
        str(_polygon_file(tmp_path)),
        "--n",
        "2",
        "--headings",
        "2",
        "--base-url",
        fs.streetview_url,
        "--no-progress",
        "--rate",
        "1000/s",
        "--max-retries",
        "2",
        "--backoff-base",
        "0.001",
    ]
    env = {"GOOGLE_MAPS_API_KEY": GOOGLE_KEY}
    fs.reset(hit_pct=100, user_pct=0, fail_pct=97)
    res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "flaky")], env=env)
    # never 0: stopped by the failure rate (3), or the 2 locations were found but images are missing (4)
    assert res.exit_code in (3, 4), res.output
    assert "image(s) missing" in res.output
    # the target is reached but one image fails for good: not a success (exit 4), and the summary says so
    fs.reset(hit_pct=100, user_pct=0)
    fs.fault("image", "500", count=3)
    res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "ds")], env=env)
    assert res.exit_code == 4, res.output
    assert "2/2 locations, 3 images" in res.output and "1 image(s) missing" in res.output
    res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "ds")], env=env)  # the rerun fetches it
    assert res.exit_code == 0, res.output
    assert "2/2 locations, 4 images" in res.output and "missing" not in res.output
