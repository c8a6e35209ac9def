"""Polite HTTP pieces and key handling, without a server."""

from __future__ import annotations

import itertools
import logging
import random

import pytest

from geoscout.collect.http import Retry, RetryPolicy, TokenBucket, check_jpeg, parse_rate
from geoscout.collect.keys import Redactor, load_key, redact_logs
from geoscout.errors import InvalidInput


def test_parse_rate():
    assert parse_rate("10/s") == 10 and parse_rate("600/min") == 10 and parse_rate("3600/h") == 1
    assert parse_rate(2.5) == 2.5 and parse_rate("4") == 4
    for bad in ("fast", "0/s", "-1"):
        with pytest.raises(InvalidInput, match="rate"):
            parse_rate(bad)


def test_token_bucket_rate_with_a_fake_clock():
    now = [0.0]
    tb = TokenBucket(4.0, burst=2.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(2 + 40):
        tb.acquire()
    assert now[0] == pytest.approx(10.0)  # burst of 2, then 40 tokens at 4/s


def test_backoff_grows_with_jitter_and_respects_retry_after():
    p = RetryPolicy(base=1.0, max_delay=30.0, jitter=0.25)
    rng = random.Random(0)
    d = [p.delay(k, rng) for k in range(8)]
    assert all(b > a for a, b in itertools.pairwise(d[:5]))  # past 2**4 the cap (30 s) flattens it
    assert all(1.0 * 2**k <= x <= 1.25 * 2**k for k, x in enumerate(d[:5]))
    assert max(d) <= 30 * 1.25
    assert p.delay(0, rng, retry_after=7.0) >= 7.0
    assert len({round(p.delay(2, random.Random(s)), 6) for s in range(10)}) > 1  # jitter


def test_check_jpeg(tmp_path):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, "JPEG")
    data = buf.getvalue()
    check_jpeg(data)
    for bad in (data[: len(data) // 2], b"<html>", data[:-2] + b"\x00\x00" * 3, b""):
        with pytest.raises(Retry):
            check_jpeg(bad)


def test_load_key_env_then_file(tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_MAPS_API_KEY", raising=False)
    monkeypatch.delenv("MAPILLARY_ACCESS_TOKEN", raising=False)
    f = tmp_path / "keys.toml"
    monkeypatch.setenv("GEOSCOUT_KEYS_FILE", str(f))
    with pytest.raises(InvalidInput, match="GOOGLE_MAPS_API_KEY") as ei:
        load_key("streetview")
    assert str(f) in str(ei.value)
    f.write_text('google_maps_api_key = "AIza-from-file"\n[mapillary]\nkey = "MLY|from-table"\n')
    f.chmod(0o640)
    with pytest.raises(InvalidInput, match="chmod 600") as ei:
        load_key("streetview")
    assert "AIza-from-file" not in str(ei.value)
    f.chmod(0o600)
    assert load_key("streetview") == "AIza-from-file"
    assert load_key("mapillary") == "MLY|from-table"
    monkeypatch.setenv("GOOGLE_MAPS_API_KEY", "AIza-from-env")
    assert load_key("streetview") == "AIza-from-env"
    f.write_text('google_maps_api_key = "AIza-broken\n')
    monkeypatch.delenv("GOOGLE_MAPS_API_KEY")
    with pytest.raises(InvalidInput, match="not valid TOML") as ei:
        load_key("streetview")
    assert "AIza-broken" not in str(ei.value)


def test_redactor_and_log_filter(caplog):
    key = "MLY|123|a+b/c"
    r = Redactor([key])
    assert r(f"url?access_token={key}&x=1") == "url?access_token=***&x=1"
    assert r("url?access_token=MLY%7C123%7Ca%2Bb%2Fc") == "url?access_token=***"
    assert r("MLY%7C123%7Ca%2Bb%2Fc".replace("%2F", "/").replace("%2B", "+")) != key
    pairs = redact_logs(r)
    try:
        with caplog.at_level(logging.INFO, logger="httpx"):
            logging.getLogger("httpx").info('HTTP Request: GET %s "%s"', f"https://x/?key={key}", "HTTP/1.1 200 OK")
        assert key not in caplog.text and "key=***" in caplog.text
    finally:
        for lg, flt in pairs:
            lg.removeFilter(flt)
