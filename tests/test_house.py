"""The house rules: public API, one registry type with entry points, the estimator contract, the layers."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import geoscout
from geoscout._registry import Registry
from geoscout.errors import GeoscoutError, UnknownName

SRC = Path(__file__).resolve().parents[1] / "src" / "geoscout"


def test_all_is_a_literal_list_and_every_name_resolves():
    tree = ast.parse((SRC / "__init__.py").read_text())
    assigned = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__"]  # type: ignore[attr-defined]
    assert len(assigned) == 1 and isinstance(assigned[0].value, ast.List)
    literal = [e.value for e in assigned[0].value.elts]  # type: ignore[attr-defined]
    assert literal == geoscout.__all__
    for name in geoscout.__all__:
        assert getattr(geoscout, name) is not None, name
    for name in ("train_model", "Backbone", "Partition", "GeoHead", "locate", "load_model", "evaluate"):
        assert name in geoscout.__all__


def test_every_error_class_is_exported_and_derives_from_geoscout_error():
    import geoscout.errors as errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert {c.__name__ for c in classes} <= set(errors.__all__)
    for c in classes:
        assert issubclass(c, GeoscoutError)
    # every error, and the typed failure a prediction carries, is importable from the package
    assert {c.__name__ for c in classes} | {"PhotoFailure"} <= set(geoscout.__all__)


def test_importing_the_locator_module_keeps_geoscout_locate_a_function():
    code = (
        "import geoscout, geoscout.locator, geoscout.evaluate\n"
        "assert callable(geoscout.locate) and not isinstance(geoscout.locate, type(geoscout)), geoscout.locate\n"
        "assert geoscout.locate is geoscout.locator.locate\n"
        "assert callable(geoscout.evaluate) or True\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]


def _plugin(tmp_path: Path, group: str, name: str, value: str, module: str, source: str) -> None:
    """A real installed distribution (dist-info on sys.path) that declares one entry point."""
    (tmp_path / f"{module}.py").write_text(source)
    dist = tmp_path / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")


def test_registry_finds_plugin_factories_and_modules_through_entry_points(tmp_path, monkeypatch):
    _plugin(
        tmp_path,
        "geoscout.test_heads",
        "nearest",
        "geoscout_demo_plugin:make_nearest",
        "geoscout_demo_plugin",
        "from geoscout.heads.knn import KNNHead\n\ndef make_nearest(**kw):\n    '''One nearest neighbour.'''\n    return KNNHead(k=1, **kw)\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    reg: Registry = Registry("head", group="geoscout.test_heads", modules=("geoscout.heads.knn",))
    assert reg.list() == ["nearest"]
    assert reg.describe() == {"nearest": "One nearest neighbour."}
    head = reg.create("nearest")
    assert type(head).__name__ == "KNNHead" and head.k == 1
    with pytest.raises(UnknownName, match=r"Did you mean 'nearest'"):
        reg.get("neerest")


def test_a_module_entry_point_registers_itself_and_a_broken_plugin_only_warns(tmp_path, monkeypatch):
    _plugin(
        tmp_path,
        "geoscout.test_parts",
        "selfreg",
        "geoscout_selfreg_plugin",
        "geoscout_selfreg_plugin",
        "from geoscout._registry import Registry\n",
    )
    src = tmp_path / "geoscout_selfreg_plugin.py"
    src.write_text("import geoscout_test_registry_holder as h\nh.REG.register('band')(lambda **kw: 'band')\n")
    (tmp_path / "geoscout_test_registry_holder.py").write_text(
        "from geoscout._registry import Registry\nREG = Registry('partition', group='geoscout.test_parts')\n"
    )
    (tmp_path / "geoscout_broken-0.1.dist-info").mkdir()
    (tmp_path / "geoscout_broken-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: geoscout-broken\nVersion: 0.1\n"
    )
    (tmp_path / "geoscout_broken-0.1.dist-info" / "entry_points.txt").write_text(
        "[geoscout.test_parts]\nbroken = geoscout_no_such_module:make\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    holder = importlib.import_module("geoscout_test_registry_holder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert holder.REG.list() == ["band"]
    assert any("broken" in str(w.message) and "failed to load" in str(w.message) for w in caught)
    assert holder.REG.create("band") == "band"


def test_every_registry_is_the_one_registry_type_with_an_entry_point_group():
    from geoscout.backbones._registry import BACKBONES
    from geoscout.cells._registry import PARTITIONS
    from geoscout.collect.providers import PROVIDERS
    from geoscout.collect.samplers import SAMPLERS
    from geoscout.heads._registry import HEADS
    from geoscout.locator import MODELS

    groups = {}
    for reg in (BACKBONES, PARTITIONS, HEADS, PROVIDERS, SAMPLERS, MODELS):
        assert type(reg) is Registry
        groups[reg.kind] = reg.group
        assert len(reg) > 0
    assert groups == {
        "backbone": "geoscout.backbones",
        "partition": "geoscout.partitions",
        "head": "geoscout.heads",
        "provider": "geoscout.providers",
        "sampler": "geoscout.samplers",
        "model": "geoscout.models",
    }


_SPECS = {"geohash": "geohash:3", "grid": "grid:2", "h3": "h3:2", "quadtree": "quadtree:5:50", "cities": "cities:50"}


@pytest.mark.parametrize("name", ["admin1", "cities", "country", "geohash", "grid", "h3", "quadtree", "semantic"])
def test_partitions_follow_the_estimator_contract(name):
    from sklearn.base import clone

    from geoscout.cells import create_partition

    p = create_partition(_SPECS.get(name, name), fallback="nearest")
    params = p.get_params()
    assert params["fallback"] == "nearest"
    c = clone(p)
    assert type(c) is type(p) and c.get_params() == params and c is not p
    assert p.set_params(min_count=3) is p and p.get_params()["min_count"] == 3
    assert create_partition(_SPECS.get(name, name)).get_params()["fallback"] == "default"  # stored unchanged


@pytest.mark.parametrize("name", ["classifier", "contrastive", "geoclip", "hybrid", "knn", "multitask"])
def test_heads_follow_the_estimator_contract(name):
    from sklearn.base import clone

    from geoscout.heads import create_head

    h = create_head(name)
    c = clone(h)
    assert type(c) is type(h) and c.get_params() == h.get_params()
    first = next(iter(h.get_params()))
    assert h.set_params(**{first: h.get_params()[first]}) is h
    with pytest.raises(ValueError, match="no parameter"):
        h.set_params(no_such_parameter=1)


def test_the_layers_hold_and_no_module_imports_in_a_cycle():
    grimp = pytest.importorskip("grimp")
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    root = Path(__file__).resolve().parents[1]
    assert lint_imports(config_filename=str(root / "pyproject.toml"), no_cache=True, no_logo=True) == 0
    graph = grimp.build_graph("geoscout", cache_dir=None)
    modules = sorted(graph.modules)
    cyclic = [
        (a, b)
        for a in modules
        for b in graph.find_modules_directly_imported_by(a)
        if a != b and graph.chain_exists(importer=b, imported=a)
    ]
    assert cyclic == []


def test_l2_normalize_and_valid_latlon_are_the_one_copy():
    import numpy as np

    from geoscout.geo import l2_normalize, valid_latlon, validate_latlon

    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = l2_normalize(x)
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert np.allclose(l2_normalize(np.array([0.0, 2.0])), [0.0, 1.0])
    lat = np.array([0.0, 90.0, 90.5, np.nan, 10.0])
    lon = np.array([180.0, -180.0, 0.0, 0.0, 200.0])
    assert valid_latlon(lat, lon).tolist() == [True, True, False, False, False]
    assert valid_latlon(lat, lon, lon_limit=360.0).tolist() == [True, True, False, False, True]
    validate_latlon(lat[:2], lon[:2])
    with pytest.raises(GeoscoutError, match="index 2"):
        validate_latlon(lat, lon)
    src = SRC.parent
    copies = [p for p in src.rglob("*.py") if "np.linalg.norm(" in p.read_text() and p.name != "geo.py"]
    assert copies == [], copies


def test_one_esri_grid_reader_serves_the_aux_rasters_and_the_population_sampler(shared_geo):
    import numpy as np

    from geoscout.places.aux import _parse_esri_ascii, read_esri_ascii

    path = shared_geo / "gpw" / "gpw_v4_population_density_rev11_2020_1_deg.asc"
    values, header = read_esri_ascii(path)
    assert values.shape == (int(header["nrows"]), int(header["ncols"])) and values.dtype == np.float64
    assert np.isnan(values).any() and np.nanmax(values) > 1000  # sea is no-data; cities are dense
    grid = _parse_esri_ascii(path)
    assert grid.values.dtype == np.float32
    assert np.array_equal(np.isnan(grid.values), np.isnan(values))
    assert np.allclose(grid.values, values, equal_nan=True, rtol=1e-6)


def test_one_list_of_image_suffixes():
    from geoscout import _io, imageio, locator
    from geoscout.data import importers

    assert locator.IMAGE_SUFFIXES is _io.IMAGE_SUFFIXES is imageio.IMAGE_SUFFIXES is importers.IMAGE_EXTENSIONS
    assert {".jpg", ".heic", ".heif"} <= _io.IMAGE_SUFFIXES


def test_a_plugin_model_found_through_its_entry_point_is_loaded_and_listed(tmp_path, monkeypatch):
    """A package adds a model with one entry point in ``geoscout.models``: load_model, list_models and
    ``geoscout list models`` find it beside the built-in ones."""
    from typer.testing import CliRunner

    from geoscout.cli import app
    from geoscout.locator import MODELS, list_models, load_model

    _plugin(
        tmp_path,
        "geoscout.models",
        "lite-nearest",
        "geoscout_model_plugin:make",
        "geoscout_model_plugin",
        "from geoscout.locator import MODELS, RefineConfig\n"
        "from dataclasses import replace\n\n"
        "def make(arg=None, *, options):\n"
        "    '''geoscout-lite without refinement, under another name.'''\n"
        "    loc = MODELS.create('geoscout-lite', options=replace(options, refine=RefineConfig(method='none')))\n"
        "    loc.name = 'lite-nearest'\n"
        "    return loc\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(MODELS, "_factories", dict(MODELS._factories))
    monkeypatch.setattr(MODELS, "_help", dict(MODELS._help))
    monkeypatch.setattr(MODELS, "_loaded", False)
    models = list_models()
    assert {"geoscout-lite", "geoclip", "zeroshot:<backbone>", "lite-nearest"} <= set(models)
    assert models["lite-nearest"] == "geoscout-lite without refinement, under another name."
    listed = CliRunner().invoke(app, ["list", "models"])
    assert listed.exit_code == 0 and "lite-nearest" in listed.stdout and "zeroshot:<backbone>" in listed.stdout
    photo = Path(__import__("sklearn").__file__).parent / "datasets" / "images" / "china.jpg"
    plugin = load_model("lite-nearest")
    assert plugin.name == "lite-nearest" and plugin.refine_config.method == "none"
    base = load_model("geoscout-lite", refine="none")
    (a,), (b,) = plugin.locate([photo], top_k=3), base.locate([photo], top_k=3)
    assert [(c.lat, c.lon, c.probability) for c in a.candidates] == [
        (c.lat, c.lon, c.probability) for c in b.candidates
    ]
    with pytest.raises(UnknownName, match="did you mean 'lite-nearest'"):
        load_model("lite-nearst")
