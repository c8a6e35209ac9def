"""A resumable, polite collect job: sampler -> provider -> images + manifest.

State lives in ``<dataset>/collect_state.sqlite`` (see :mod:`geoscout.collect.state`). The job
first finishes what a previous run left half done (located panoramas with missing views, points
drawn but not asked), then draws new points from the sampler's deterministic stream until ``n``
locations are found. Every image is written atomically and recorded with its SHA-256; the
manifest (``manifest.parquet``, the standard :class:`geoscout.data.Dataset` format) is rebuilt
from the state at checkpoints and at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoscout._io import atomic_write_bytes
from geoscout.data.schema import CORE_COLUMNS
from geoscout.errors import InvalidInput, ProviderError

from .http import AccessDenied, PoliteClient, QuotaReached, RequestFailed, RetryPolicy
from .keys import Redactor, redact_logs
from .providers import Location, Provider, Skip, View
from .samplers import SamplePoint, Sampler
from .state import StateDB, utc_day

__all__ = ["STATE_NAME", "CollectJob", "CollectReport", "collect", "read_state_summary"]

log = logging.getLogger("geoscout.collect")
STATE_NAME = "collect_state.sqlite"
LOCK_NAME = ".collect.lock"


@dataclass
class CollectReport:
    """What a run did and where the job stands. ``stopped`` is None when the target was reached."""

    root: Path
    target: int
    locations: int
    images: int
    points: dict[str, int]
    image_status: dict[str, int]
    requests_today: int
    billable_requests: int
    cost_usd: float
    stopped: str | None = None
    message: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def hit_rate(self) -> float:
        """Share of asked points that gave a new location (NaN before any)."""
        asked = sum(v for k, v in self.points.items() if k not in ("pending",))
        return self.locations / asked if asked else float("nan")

    @property
    def complete(self) -> bool:
        """The run reached its target of locations (some images may still be missing: see ``missing_images``)."""
        return self.stopped is None

    @property
    def missing_images(self) -> int:
        """Views of collected locations still without an image (failed after retries, or not fetched yet)."""
        return self.image_status.get("failed", 0) + self.image_status.get("pending", 0)

    def summary(self) -> str:
        hr = "n/a" if np.isnan(self.hit_rate) else f"{self.hit_rate:.1%}"
        line = (
            f"{self.locations}/{self.target} locations, {self.images} images, hit rate {hr}, "
            f"{self.requests_today} requests today, billable {self.billable_requests} (~${self.cost_usd:.2f})"
        )
        if self.missing_images:
            line += f", {self.missing_images} image(s) missing (rerun the same command to retry them)"
        if self.problems:
            line += f", {len(self.problems)} problem(s)"
        return line + (f"; stopped: {self.message}" if self.stopped else "")


def _safe_name(text: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip(".") or "x"
    if safe != text or len(safe) > 80:  # keep distinct ids distinct after sanitising
        safe = f"{safe[:60]}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return safe


class _Lock:
    """An exclusive lock on the dataset folder (released by the OS even on kill -9)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None

    def __enter__(self) -> _Lock:
        self.fh = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise InvalidInput(f"{self.path.parent}: another collect job is running on this dataset") from None
        except ImportError:  # Windows: no advisory lock
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


class CollectJob:
    """Collect ``n`` locations of imagery from ``provider`` at points from ``sampler`` into dataset ``out``.

    ``rate`` is requests per second (token bucket), ``daily_quota`` caps the requests sent per UTC day
    (metadata, images and retries all count; persisted, so restarts do not reset it),
    ``price_per_1000`` (US$) overrides the provider's price for the cost estimate, ``max_points`` bounds
    how many points one run asks (default ``100 * n + 1000``), ``max_consecutive_failures`` stops a run
    against a provider that keeps failing, and ``max_failure_rate`` one where at least that share of the
    last ``failure_window`` requests failed (after their retries), even with rare successes in between. ``n=None`` with a quota sampler means the sum of its quotas.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        provider: Provider,
        sampler: Sampler,
        n: int | None = None,
        *,
        seed: int = 0,
        rate: float = 10.0,
        daily_quota: int | None = 25_000,
        retry: RetryPolicy | None = None,
        price_per_1000: float | None = None,
        max_points: int | None = None,
        progress: bool = True,
        max_consecutive_failures: int = 25,
        max_failure_rate: float = 0.5,
        failure_window: int = 40,
        checkpoint_every: int = 100,
    ) -> None:
        self.root = Path(out).expanduser()
        self.provider, self.sampler = provider, sampler
        if n is None:
            if not sampler.quotas:
                raise InvalidInput("collect: give n (the number of locations to collect)")
            n = sum(sampler.quotas.values())
        elif sampler.quotas:
            n = min(int(n), sum(sampler.quotas.values()))  # the quotas cap the total
        if int(n) <= 0:
            raise InvalidInput(f"collect: n={n}; need at least 1 location")
        if daily_quota is not None and int(daily_quota) <= 0:
            raise InvalidInput(f"daily_quota={daily_quota}: must be positive (or None for no cap)")
        self.n, self.seed = int(n), int(seed)
        self.rate, self.daily_quota = float(rate), (int(daily_quota) if daily_quota is not None else None)
        self.retry = retry or RetryPolicy()
        self.price = float(provider.price_per_1000 if price_per_1000 is None else price_per_1000)
        self.max_points = int(max_points) if max_points is not None else 100 * self.n + 1000
        self.progress, self.max_fail = bool(progress), int(max_consecutive_failures)
        self.checkpoint_every = int(checkpoint_every)
        if not 0 < max_failure_rate <= 1 or failure_window < 1:
            raise InvalidInput(
                f"max_failure_rate={max_failure_rate}, failure_window={failure_window}: need a rate in (0, 1] "
                "and a window of at least 1 request"
            )
        self.max_rate, self.window = float(max_failure_rate), int(failure_window)
        self.problems: list[str] = []
        self._fails = 0
        self._recent: deque[bool] = deque(maxlen=self.window)  # True = the request failed for good

    # -- public ---------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What makes a job this job (must match on resume): provider options, sampler, seed."""
        return {"provider": self.provider.config(), "sampler": self.sampler.config(), "seed": self.seed}

    def run(self) -> CollectReport:
        """Run (or resume) the job; returns a :class:`CollectReport`. Raises :class:`AccessDenied` on a refused key."""
        from geoscout.data.schema import MANIFEST_NAME

        self.root.mkdir(parents=True, exist_ok=True)
        state_path = self.root / STATE_NAME
        if (self.root / MANIFEST_NAME).exists() and not state_path.exists():
            raise InvalidInput(
                f"{self.root}: holds a dataset that was not made by `geoscout collect`; choose a new output folder"
            )
        self.redact = Redactor(self.provider.secrets)
        filters = redact_logs(self.redact)
        try:
            with _Lock(self.root / LOCK_NAME), StateDB(state_path) as db:
                self.db = db
                return self._run()
        finally:
            for lg, flt in filters:
                lg.removeFilter(flt)

    # -- internals ------------------------------------------------------------------------------------
    def _run(self) -> CollectReport:
        db = self.db
        cfg = json.loads(json.dumps(self.config()))
        stored = db.get_meta("config")
        if stored is None:
            db.set_meta("config", cfg)
            db.set_meta("created", time.time())
        elif stored != cfg:
            diff = {k: (stored.get(k), cfg.get(k)) for k in set(stored) | set(cfg) if stored.get(k) != cfg.get(k)}
            raise InvalidInput(
                f"{self.root}: this dataset was collected with other options {diff} (stored, given); "
                "rerun with the same provider options, sampler and seed, or choose a new folder"
            )
        self._clean_temp_files()
        db.conn.execute("UPDATE images SET status = 'pending' WHERE status = 'failed'")  # retry on resume
        self.http = PoliteClient(
            rate=self.rate, retry=self.retry, redactor=self.redact, before_request=self._before_request, seed=self.seed
        )
        stopped, message = None, ""
        self._bar = self._make_bar()
        self._since_checkpoint = 0
        try:
            self._finish_located()
            self._finish_pending_points()
            stopped, message = self._draw_new_points()
        except QuotaReached as exc:
            stopped, message = "quota", str(exc)
        except AccessDenied:
            self._write_manifest()
            raise
        except _TooManyFailures as exc:
            stopped, message = "failures", str(exc)
        finally:
            self.http.close()
            if self._bar is not None:
                self._bar.close()
        self._write_manifest()
        report = self._report(stopped, message)
        log.info(self.redact(report.summary()))
        return report

    def _before_request(self, kind: str) -> None:
        if self.daily_quota is not None:
            used = self.db.usage(utc_day())
            if used >= self.daily_quota:
                raise QuotaReached(
                    f"the daily quota of {self.daily_quota} requests is used up for {utc_day()} (UTC); "
                    "rerun the same command after midnight UTC (or raise --daily-quota) to resume"
                )
        self.db.add_usage(kind)

    def _clean_temp_files(self) -> None:
        img = self.root / "images"
        if img.is_dir():
            for p in img.rglob(".*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _make_bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.n,
            initial=min(self.n, self.db.n_locations()),
            unit="loc",
            desc=f"collect {self.provider.name}",
            dynamic_ncols=True,
        )

    def _tick(self) -> None:
        if self._bar is None:
            return
        done = self.db.n_locations()
        self._bar.n = min(done, self.n)
        pc = self.db.point_counts()
        asked = sum(v for k, v in pc.items() if k != "pending")
        billable = self.db.total_usage(self.provider.billable_kinds) if self.provider.billable_kinds else 0
        spent = billable * self.price / 1000.0
        remaining = (
            max(0, self.n - done) * self.provider.images_per_location() * self.price / 1000.0 if self.price else 0.0
        )
        self._bar.set_postfix_str(
            f"hit {done / asked:.0%} img {self.db.image_counts().get('done', 0)} ${spent:.2f} (+${remaining:.2f} est)"
            if asked
            else "starting",
            refresh=False,
        )
        self._bar.refresh()

    def _finish_located(self) -> None:
        rows = self.db.conn.execute(
            "SELECT DISTINCT location_id FROM images WHERE status = 'pending' ORDER BY rowid"
        ).fetchall()
        for r in rows:
            self._fetch_images(r[0])

    def _finish_pending_points(self) -> None:
        rows = self.db.conn.execute(
            "SELECT idx, lat, lon, grp, info FROM points WHERE status = 'pending' ORDER BY idx"
        ).fetchall()
        for r in rows:
            pt = SamplePoint(r["lat"], r["lon"], r["grp"], json.loads(r["info"] or "{}"))
            self._process_point(int(r["idx"]), pt)

    def _draw_new_points(self) -> tuple[str | None, str]:
        db = self.db
        start = db.next_point_index()
        stream = itertools.islice(self.sampler.points(self.seed), start, None)
        quotas = self.sampler.quotas
        asked = 0
        idx = start - 1
        for idx, pt in enumerate(stream, start=start):
            if db.n_locations() >= self.n:
                idx -= 1
                break
            if quotas and pt.group is not None and db.n_locations(pt.group) >= quotas.get(pt.group, 0):
                continue  # this group is full; the stream position is recorded with the next used point
            if asked >= self.max_points:
                db.set_meta("points_drawn", idx)
                return "max_points", (
                    f"asked {asked} points in this run without reaching {self.n} locations "
                    "(hit rate too low for this sampler/provider?); rerun to continue"
                )
            with db.tx() as c:
                c.execute(
                    "INSERT OR IGNORE INTO points(idx, lat, lon, grp, info, status, updated) VALUES(?,?,?,?,?,?,?)",
                    (idx, pt.lat, pt.lon, pt.group, json.dumps(pt.info, default=str), "pending", time.time()),
                )
                db.set_meta("points_drawn", idx + 1)
            asked += 1
            self._process_point(idx, pt)
        else:
            db.set_meta("points_drawn", idx + 1)
            if db.n_locations() < self.n:
                return "exhausted", f"the {self.sampler.name} sampler has no more points ({idx + 1} in all)"
        return None, ""

    def _set_point(self, idx: int, status: str, location_id: str | None = None, detail: str = "") -> None:
        self.db.conn.execute(
            "UPDATE points SET status = ?, location_id = ?, detail = ?, updated = ? WHERE idx = ?",
            (status, location_id, self.redact(detail)[:500], time.time(), idx),
        )

    def _failure(self, what: str, exc: Exception) -> None:
        msg = self.redact(exc)
        self.problems.append(f"{what}: {msg}")
        log.warning(msg)
        self._fails += 1
        self._recent.append(True)
        if self._fails >= self.max_fail:
            raise _TooManyFailures(
                f"{self._fails} requests in a row failed (last: {msg}); the provider seems down — rerun later to resume"
            )
        failed = sum(self._recent)
        if len(self._recent) == self.window and failed >= self.max_rate * self.window:
            raise _TooManyFailures(
                f"{failed} of the last {self.window} requests failed (last: {msg}); the provider seems unreliable "
                "— rerun later to resume"
            )

    def _success(self) -> None:
        self._fails = 0
        self._recent.append(False)

    def _process_point(self, idx: int, pt: SamplePoint) -> None:
        try:
            res = self.provider.locate(self.http, pt.lat, pt.lon)
        except RequestFailed as exc:
            self._set_point(idx, "error", detail=str(exc))
            self._failure(f"point {idx}", exc)
            self._tick()
            return
        self._success()
        if isinstance(res, Skip):
            self._set_point(idx, res.reason, detail=res.detail)
        elif self.db.has_location(res.location_id):
            self._set_point(idx, "duplicate", res.location_id)
        else:
            rng = np.random.default_rng([self.seed, idx])
            views = self.provider.views(res, rng)
            extra = {**res.extra, "sample_lat": pt.lat, "sample_lon": pt.lon}
            with self.db.tx() as c:
                c.execute(
                    "INSERT INTO locations(location_id, point_idx, grp, lat, lon, captured_at, license, attribution, extra) "
                    "VALUES(?,?,?,?,?,?,?,?,?)",
                    (
                        res.location_id,
                        idx,
                        pt.group,
                        res.lat,
                        res.lon,
                        res.captured_at,
                        res.license,
                        res.attribution,
                        json.dumps(extra, default=str),
                    ),
                )
                c.executemany(
                    "INSERT INTO images(location_id, view, heading, params, status, updated) VALUES(?,?,?,?,?,?)",
                    [(res.location_id, v.view, v.heading, json.dumps(v.params), "pending", time.time()) for v in views],
                )
                c.execute(
                    "UPDATE points SET status = 'located', location_id = ?, updated = ? WHERE idx = ?",
                    (res.location_id, time.time(), idx),
                )
            self._fetch_images(res.location_id)
        self._tick()

    def _location(self, location_id: str) -> Location:
        r = self.db.conn.execute("SELECT * FROM locations WHERE location_id = ?", (location_id,)).fetchone()
        return Location(
            r["location_id"],
            r["lat"],
            r["lon"],
            r["captured_at"],
            r["license"],
            r["attribution"],
            json.loads(r["extra"] or "{}"),
        )

    def _fetch_images(self, location_id: str) -> None:
        loc = self._location(location_id)
        rows = self.db.conn.execute(
            "SELECT view, heading, params FROM images WHERE location_id = ? AND status = 'pending' ORDER BY view",
            (location_id,),
        ).fetchall()
        for r in rows:
            view = View(int(r["view"]), r["heading"], json.loads(r["params"]))
            try:
                data = self.provider.fetch(self.http, loc, view)
            except RequestFailed as exc:
                self.db.conn.execute(
                    "UPDATE images SET status = 'failed', detail = ?, updated = ? WHERE location_id = ? AND view = ?",
                    (self.redact(exc)[:500], time.time(), location_id, view.view),
                )
                self._failure(f"image {location_id}/{view.view}", exc)
                continue
            self._success()
            sha = hashlib.sha256(data).hexdigest()
            image_id = sha[:16]
            clash = self.db.conn.execute(
                "SELECT location_id, view FROM images WHERE image_id = ? AND status = 'done'", (image_id,)
            ).fetchone()
            if clash is not None:
                self.db.conn.execute(
                    "UPDATE images SET status = 'duplicate', image_id = ?, detail = ?, updated = ? "
                    "WHERE location_id = ? AND view = ?",
                    (image_id, f"same bytes as {clash[0]}/{clash[1]}", time.time(), location_id, view.view),
                )
                self.problems.append(f"image {location_id}/{view.view}: identical to {clash[0]}/{clash[1]}; skipped")
                continue
            rel = f"images/{_safe_name(location_id)}/{view.view:02d}.jpg"
            atomic_write_bytes(self.root / rel, data)
            self.db.conn.execute(
                "UPDATE images SET status = 'done', path = ?, sha256 = ?, image_id = ?, bytes = ?, detail = NULL, "
                "updated = ? WHERE location_id = ? AND view = ?",
                (rel, sha, image_id, len(data), time.time(), location_id, view.view),
            )
            if self.provider.name == "mapillary" and loc.extra.get("thumb_url"):
                self.db.conn.execute(
                    "UPDATE locations SET extra = ? WHERE location_id = ?",
                    (json.dumps(loc.extra, default=str), location_id),
                )
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.checkpoint_every:
            self._since_checkpoint = 0
            self._write_manifest()

    def frame(self) -> Any:
        """The manifest rows (a pandas DataFrame) of every image downloaded so far."""
        import pandas as pd

        rows = self.db.conn.execute(
            "SELECT i.image_id, i.path, l.lat, l.lon, i.heading, i.location_id, l.captured_at, l.license, l.attribution, "
            "l.extra, l.grp, i.view, i.sha256 FROM images i JOIN locations l USING (location_id) "
            "WHERE i.status = 'done' ORDER BY l.point_idx, i.view"
        ).fetchall()
        recs = []
        for r in rows:
            extra = json.loads(r["extra"] or "{}")
            rec = {
                "image_id": r["image_id"],
                "path": r["path"],
                "lat": r["lat"],
                "lon": r["lon"],
                "heading": np.nan if r["heading"] is None else float(r["heading"]),
                "location_id": r["location_id"],
                "source": self.provider.source,
                "license": r["license"],
                "attribution": r["attribution"],
                "captured_at": r["captured_at"],
                "view": int(r["view"]),
                "sha256": r["sha256"],
                "sample_lat": extra.get("sample_lat"),
                "sample_lon": extra.get("sample_lon"),
                "sample_group": r["grp"],
            }
            if self.provider.name == "streetview":
                rec["pano_id"] = extra.get("pano_id")
                rec["copyright"] = extra.get("copyright")
            else:
                rec["mapillary_image_id"] = extra.get("mapillary_image_id")
                rec["creator"] = extra.get("creator")
            recs.append(rec)
        cols = [*CORE_COLUMNS, "view", "sha256", "sample_lat", "sample_lon", "sample_group"]
        cols += ["pano_id", "copyright"] if self.provider.name == "streetview" else ["mapillary_image_id", "creator"]
        return pd.DataFrame.from_records(recs, columns=cols)

    def _write_manifest(self) -> None:
        from geoscout.data import Dataset

        Dataset.create(self.root, self.frame(), overwrite=True)

    def _report(self, stopped: str | None, message: str) -> CollectReport:
        db = self.db
        ic = db.image_counts()
        billable = db.total_usage(self.provider.billable_kinds) if self.provider.billable_kinds else 0
        return CollectReport(
            root=self.root,
            target=self.n,
            locations=db.n_locations(),
            images=ic.get("done", 0),
            points=db.point_counts(),
            image_status=ic,
            requests_today=db.usage(utc_day()),
            billable_requests=billable,
            cost_usd=billable * self.price / 1000.0,
            stopped=stopped,
            message=message,
            problems=list(self.problems),
        )


class _TooManyFailures(ProviderError):
    pass


def collect(
    out: str | os.PathLike[str],
    *,
    provider: str | Provider,
    sampler: str | Sampler,
    n: int | None = None,
    seed: int = 0,
    provider_options: dict[str, Any] | None = None,
    sampler_options: dict[str, Any] | None = None,
    **job_options: Any,
) -> CollectReport:
    """Collect a dataset: ``collect("out/", provider="streetview", sampler="land", n=100)``.

    ``provider_options`` go to :func:`create_provider` (key, base_url, headings, size, fov, pitch, radius...),
    ``sampler_options`` to :func:`create_sampler`; other keywords to :class:`CollectJob`.
    """
    from .providers import create_provider
    from .samplers import create_sampler

    prov = provider if isinstance(provider, Provider) else create_provider(provider, **(provider_options or {}))
    samp = sampler if isinstance(sampler, Sampler) else create_sampler(sampler, **(sampler_options or {}))
    return CollectJob(out, prov, samp, n, seed=seed, **job_options).run()


def read_state_summary(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts from a collect job's state file (points by status, images by status, requests today)."""
    path = Path(root) / STATE_NAME
    if not path.is_file():
        raise InvalidInput(f"{root}: no {STATE_NAME}; not a collect job folder")
    with StateDB(path) as db:
        return {
            "config": db.get_meta("config"),
            "points": db.point_counts(),
            "images": db.image_counts(),
            "locations": db.n_locations(),
            "requests_today": db.usage(utc_day()),
            "requests_total": db.total_usage(),
        }
