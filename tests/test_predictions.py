"""Predictions files: round trips in all three formats, atomic writes, clear errors for malformed input."""

from __future__ import annotations

import json
import math

import pytest

from geoscout.errors import InvalidInput, PhotoFailure
from geoscout.predictions import CSV_COLUMNS, read_predictions, write_predictions
from geoscout.types import Candidate, Prediction


def _preds() -> list[Prediction]:
    return [
        Prediction(
            "a1b2c3d4e5f60718",
            [
                Candidate(
                    45.815,
                    15.9819,
                    0.61,
                    cell="geohash:u2q",
                    country="HR",
                    country_name="Croatia",
                    admin1="Grad Zagreb",
                    city="Zagreb",
                ),
                Candidate(-33.8688, 151.2093, 0.29, country="AU", city='Sydney, "NSW"'),
                Candidate(0.0, -179.999999, 0.1),
            ],
            radius_km=812.25,
            expected_score=2875.5,
            source="geoscout-lite",
        ),
        Prediction("broken.jpg", error=PhotoFailure("decode_error", "truncated JPEG: cannot decode")),
        Prediction("ünïcode name.png", [Candidate(64.1466, -21.9426, 1.0, city="Reykjavík")], radius_km=3.0),
    ]


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "geojson"])
def test_round_trip(tmp_path, ext):
    preds = _preds()
    path = write_predictions(preds, tmp_path / f"p.{ext}")
    assert path.is_file()
    back = read_predictions(path)
    assert back == preds


@pytest.mark.parametrize("ext", ["jsonl", "json"])
def test_heatmap_round_trips_in_json(tmp_path, ext):
    p = Prediction("x", [Candidate(10.0, 20.0, 0.5)], heatmap=[[10.0, 20.0, 0.5], [11.0, 21.0, 0.25]])
    assert read_predictions(write_predictions([p], tmp_path / f"h.{ext}"))[0].heatmap == p.heatmap


def test_csv_layout_is_one_row_per_candidate(tmp_path):
    path = write_predictions(_preds(), tmp_path / "p.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split(",") == list(CSV_COLUMNS)
    assert len(lines) == 1 + 3 + 1 + 1
    assert lines[1].startswith("a1b2c3d4e5f60718,1,45.815,15.9819,0.61,HR,")
    assert lines[4].startswith("broken.jpg,,,,") and lines[4].endswith(
        "truncated JPEG: cannot decode,decode_error,"
    )  # the error text, its kind, and the last column (cues) empty


@pytest.mark.parametrize("ext", ["jsonl", "json"])
def test_a_failure_keeps_its_source_kind_and_reason_in_json(tmp_path, ext):
    failure = PhotoFailure("not_a_file", "is a named pipe (FIFO), not a regular file", "/in/pipe.jpg", "/in/pipe.jpg")
    path = write_predictions([Prediction("/in/pipe.jpg", error=failure)], tmp_path / f"f.{ext}")
    text = path.read_text(encoding="utf-8")
    assert '"error": "/in/pipe.jpg: is a named pipe (FIFO), not a regular file"' in text.replace('":"', '": "')
    assert '"error_kind": "not_a_file"' in text.replace('":"', '": "')
    assert read_predictions(path)[0].error == failure


def test_prediction_files_from_before_the_kinds_still_load(tmp_path):
    """A string error (no error_kind) reads as the same text with kind "unknown", in every format."""
    old_jsonl = tmp_path / "old.jsonl"
    old_jsonl.write_text('{"image_id": "x.jpg", "error": "x.jpg: cannot decode", "candidates": []}\n')
    old_csv = tmp_path / "old.csv"
    old_csv.write_text("image_id,rank,lat,lon,error\nx.jpg,,,,x.jpg: cannot decode\n")
    for path in (old_jsonl, old_csv):
        (p,) = read_predictions(path)
        assert p.error is not None and p.error.message == "x.jpg: cannot decode" and p.error.kind == "unknown"
    # and a Prediction built with a string, as callers did before
    assert Prediction("x.jpg", error="x.jpg: cannot decode").error == p.error


def test_an_unknown_error_kind_is_named_with_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image_id,rank,lat,lon,error,error_kind\nx.jpg,,,,broken,exploded\n")
    with pytest.raises(InvalidInput, match=r"bad.csv line 2: error_kind 'exploded' is not one of missing"):
        read_predictions(path)


def test_minimal_csv_orders_by_rank_and_fills_probability(tmp_path):
    path = tmp_path / "hand.csv"
    path.write_text("image_id,lat,lon,rank\nimg,10,20,2\nimg,30,40,1\nother,-5,5,\n", encoding="utf-8")
    preds = {p.image_id: p for p in read_predictions(path)}
    assert [(c.lat, c.lon) for c in preds["img"].candidates] == [(30.0, 40.0), (10.0, 20.0)]
    assert [c.probability for c in preds["img"].candidates] == [0.5, 0.5]
    assert preds["other"].top.probability == 1.0 and preds["other"].ok


@pytest.mark.parametrize(
    "content, where, words",
    [
        ("image_id,latitude,lon\na,1,2\n", "line 1", "missing column(s) lat"),
        ("image_id,lat,lon\na,1,2\nb,abc,2\n", "line 3", "must be a number, got 'abc'"),
        ("image_id,lat,lon\na,95,2\n", "line 2", "out of range"),
        ("image_id,lat,lon\na,45,200\n", "line 2", "out of range"),
        ("image_id,lat,lon\na,1,2,3\n", "line 2", "fields but the header has 3"),
        ("image_id,lat,lon\n,1,2\n", "line 2", "image_id is empty"),
        ("image_id,lat,lon,error\na,,,\n", "line 2", "needs its error text"),
        ("image_id,lat,lon,probability\na,1,2,1.7\n", "line 2", "outside [0, 1]"),
        ("image_id,lat,lon\na,nan,2\n", "line 2", "finite"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, content, where, words):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput) as exc:
        read_predictions(path)
    msg = str(exc.value)
    assert str(path) in msg and where in msg and words in msg, msg


def test_malformed_jsonl_names_line(tmp_path):
    good = json.dumps(_preds()[0].to_dict())
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n\n" + '{"image_id": "x", "candidates": [{"lat": 1}' + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"bad\.jsonl line 3: not valid JSON"):
        read_predictions(path)
    path.write_text(good + "\n" + '{"image_id": "x", "candidates": [{"lat": -91, "lon": 0}]}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"line 2: candidate 1 lat=-91.0 is out of range"):
        read_predictions(path)
    path.write_text('{"candidates": []}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"line 1: image_id is missing"):
        read_predictions(path)
    path.write_text('{"image_id": "x", "candidates": [{"lat": "north", "lon": 0}]}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"line 1: candidate 1 lat must be a number, got 'north'"):
        read_predictions(path)


def test_malformed_json_and_paths(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"image_id": "x"}', encoding="utf-8")
    with pytest.raises(InvalidInput, match="expected a JSON list"):
        read_predictions(path)
    path.write_text(
        '[{"image_id": "x"},\n {"image_id": "y", "candidates": [{"lat": 0, "lon": 500}]}]', encoding="utf-8"
    )
    with pytest.raises(InvalidInput, match=r"bad\.json item 1: candidate 1 lon=500.0 is out of range"):
        read_predictions(path)
    with pytest.raises(InvalidInput, match="not found"):
        read_predictions(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidInput, match=r"unknown predictions format '\.txt'"):
        read_predictions(tmp_path / "x.txt")
    with pytest.raises(InvalidInput, match="unknown predictions format"):
        write_predictions(_preds(), tmp_path / "x.parquet")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x81")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        read_predictions(binary)


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "geojson"])
def test_failed_write_leaves_old_file_untouched(tmp_path, ext):
    path = write_predictions(_preds(), tmp_path / f"p.{ext}")
    before = path.read_bytes()
    for bad in ([Prediction("nan", [Candidate(math.nan, 0.0, 1.0)])], ["not a prediction"]):
        with pytest.raises(InvalidInput):
            write_predictions(bad, path)  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_geojson_layout_and_errors(tmp_path):
    path = write_predictions(_preds(), tmp_path / "p.geojson")
    fc = json.loads(path.read_text(encoding="utf-8"))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 5
    f0 = fc["features"][0]
    assert f0["geometry"] == {"type": "Point", "coordinates": [15.9819, 45.815]} and f0["properties"]["rank"] == 1
    assert fc["features"][3]["geometry"] is None and fc["features"][3]["properties"]["error"].startswith("truncated")
    bad = tmp_path / "bad.geojson"
    bad.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", '
        '"coordinates": [10, 100]}, "properties": {"image_id": "a"}}]}',
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput, match=r"bad\.geojson feature 0: candidate 1 lat=100.0 is out of range"):
        read_predictions(bad)
    bad.write_text('{"type": "Feature"}', encoding="utf-8")
    with pytest.raises(InvalidInput, match="FeatureCollection"):
        read_predictions(bad)


def test_bad_lines_are_skipped_and_listed_when_asked(tmp_path):
    """One bad line must not refuse a whole file: with ``bad_rows`` it is listed (file, line, reason)."""
    csv_path = tmp_path / "p.csv"
    csv_path.write_bytes(
        b"image_id,lat,lon\n"
        b"a,45.0,15.0\n"
        b"b,1,north\n"  # not a number
        b"c,45.0,15.0,extra\n"  # ragged
        b"d\xff,45.0,15.0\n"  # not UTF-8
        b"e,46.0,16.0\n"
    )
    bad: list[str] = []
    preds = read_predictions(csv_path, bad_rows=bad)
    assert [p.image_id for p in preds] == ["a", "e"]
    by_line = {int(b.split(" line ")[1].split(":")[0]): b for b in bad}
    assert sorted(by_line) == [3, 4, 5] and all(b.startswith(f"{csv_path} line ") for b in bad)
    assert "lon must be a number" in by_line[3]
    assert "4 fields but the header has 3" in by_line[4]
    assert "not UTF-8" in by_line[5]
    with pytest.raises(InvalidInput, match=r"p\.csv: not UTF-8 text .* at line 5"):
        read_predictions(csv_path)  # strict: the old refusal
    jl = tmp_path / "p.jsonl"
    jl.write_text(
        '{"image_id": "a", "candidates": [{"lat": 1, "lon": 2}]}\n{"image_id": "b", "candid\n'
        '{"image_id": "c", "candidates": [{"lat": 1, "lon": 500}]}\n{"image_id": "d", "error": "unreadable"}\n',
        encoding="utf-8",
    )
    bad = []
    preds = read_predictions(jl, bad_rows=bad)
    assert [p.image_id for p in preds] == ["a", "d"]
    assert [b.split(": ")[0] for b in bad] == [f"{jl} line 2", f"{jl} line 3"]
    with pytest.raises(InvalidInput, match=r"p\.jsonl line 2: not valid JSON"):
        read_predictions(jl)
