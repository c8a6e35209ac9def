"""Shared fixtures. Tests that need ``../shared`` skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GEOSCOUT_SHARED", PROJECT_ROOT.parent / "shared"))
DATASETS = ("streetview-croatia", "streetview-world", "streetview-strips", "osv5m-sample", "im2gps")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or $GEOSCOUT_SHARED); skips the test when it is missing."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED} (absent in a plain clone)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path):
    """Function ``name -> Path`` of one photo set in ``../shared/data``; skips if that set is missing."""

    def get(name: str) -> Path:
        p = shared_dir / "data" / name
        if not (p / "manifest.csv").is_file():
            pytest.skip(f"needs {p}/manifest.csv")
        return p

    return get


@pytest.fixture(scope="session")
def shared_geo(shared_dir: Path) -> Path:
    p = shared_dir / "geo"
    if not p.is_dir():
        pytest.skip(f"needs {p}")
    return p


@pytest.fixture(scope="session")
def small_world_sample(shared_data):
    """~70 real photos from many countries (OSV-5M sample + Street View world) as (paths, lat, lon)."""
    import pandas as pd

    paths, lat, lon = [], [], []
    for name in ("osv5m-sample", "streetview-world"):
        root = shared_data(name)
        df = pd.read_csv(root / "manifest.csv")
        step = 1 if name == "osv5m-sample" else 4
        for row in df.iloc[::step].itertuples(index=False):
            paths.append(root / row.path)
            lat.append(float(row.lat))
            lon.append(float(row.lon))
    return paths, lat, lon


@pytest.fixture(scope="session")
def tiny_locator(small_world_sample):
    """A real, small Locator: EfficientNet-Lite0 (ImageNet weights) + a k-NN head fitted on real photos.

    Built once per test session; used by the locate, server and watch tests.
    """
    import numpy as np

    from geoscout.backbones import create_backbone
    from geoscout.embeddings import embed_images
    from geoscout.heads import create_head
    from geoscout.locator import Locator

    paths, lat, lon = small_world_sample
    backbone = create_backbone("effnet-lite0")
    X, failures = embed_images([str(p) for p in paths], backbone, batch_size=16)
    assert not failures, failures
    head = create_head("knn", k=5).fit(X, np.stack([lat, lon], axis=1))
    return Locator(backbone, head, name="tiny-knn")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny CLIP folder with both towers and a BPE tokenizer (random weights; see tests/tinyclip.py)."""
    pytest.importorskip("transformers")
    from tinyclip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tinyclip") / "clip")


class LiveServer:
    """An ASGI app served by uvicorn in a background thread on 127.0.0.1: real HTTP on loopback.

    The listening socket is bound here (port 0: the system picks a free one, no race with other
    tests), and ``with LiveServer(app) as srv`` returns once uvicorn's startup has finished (an event
    set by the server, no polling); ``srv.base`` is the URL. Leaving the block stops the server.
    """

    def __init__(self, app: object, *, start_timeout: float = 60) -> None:
        import socket
        import threading

        import uvicorn

        ready = threading.Event()

        class _Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                try:
                    await super().startup(sockets=sockets)
                finally:
                    ready.set()  # started, or failed to: __enter__ looks at ``started``

        self.app, self.ready, self.start_timeout = app, ready, start_timeout
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        self.server = _Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        assert self.ready.wait(self.start_timeout) and self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="session")
def live_server():
    """:class:`LiveServer`, for ``with live_server(create_app(...)) as srv:`` in tests and module fixtures."""
    pytest.importorskip("uvicorn")
    return LiveServer
