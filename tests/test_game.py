"""The game: rounds drawn from a real dataset, guesses scored against geographiclib, the play-mode API over
real HTTP on loopback (uvicorn + httpx), and `geoscout play` through the CLI."""

from __future__ import annotations

import io
import json
import math
import socket

import numpy as np
import pandas as pd
import pytest
from geographiclib.geodesic import Geodesic
from typer.testing import CliRunner

from geoscout.errors import InvalidInput
from geoscout.game import Game, pick_rounds, play, score_guess

SPHERE = Geodesic(6_371_000.0, 0.0)


@pytest.fixture(scope="module")
def osv(shared_data):
    return shared_data("osv5m-sample")


@pytest.fixture(scope="module")
def truth(osv):
    df = pd.read_csv(osv / "manifest.csv")
    return {str(p).rsplit("/", 1)[-1]: (float(a), float(b)) for p, a, b in zip(df.path, df.lat, df.lon)}


def test_rounds_are_distinct_reproducible_and_true(osv, truth):
    a = pick_rounds(osv, 5, seed=7)
    b = pick_rounds(osv, 5, seed=7)
    assert [r.image_id for r in a] == [r.image_id for r in b]
    assert len({r.image_id for r in a}) == 5
    for r in a:
        assert truth[r.path.name] == pytest.approx((r.lat, r.lon))
    with pytest.raises(InvalidInput, match="between 1 and 50"):
        pick_rounds(osv, 51, seed=0)


@pytest.fixture
def two_places(osv, tmp_path):
    """A CSV dataset of 3 photos at 2 locations (two share a location_id)."""
    df = pd.read_csv(osv / "manifest.csv").head(3)[["path", "lat", "lon"]]
    df["path"] = [str(osv / p) for p in df.path]
    df["location_id"] = ["a", "a", "b"]
    df.to_csv(tmp_path / "two.csv", index=False)
    return tmp_path / "two.csv"


def test_too_few_locations_for_the_rounds(two_places):
    assert len(pick_rounds(two_places, 2, seed=0)) == 2
    with pytest.raises(InvalidInput, match="2 distinct location"):
        pick_rounds(two_places, 3, seed=0)


def test_rounds_never_repeat_a_panorama(shared_data):
    hr = shared_data("streetview-croatia")
    df = pd.read_csv(hr / "manifest.csv")
    loc = {f"{p}": lid for p, lid in zip(df.path, df.location_id)}
    rounds = pick_rounds(hr, 40, seed=1)
    ids = [loc[str(r.path.relative_to(hr.resolve()))] for r in rounds]
    assert len(set(ids)) == 40


def test_score_against_geographiclib():
    from geoscout.game import Round

    rnd = Round("x", None, 45.815, 15.982)  # type: ignore[arg-type]
    g = score_guess(rnd, 48.85, 2.35)
    ref = SPHERE.Inverse(45.815, 15.982, 48.85, 2.35)["s12"] / 1000
    assert g.distance_km == pytest.approx(ref, rel=1e-9)
    assert g.score == pytest.approx(5000 * math.exp(-ref / 1492.7), rel=1e-9)
    assert score_guess(rnd, 45.815, 15.982).score == pytest.approx(5000)
    with pytest.raises(InvalidInput, match="guess"):
        score_guess(rnd, 95.0, 0.0)


def test_model_plays_a_whole_game(osv, tiny_locator):
    game = play(osv, tiny_locator, rounds=3, seed=2)
    assert game.finished and len(game.results) == 3
    assert game.total("model") == pytest.approx(sum(r.model.score for r in game.results))
    for r in game.results:
        assert r.truth["country"] is not None and 0 <= r.model.score <= 5000
    with pytest.raises(InvalidInput, match="over"):
        game.play_round((0.0, 0.0))


def test_state_hides_future_rounds(osv):
    game = Game(pick_rounds(osv, 3, seed=0))
    st = json.dumps(game.to_dict())
    for r in game.rounds:
        assert f"{r.lat}" not in st and r.image_id not in st


# --------------------------------------------------------------------------- real HTTP on loopback
@pytest.fixture(scope="module")
def game_server(osv, tiny_locator, live_server):
    from geoscout.server import ServerSettings, create_app

    app = create_app(ServerSettings(game=str(osv), game_rounds=5, max_games=3), locator=tiny_locator)
    with live_server(app) as srv:
        yield srv.base


def test_play_five_rounds_over_http(game_server, truth, osv):
    import httpx
    from PIL import Image

    from geoscout.data import load_dataset

    dataset = load_dataset(osv)

    with httpx.Client(base_url=game_server, timeout=120) as c:
        info = c.get("/v1/game").json()
        assert info["dataset"] == "osv5m-sample" and info["rounds"] == 5 and info["locations"] == 71
        assert c.get("/game").status_code == 200 and "game.js" in c.get("/game").text
        st = c.post("/v1/game", json={"seed": 3}).json()
        gid = st["game_id"]
        assert st["round"] == 1 and st["results"] == [] and not st["finished"]
        assert st["photo_url"] == f"/v1/game/{gid}/photo/1"
        assert c.get(f"/v1/game/{gid}/photo/2").status_code == 404  # no peeking ahead
        totals = 0.0
        for n in range(1, 6):
            photo = c.get(st["photo_url"])
            assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
            im = Image.open(io.BytesIO(photo.content))
            assert not im.getexif() and "exif" not in im.info  # no GPS tags can leak
            # the photo's true place is not in the state or its URL before the guess
            assert "truth" not in json.dumps(st["results"][n - 1 :])
            guess = {"lat": 45.0 + n, "lon": 15.0, "round": n}
            res = c.post(f"/v1/game/{gid}/guess", json=guess)
            assert res.status_code == 200, res.text
            body = res.json()
            r = body["result"]
            assert r["round"] == n
            true_lat, true_lon = r["truth"]["lat"], r["truth"]["lon"]
            row = dataset.frame[dataset.frame.image_id == r["image_id"]].iloc[0]  # the photo just served
            assert (true_lat, true_lon) == pytest.approx((row.lat, row.lon))
            assert truth[str(row.path).rsplit("/", 1)[-1]] == pytest.approx((true_lat, true_lon))
            assert im.size == Image.open(dataset.root / row.path).size  # small photos are served at full size
            d = SPHERE.Inverse(true_lat, true_lon, guess["lat"], guess["lon"])["s12"] / 1000
            assert r["player"]["distance_km"] == pytest.approx(d, rel=1e-9)
            assert r["player"]["score"] == pytest.approx(5000 * math.exp(-d / 1492.7), rel=1e-9)
            assert 0 <= r["model"]["score"] <= 5000
            totals += r["player"]["score"]
            again = c.post(f"/v1/game/{gid}/guess", json=guess)  # the same round twice
            assert again.status_code == 409
            st = body
        assert st["finished"] and st["photo_url"] is None
        assert st["total"]["player"] == pytest.approx(totals, abs=0.1)
        assert len({r["image_id"] for r in st["results"]}) == 5
        over = c.post(f"/v1/game/{gid}/guess", json={"lat": 0, "lon": 0})
        assert over.status_code == 409 and over.json()["error"]["code"] == "game_over"
        assert c.get(f"/v1/game/{gid}").json()["total"] == st["total"]


def test_bad_requests_get_clear_errors(game_server):
    import httpx

    with httpx.Client(base_url=game_server, timeout=60) as c:
        assert c.get("/v1/game/nope").json()["error"]["code"] == "no_such_game"
        gid = c.post("/v1/game", json={"rounds": 2}).json()["game_id"]
        bad = c.post(f"/v1/game/{gid}/guess", json={"lat": 91, "lon": 0})
        assert bad.status_code == 422 and "lat" in bad.json()["error"]["message"]
        assert c.post("/v1/game", json={"rounds": 500}).status_code == 422
        plain = c.post("/v1/game")  # no body: the server's default rounds
        assert plain.status_code == 200 and plain.json()["rounds"] == 5
        for _ in range(3):  # max_games=3: the oldest game is forgotten
            c.post("/v1/game", json={})
        assert c.get(f"/v1/game/{gid}").status_code == 404


def test_no_game_without_a_dataset(tiny_locator):
    from fastapi.testclient import TestClient

    from geoscout.server import ServerSettings, create_app

    with TestClient(create_app(ServerSettings(), locator=tiny_locator)) as c:
        assert c.get("/v1/game").status_code == 404
        assert c.get("/game").status_code == 404


def test_a_bad_game_dataset_fails_at_start(tmp_path, tiny_locator):
    from geoscout.server import ServerSettings, create_app

    with pytest.raises(InvalidInput, match="no such file"):
        create_app(ServerSettings(game=str(tmp_path / "missing")), locator=tiny_locator)


def test_cli_play(osv, two_places):
    from geoscout.cli import app

    res = CliRunner().invoke(app, ["play", str(osv), "--rounds", "3", "--seed", "4"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("round ")]
    assert len(lines) == 3 and "points" in lines[0] and "truth" in lines[0]
    assert "total:" in res.output and "of 15,000 points" in res.output
    res = CliRunner().invoke(app, ["play", str(osv), "--rounds", "2", "--seed", "4", "--json"])
    d = json.loads(res.output)
    assert d["finished"] and len(d["results"]) == 2
    scores = [r["model"]["score"] for r in d["results"]]
    assert d["total"]["model"] == pytest.approx(sum(scores), abs=0.1)
    assert np.all(np.array(scores) >= 0)
    bad = CliRunner().invoke(app, ["play", str(two_places), "--rounds", "3"])
    assert bad.exit_code == 2 and "distinct location" in bad.output


def test_public_play_loads_a_model_by_name(two_places):
    import geoscout

    game = geoscout.play(two_places, "geoscout-lite", rounds=2, seed=0)
    assert game.finished and len({r.image_id for r in game.results}) == 2
    assert all(r.player is None and 0 <= r.model.score <= 5000 for r in game.results)


def test_serve_refuses_a_bad_game_dataset(tmp_path):
    from geoscout.cli import app

    with socket.socket() as s:  # a free port, in case the command did not refuse before serving
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(app, ["serve", "--game", str(tmp_path / "nowhere"), "--port", str(port)])
    assert res.exit_code == 2 and "--game" in res.output and "nowhere" in res.output
