"""`geoscout locate`: photos in, ranked places out."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ._app import app, fail
from ._options import Device, Precision, Runtime, Weights, check_runtime

if TYPE_CHECKING:
    from geoscout.types import Prediction


class CueMode(StrEnum):
    all = "all"
    text = "text"
    metadata = "metadata"
    none = "none"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    geojson = "geojson"


_FEW = 5  # up to this many photos need no progress bar


def _expand(inputs: list[Path], recursive: bool) -> list[Path]:
    from geoscout.locator import IMAGE_SUFFIXES

    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files = sorted(
                f
                for f in (p.rglob("*") if recursive else p.iterdir())
                # not only regular files: a pipe or a symlink loop named *.jpg is reported per photo, not skipped
                if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir()
            )
            if not files:
                raise fail(
                    f"{p}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                    "pass photos or a folder that holds some"
                )
            out.extend(files)
        else:
            out.append(p)  # missing files are reported per photo, not fatal
    return out


@app.command("locate")
def locate_command(
    photos: list[Path] = typer.Argument(None, help="Photos and/or folders of photos."),
    panorama: list[Path] = typer.Option(
        None, "--panorama", "-p", help="Views of ONE place (repeat: -p v1 -p v2 ...); fused into one answer."
    ),
    strip: bool = typer.Option(
        False, "--strip", help="Each photo is a panorama strip (views side by side): split and fuse it."
    ),
    model: str = typer.Option(
        "geoscout-lite",
        "--model",
        "-m",
        help="geoscout-lite (built in), geoclip, zeroshot:BACKBONE (e.g. zeroshot:hf:DIR), or a bundle folder.",
    ),
    places: str = typer.Option(
        None,
        "--places",
        help="Zero-shot places: countries (default), countries:HR,SI, admin1, admin1:HR, or a CSV/text file of places.",
    ),
    prompts: Path = typer.Option(
        None, "--prompts", help="Zero-shot prompt templates (TOML; copy geoscout/zeroshot/prompts.toml)."
    ),
    prior: str = typer.Option(
        None, "--prior", help="zeroshot: fuse the model with a zero-shot prior from its own CLIP backbone."
    ),
    prior_weight: float = typer.Option(1.0, "--prior-weight", min=0.0, help="Exponent of the zero-shot prior."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=1000, help="Candidates per photo."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format."),
    output: Path = typer.Option(None, "--output", "-o", help="Write results to this file instead of stdout."),
    map_path: list[Path] = typer.Option(
        None, "--map", help="Also draw a map: out.html, out.svg or out.png (repeatable)."
    ),
    refine: str = typer.Option(
        None, "--refine", help="Refinement: retrieval, protonet or none (default: the model's)."
    ),
    weights: Weights = None,
    runtime: Runtime = "auto",
    guess: str = typer.Option(
        None,
        "--guess",
        help="The answered point: expected-score (highest expected GeoGuessr score; the default), mode (most "
        "probable place) or median (least expected distance). Candidates stay ranked by probability.",
    ),
    tta: bool = typer.Option(
        False,
        "--tta",
        help="Embed each photo as the mean of itself and its mirror image (flip test-time augmentation: two "
        "forward passes; +3 % GeoGuessr on geoscout-lite's validation split, see benchmarks/RESULTS.md).",
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look for photos in sub-folders too."),
    example: bool = typer.Option(
        False,
        "--example",
        help="Locate a sample photo that ships with scikit-learn (a temple in China; CC-BY 2.0, danielbuechele on Flickr).",
    ),
    ray: str = typer.Option(
        None,
        "--ray",
        help="Locate the photos on Ray: auto, HOST:PORT / ray://HOST:10001, or local (needs geoscout[ray]; --panorama/--strip run here).",
    ),
    ray_workers: int = typer.Option(2, "--ray-workers", min=1, help="Ray actors, each loading the model once."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (shown on stderr for many photos)."),
    cues: CueMode = typer.Option(
        CueMode.all,
        "--cues",
        help="Evidence read besides the pixels' look: text on signs (script, language, place names, phone "
        "numbers, web domains, prices), EXIF metadata (GPS, UTC offset), all, or none.",
    ),
    ignore_metadata: bool = typer.Option(
        False, "--ignore-metadata", help="Ignore EXIF GPS and time-zone offsets (for evaluation)."
    ),
    device: Device = "cpu",
    precision: Precision = "auto",
) -> None:
    """Say where each photo was taken: top-k places with probabilities, names, an uncertainty radius."""
    photos = _check_options(photos, panorama, example, model, runtime, guess, prior, places, prompts, ray)
    if tta and ray:
        raise fail("--tta runs on this machine only; drop --ray or --tta")
    from geoscout.cues import CueReader
    from geoscout.errors import GeoscoutError

    reader = CueReader(cues.value, ignore_metadata=ignore_metadata)
    here = not ray or bool(panorama) or strip  # a locator is loaded here unless every photo goes to Ray
    # the model's options, here and on Ray
    shared: dict[str, Any] = {"weights": weights, "runtime": runtime, "refine": refine, "guess": guess}
    try:
        zeroshot: dict[str, Any] = {"places": places, "prompts": prompts, "prior": prior, "prior_weight": prior_weight}
        loc = (
            _load_locator(model, reader, device=device, precision=precision, tta=tta, **zeroshot, **shared)
            if here
            else None
        )
    except GeoscoutError as exc:
        raise fail(f"{model}: {exc}") from None
    preds = loc.locate([str(p) for p in panorama], top_k=top_k, panorama=True) if panorama and loc else []
    if photos:
        files = _expand(list(photos), recursive)
        # a bar on stderr (only in a terminal) once there are more than a few photos; stdout stays clean
        progress = None if not quiet and len(files) > _FEW else False
        if strip:
            assert loc is not None
            preds += _locate_strips(loc, files, top_k, progress)
        elif ray:
            from geoscout.distributed import locate_ray

            paths = [str(f) for f in files]
            preds += locate_ray(
                paths, model, address=ray, num_workers=ray_workers, top_k=top_k, progress=progress, **shared
            )
        else:
            assert loc is not None
            preds += loc.locate([str(f) for f in files], top_k=top_k, progress=progress)
    for note in reader.notes:
        typer.secho(note, fg="yellow", err=True)
    _write_out(preds, fmt, output, map_path or [])


def _check_options(
    photos: list[Path] | None,
    panorama: list[Path] | None,
    example: bool,
    model: str,
    runtime: str,
    guess: str | None,
    prior: str | None,
    places: str | None,
    prompts: Path | None,
    ray: str | None,
) -> list[Path]:
    """Refuse option combinations that cannot work (exit status 2); the photos to locate (``--example``'s added)."""
    check_runtime(runtime)
    if guess is not None and guess not in ("mode", "expected-score", "median"):
        raise fail(f"--guess {guess!r}: choose expected-score, mode or median")
    photos = [*list(photos or []), _example_photo()] if example else list(photos or [])
    if not photos and not panorama:
        raise fail("give at least one photo, a folder, or --panorama V1 --panorama V2 ...")
    if prior not in (None, "zeroshot"):
        raise fail(f"--prior {prior}: the only prior is zeroshot")
    if (places or prompts) and not (model.startswith("zeroshot:") or prior):
        raise fail("--places and --prompts apply to -m zeroshot:BACKBONE or --prior zeroshot")
    if ray and (places or prompts or prior):
        raise fail("--places, --prompts and --prior run here; drop --ray (or use -m zeroshot:BACKBONE alone)")
    return photos


def _load_locator(
    model: str,
    reader: Any,
    *,
    places: str | None,
    prompts: Path | None,
    prior: str | None,
    prior_weight: float,
    **options: Any,
) -> Any:
    """The model, with the zero-shot prior fused in when asked (``places`` and ``prompts`` apply to
    zero-shot models and the prior only)."""
    from geoscout.locator import load_model

    loc = load_model(model, cues=reader, places=places or "countries", prompts=prompts, **options)
    if prior:
        from geoscout.zeroshot import fuse_with_prior

        loc = fuse_with_prior(loc, places or "countries", prompts=prompts, weight=prior_weight)
    return loc


def _locate_strips(loc: Any, files: list[Path], top_k: int, progress: bool | None) -> list[Prediction]:
    """Each file a panorama strip: split into views, fused into one prediction named by the file."""
    from geoscout._progress import progress_bar
    from geoscout.errors import InvalidInput, failure_of
    from geoscout.locator import split_strip
    from geoscout.types import Prediction

    preds: list[Prediction] = []
    with progress_bar(len(files), f"locate {loc.name}", unit="strip", enabled=progress) as bar:
        for f in files:
            bar.update(1)
            try:
                views = split_strip(f)
            except InvalidInput as exc:
                preds.append(Prediction(image_id=str(f), error=failure_of(exc, source=str(f), image_id=str(f))))
                continue
            (pred,) = loc.locate(views, top_k=top_k, panorama=True, ids=[f"{f}#{i}" for i in range(len(views))])
            pred.image_id = str(f)
            if pred.error is not None:
                pred.error = pred.error.named(str(f))
            preds.append(pred)
    return preds


def _write_out(preds: list[Prediction], fmt: OutputFormat, output: Path | None, maps: list[Path]) -> None:
    """Maps, then the predictions (stdout or ``-o``), then the failures' count; exit status 1 when most inputs failed."""
    from geoscout.predictions import write_predictions

    for m in maps:
        _draw_map(preds, m)
    if output is not None and fmt is not OutputFormat.table:
        write_predictions(preds, output, format=fmt.value)
        typer.echo(f"wrote {len(preds)} predictions to {output}", err=True)
    elif fmt is OutputFormat.table:
        _print_table(preds)
        if output is not None:
            write_predictions(preds, output)
    else:
        sys.stdout.write(_render(preds, fmt))
    failed = sum(1 for p in preds if p.error)
    if failed:
        where = {
            OutputFormat.table: "each is listed above with its reason",
            OutputFormat.csv: "see the error column",
        }.get(fmt, "see each one's error field")
        typer.secho(f"{failed} of {len(preds)} inputs could not be read ({where})", fg="yellow", err=True)
        if 2 * failed > len(preds):  # most of the work failed: not a success, though the answers were written
            raise typer.Exit(1)


def _example_photo() -> Path:
    """scikit-learn's sample photo china.jpg (a temple in China), installed with geoscout's dependencies."""
    import importlib.util

    # find_spec locates the package without importing it (importing scikit-learn costs ~1 s of cold start)
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(roots[0] if roots else ".") / "datasets" / "images" / "china.jpg"
    if not path.is_file():
        raise fail(f"the example photo is missing ({path}); pass your own photo instead")
    typer.echo(f"example photo: {path} (CC-BY 2.0, danielbuechele on Flickr; taken in China)", err=True)
    return path


def _render(preds, fmt: OutputFormat) -> str:
    """What ``-o FILE`` would hold, for stdout: one writer per format (geoscout.predictions.WRITERS)."""
    from geoscout.predictions import format_predictions

    return format_predictions(preds, fmt.value)


def _print_table(preds) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for p in preds:
        if p.error:  # the reason alone when the failure names this photo (its message would repeat the name)
            msg = p.error.reason if p.error.source == p.image_id else p.error.message
            console.print(f"[bold]{escape(p.image_id)}[/bold]: [red]{escape(msg)}[/red]", highlight=False)
            continue
        title = f"{p.image_id}  (68% radius {p.radius_km:,.0f} km, expected score {p.expected_score:,.0f})"
        a = p.answer
        if p.guess is not None:
            where = ", ".join(x for x in (a.admin1, a.country_name or a.country) if x) or "at sea"
            title += f"\nanswer: {a.lat:.4f}, {a.lon:.4f} ({where})"
        t = Table(title=escape(title), title_justify="left")
        for col in ("#", "prob", "lat", "lon", "country", "region", "nearest city"):
            t.add_column(col, justify="right" if col in ("#", "prob", "lat", "lon") else "left")
        for rank, c in enumerate(p.candidates, 1):
            t.add_row(
                str(rank),
                f"{c.probability:.1%}",
                f"{c.lat:.4f}",
                f"{c.lon:.4f}",
                c.country_name or c.country or "(sea)",
                c.admin1 or "",
                c.city or "",
            )
        console.print(t)
        if p.cues:
            console.print("cues: " + escape("; ".join(c.summary() for c in p.cues)), highlight=False)


def _draw_map(preds, path: Path) -> None:
    from geoscout import maps

    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        maps.prediction_map_html(preds, path)
    elif suffix == ".svg":
        from geoscout._io import atomic_write_text

        ok = [p for p in preds if p.ok]
        if not ok:
            raise fail("no prediction to draw on the map")
        atomic_write_text(path, maps.prediction_map_svg(ok[0]))
    elif suffix == ".png":
        maps.prediction_map_png(preds, path)
    else:
        raise fail(f"--map {path}: use a .html, .svg or .png file name")
    typer.echo(f"map written to {path}", err=True)
