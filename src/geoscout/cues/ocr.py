"""Read the text in a photo: detect lines, recognise them, drop watermarks and overlays.

Readers, best available first, none required:

- ``rapidocr-onnxruntime`` (Apache-2.0): PP-OCRv4 detection + recognition ONNX models inside
  the wheel (Latin letters, digits, Chinese/Japanese Han). On a photo larger than :data:`GATE_SIDE`
  pixels a gate runs the detector first on a copy of that size: where its text probability reaches
  :data:`GATE_THRESH` nowhere (most photos), reading stops there. Otherwise detection runs on a copy
  downscaled to :data:`DETECT_SIDE` pixels, recognition only on the detected boxes, cropped from the
  full photo. (The detector misses small text on a smaller copy: ``benchmarks/ocr_gate.py`` measures
  what the gate loses.) A view of at most :data:`GATE_SIDE` pixels (a 640 px Street View view) is
  detected whole, and its boxes are recognised only where its detection map holds text outside the
  :data:`OVERLAY_ZONES` (the bottom corners, where providers and cameras put watermarks, credits and
  date stamps): a Street View view whose only text is the "Google" logo costs its detection alone.
- Debian's ``tesseract`` (with its script packs), run once per photo on a mosaic of the detected
  boxes, re-reads lines in scripts the bundled recogniser cannot read (Cyrillic, Greek, Arabic,
  Hebrew, Thai, Devanagari, Hangul): a box whose Tesseract reading is mostly such letters takes it.

With no reader installed :func:`read_text` returns nothing and :func:`ocr_status` says why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DETECT_SIDE",
    "GATE_SIDE",
    "GATE_THRESH",
    "OVERLAY_ZONES",
    "VIEW_GATE_THRESH",
    "TextLine",
    "gate_map",
    "gate_open",
    "gate_passes",
    "in_zone",
    "is_overlay",
    "ocr_status",
    "rapidocr_installed",
    "read_text",
    "warm_up",
]

#: longest side (pixels) of the copy text detection runs on
DETECT_SIDE = 1024
#: longest side (pixels) of the copy the gate runs the detector on for photos larger than it
GATE_SIDE = 640
#: text probability somewhere in the gate's map that opens it (the detector's own pixel threshold is 0.3)
GATE_THRESH = 0.002
#: fewest pixels of the gate's map at GATE_THRESH or more that open it
GATE_MIN_AREA = 1
#: text probability on a view's own detection map (views of at most GATE_SIDE px) that, outside the OVERLAY_ZONES,
#: lets its lines be recognised (the detector's own pixel threshold is 0.3)
VIEW_GATE_THRESH = 0.1
#: fewest pixels of such a region
VIEW_GATE_MIN_AREA = 4
#: where watermarks, credits and date stamps sit, as fractions ``(x0, y0, x1, y1)`` of the frame: the bottom
#: corners. A gate region lying entirely inside one opens no gate (the text there is a provider's logo or a
#: photographer's credit); a region reaching outside counts.
OVERLAY_ZONES: tuple[tuple[float, float, float, float], ...] = ((0.0, 0.85, 0.3, 1.0), (0.7, 0.85, 1.0, 1.0))
#: lowest recognition score kept
MIN_SCORE = 0.6
#: Tesseract language packs used for re-reading (those installed are used)
TESSERACT_LANGS = ("eng", "rus", "ell", "ara", "heb", "tha", "hin", "kor")
#: lowest mean Tesseract word confidence for its re-reading to replace the bundled recogniser's
TESSERACT_MIN_CONF = 0.75
#: a re-reading must hold a word of at least this many letters of its script (noise reads as "ต ว", "ΤΗ")
TESSERACT_MIN_WORD = 3
#: the Tesseract run may take this long per photo before it is abandoned
TESSERACT_TIMEOUT_S = 20.0
_DEBUG_DIR = os.environ.get("GEOSCOUT_OCR_DEBUG")
_NON_LATIN_SCRIPTS = {"Cyrl", "Grek", "Arab", "Hebr", "Thai", "Deva", "Hang"}


@dataclass(frozen=True)
class TextLine:
    """One line of text: what was read, its ``[x0, y0, x1, y1]`` box in pixels, score in [0, 1], engine."""

    text: str
    box: tuple[float, float, float, float]
    score: float
    engine: str = "rapidocr"


# --------------------------------------------------------------------------- watermark / overlay filter
_OVERLAY_PATTERNS = [
    r"©",
    r"\(c\)\s*\d{4}",
    r"\bgoogle\b",
    r"^(g[o0]{1,2}g?([l1]e?)?|[o0]{1,2}g[l1]e)$",  # a Google logo cut by the frame: "Goog", "oogle"
    # game UI in screenshots: "Your guess was 54 km from the correct location", "1,649 points"
    r"\byou'?r?\s*guess",
    r"^\W*[\d,.oO]+\s*points?\W*$",
    r"mapillary",
    r"street\s*view",
    r"openstreetmap",
    r"\bbing\b",
    r"yandex",
    r"maxar",
    r"copyright",
    r"all rights reserved",
    r"shutterstock",
    r"getty\s*images",
    r"istock",
    r"flickr",
    r"photo(graph)?\s*(by|:)",
    r"image capture",
    r"imagery",
    r"report a problem",
    r"\bterms\b",
    r"\bprivacy\b",
    r"\bsearch\b",
    r"\bmenu\b",
    # camera date stamps and clocks: 12/05/2019, 2019-05-12, '05 12 2008, 12:34
    r"^\W*\d{1,4}\s*[-/.' ]\s*\d{1,2}\s*[-/.' ]\s*\d{2,4}\W*$",
    r"^\W*\d{1,2}:\d{2}(:\d{2})?\W*$",
    r"^\W*(19|20)\d{2}\W*$",
]
_OVERLAY = re.compile("|".join(f"(?:{p})" for p in _OVERLAY_PATTERNS), re.IGNORECASE)


def is_overlay(text: str) -> bool:
    """True for provider watermarks and overlays that say nothing about the place.

    Google / Mapillary / Bing / stock-photo credits, ``©`` lines, camera date stamps and
    clocks, map-viewer UI words, and strings with fewer than two letters or digits.
    """
    t = text.strip()
    if sum(ch.isalnum() for ch in t) < 2:
        return True
    return _OVERLAY.search(t) is not None or _is_google_logo_piece(t)


#: how the recogniser misreads the Google logo's letters: "Gooq", "@Goog" (© read as @), "Goog1e"
_LOGO_CONFUSIONS = str.maketrans({"q": "g", "0": "o", "1": "l", "i": "l"})


def _is_google_logo_piece(text: str) -> bool:
    """Whether ``text`` is a piece of the Google logo (at least 3 letters of "google", in order), as
    the recogniser reads it: ``q`` for ``g``, ``0`` for ``o``, ``1``/``i`` for ``l``, ``@`` for ``©``."""
    t = re.sub(r"^(?:[©@]|\(c\))\s*", "", text.strip().lower()).translate(_LOGO_CONFUSIONS)
    return 3 <= len(t) <= 6 and t.isalpha() and t in "google"


# --------------------------------------------------------------------------- readers
_lock = threading.Lock()


class _Engine:
    """RapidOCR's PP-OCRv4 pieces: the detector at once, the recogniser on the first photo with text.

    A photo without text (most of them) never loads the 11 MB recognition model, and the angle
    classifier, which :func:`read_text` does not use, is never built: a cold ``locate`` saves ~0.3 s.
    """

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
        from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
        from rapidocr_onnxruntime.utils import UpdateParameters, read_yaml, update_model_path

        # limit_type "min" with a tiny side: the detector never upscales what we hand it
        self.config = UpdateParameters()(
            update_model_path(read_yaml(DEFAULT_CFG_PATH)),
            use_cls=False,
            det_limit_type="min",
            det_limit_side_len=32,
            intra_op_num_threads=2,
        )
        with _no_spinning():
            self.text_det = TextDetector(self.config["Det"])
        self.sorted_boxes = RapidOCR.sorted_boxes
        self._crops = RapidOCR.get_crop_img_list
        self._rec: Any = None

    def det_input(self, bgr: np.ndarray) -> np.ndarray:
        """The detector's input tensor for ``bgr`` at its own size (rounded to multiples of 32)."""
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

        return DetPreProcess(32, "min", self.text_det.mean, self.text_det.std)(bgr)

    def get_crop_img_list(self, img: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        return self._crops(self, img, boxes)

    def text_rec(self, crops: list[np.ndarray]) -> Any:
        if self._rec is None:
            from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer

            with _no_spinning():
                self._rec = TextRecognizer(self.config["Rec"])
        return self._rec(crops)


@contextlib.contextmanager
def _no_spinning() -> Iterator[None]:
    """RapidOCR sessions built meanwhile do not spin-wait their threads: reading runs beside the backbone on
    the same cores, and spinning threads slow both (measured on 30 places: ``locate`` with cues 5.3x -> 4.1x
    the visual path, median)."""
    from rapidocr_onnxruntime.utils import infer_engine

    cls = infer_engine.OrtInferSession
    build = cls.__dict__["_init_sess_opts"]

    def options(config: dict[str, Any]) -> Any:
        opts = build.__func__(config)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    with _session_lock:
        cls._init_sess_opts = staticmethod(options)
        try:
            yield
        finally:
            cls._init_sess_opts = build


_session_lock = threading.Lock()


def _build_engine() -> Any:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return None
    import logging

    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return _Engine()


_engine: list[Future[Any]] = []  # the one build, started by warm_up()
_engine_lock = threading.Lock()


def warm_up() -> None:
    """Start building the OCR engine in a background thread, once per process (a ``CueReader`` that reads text
    calls it, so a cold ``locate`` builds the engine while the model loads rather than after)."""
    with _engine_lock:
        if _engine:
            return
        fut: Future[Any] = Future()
        _engine.append(fut)

    def build() -> None:
        try:
            fut.set_result(_build_engine())
        except BaseException as exc:  # handed to whoever waits for the engine
            fut.set_exception(exc)

    threading.Thread(target=build, name="geoscout-ocr-init").start()


def _rapidocr() -> Any:
    """The PP-OCRv4 engine (built once per process), or None when the package is missing."""
    warm_up()
    return _engine[0].result()


@functools.cache
def rapidocr_installed() -> bool:
    """Whether the bundled-model OCR reader is installed (found without importing it)."""
    import importlib.util

    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


@functools.cache
def _tesseract_langs() -> tuple[str, str] | None:
    """(path to tesseract, "+"-joined installed language packs) or None when Tesseract is missing."""
    exe = shutil.which("tesseract")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    have = set(out.stdout.split())
    langs = [lang for lang in TESSERACT_LANGS if lang in have]
    if len(langs) < 2:  # eng alone reads nothing the bundled recogniser cannot
        return None
    return exe, "+".join(langs)


def ocr_status() -> dict[str, str | None]:
    """Which readers are usable: ``{"rapidocr": version or None, "tesseract": languages or None}``."""
    try:
        from importlib.metadata import version

        rv: str | None = version("rapidocr-onnxruntime")
    except Exception:
        rv = None
    tess = _tesseract_langs()
    return {"rapidocr": rv, "tesseract": tess[1] if tess else None}


def read_text(image: Any, *, tesseract: bool = True) -> list[TextLine]:
    """Lines of text in an upright RGB Pillow ``image``, watermarks and overlays removed.

    Empty when no text is found or no reader is installed (see :func:`ocr_status`).
    """
    engine = _rapidocr()
    if engine is None:
        return []
    rgb = np.asarray(image.convert("RGB"))[:, :, ::-1]  # the engine wants BGR (OpenCV order)
    h, w = rgb.shape[:2]
    if min(h, w) < 16:
        return []
    with _lock:  # one ONNX session per process; concurrent calls queue
        if max(h, w) > GATE_SIDE and not gate_open(rgb):
            return []  # the gate saw no text: most photos stop here
        quads = _detect(engine, rgb)  # a smaller view whose only text is in the overlay zones stops here
        if not quads:
            return []
        crops = engine.get_crop_img_list(rgb, quads)
        rec, _ = engine.text_rec(crops)
    lines = []
    for quad, crop, (text, score) in zip(quads, crops, rec):
        x0, y0 = quad.min(axis=0)
        x1, y1 = quad.max(axis=0)
        lines.append((TextLine(str(text).strip(), (float(x0), float(y0), float(x1), float(y1)), float(score)), crop))
    if tesseract and _tesseract_langs() is not None:
        unsure = [i for i, (ln, _) in enumerate(lines) if _may_be_other_script(ln)]
        if unsure:  # most photos: none, and Tesseract (half the reading time) is not run
            for i, reread in zip(unsure, _reread_with_tesseract([lines[i] for i in unsure])):
                lines[i] = reread
    return [ln for ln, _ in lines if ln.score >= MIN_SCORE and not is_overlay(ln.text)]


def gate_open(bgr: np.ndarray) -> bool:
    """The gate's verdict on a BGR photo: whether text may be there (False: reading stops).

    A photo larger than :data:`GATE_SIDE` is gated on a :data:`GATE_SIDE` copy (cheaper than its detection); a
    smaller view (a 640 px Street View view) on its own detection map, where every region of text lying inside
    the :data:`OVERLAY_ZONES` (the "Google" logo, a photographer's credit) is ignored: a view whose only text is
    there is never recognised. :func:`read_text` runs the same rule."""
    if max(bgr.shape[:2]) > GATE_SIDE:
        return gate_passes(gate_map(bgr), thresh=GATE_THRESH, min_area=GATE_MIN_AREA, zones=OVERLAY_ZONES)
    return view_gate_passes(_detect_map(_rapidocr(), bgr)[0][0, 0])


def view_gate_passes(prob: np.ndarray) -> bool:
    """The small-view gate on a view's own detection map: text outside the :data:`OVERLAY_ZONES`."""
    return gate_passes(prob, thresh=VIEW_GATE_THRESH, min_area=VIEW_GATE_MIN_AREA, zones=OVERLAY_ZONES)


def gate_map(bgr: np.ndarray, side: int | None = None) -> np.ndarray:
    """The detector's text probability map (float32 in [0, 1]) of a copy of the BGR photo whose longest
    side is ``side`` pixels (default :data:`GATE_SIDE`; never upscaled). The map's size is that copy's, rounded
    to multiples of 32: it covers the whole frame, so a fraction of the map is the same fraction of the photo."""
    engine = _rapidocr()
    h, w = bgr.shape[:2]
    small = _resize(bgr, min(1.0, (side or GATE_SIDE) / max(h, w)))
    x = engine.det_input(small)
    return np.asarray(engine.text_det.infer(x)[0][0, 0], dtype=np.float32)


def gate_passes(
    prob: np.ndarray,
    *,
    thresh: float = GATE_THRESH,
    min_area: int = GATE_MIN_AREA,
    zones: tuple[tuple[float, float, float, float], ...] = (),
) -> bool:
    """Whether the gate's map ``prob`` holds a region (8-connected pixels at probability ``>= thresh``) of at
    least ``min_area`` pixels that does not lie entirely inside one of the ``zones`` (``(x0, y0, x1, y1)``
    fractions of the map)."""
    import cv2

    mask = (prob >= thresh).astype(np.uint8)
    if min_area <= 1 and not zones:
        return bool(mask.any())
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h, w = prob.shape[:2]
    for x, y, bw, bh, area in stats[1:]:
        if area < min_area:
            continue
        if not any(in_zone((x / w, y / h, (x + bw) / w, (y + bh) / h), z) for z in zones):
            return True
    return False


def in_zone(box: tuple[float, float, float, float], zone: tuple[float, float, float, float]) -> bool:
    """Whether ``box`` lies entirely inside ``zone`` (both ``(x0, y0, x1, y1)``, the same units)."""
    return zone[0] <= box[0] and zone[1] <= box[1] and box[2] <= zone[2] and box[3] <= zone[3]


def _detect(engine: Any, bgr: np.ndarray) -> list[np.ndarray]:
    """Text quads (full-photo pixels) found on the :data:`DETECT_SIDE` copy; none on a view of at most
    :data:`GATE_SIDE` pixels whose only text lies in the :data:`OVERLAY_ZONES` (see :func:`gate_open`)."""
    pred, small, scale = _detect_map(engine, bgr)
    if max(bgr.shape[:2]) <= GATE_SIDE and not view_gate_passes(pred[0, 0]):
        return []
    det = engine.text_det  # what ``det(small)`` does after its inference: the boxes of the map
    boxes, _ = det.postprocess_op(pred, small.shape[:2])
    boxes = det.filter_tag_det_res(boxes, small.shape[:2])
    if boxes is None or len(boxes) == 0:
        return []
    return [np.asarray(b, dtype=np.float32) / scale for b in engine.sorted_boxes(boxes)]


def _detect_map(engine: Any, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The detector's output (1, 1, h, w) on the :data:`DETECT_SIDE` copy, that copy and its scale."""
    h, w = bgr.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = bgr if scale == 1.0 else _resize(bgr, scale)
    return np.asarray(engine.text_det.infer(engine.det_input(small))[0]), small, scale


def _resize(bgr: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = bgr.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(bgr)).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
    )
    return np.asarray(im)


#: Latin capitals (and small letters) that Cyrillic and Greek letters look like: "MOCKBA" is "МОСКВА" read as Latin
_LOOKALIKE = frozenset("ABCEHKMOPTXYaceopxy")
#: below this score a line of the bundled recogniser may be another script it read as Latin letters
REREAD_BELOW_SCORE = 0.8


def _may_be_other_script(line: TextLine) -> bool:
    """Whether the bundled recogniser's ``line`` may be a script it cannot read (worth Tesseract's re-reading).

    Cyrillic, Greek, Arabic or Hebrew come out of it as unsure scores, letters outside Latin, case flipping
    inside a word ("py>K6a", "AoHNA"), digits inside a word ("Mara3H") or capitals that all have a Cyrillic
    twin ("MOCKBA"); a confident plain Latin line ("Zagreb 12 km") and a watermark are not re-read.
    """
    import unicodedata

    text = line.text.strip()
    if is_overlay(text):
        return False
    if line.score < REREAD_BELOW_SCORE:
        return True
    if any(ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN") for ch in text):
        return True
    for word in text.split():
        letters = [ch for ch in word if ch.isalpha()]
        if len(letters) < 2:
            continue
        if re.search(
            r"[a-z][A-Z]|[A-Za-z][^\w\s.,'&:/-]*\d+[^\w\s.,'&:/-]*[A-Za-z]|[A-Za-z][^\w\s.,'&:/-][A-Za-z]", word
        ):
            return True
        if len(letters) >= 3 and word.isupper() and all(ch in _LOOKALIKE for ch in letters):
            return True
    return False


def _is_word_in_script(text: str) -> bool:
    """True when ``text`` is mostly a script the bundled recogniser cannot read and holds a word of at
    least :data:`TESSERACT_MIN_WORD` letters of it (vowel signs count with their letter): Tesseract's
    script packs read textures and Latin letters as scattered Thai, Greek or Arabic letters."""
    import unicodedata

    from .text import _char_script, dominant_script

    script = dominant_script(text)
    if script not in _NON_LATIN_SCRIPTS:
        return False
    longest = run = 0
    for ch in text:
        if _char_script(ch) == script:
            run += 1
        elif not (run and unicodedata.category(ch).startswith("M")):
            run = 0
        longest = max(longest, run)
    return longest >= TESSERACT_MIN_WORD


def _reread_with_tesseract(lines: list[tuple[TextLine, np.ndarray]]) -> list[tuple[TextLine, np.ndarray]]:
    """Re-read every box with Tesseract in one call on a mosaic; keep its reading where it is a non-Latin script."""
    from PIL import Image

    tess = _tesseract_langs()
    assert tess is not None
    exe, langs = tess
    height = 48
    rows: list[tuple[Any, int]] = []
    spans: list[tuple[int, int] | None] = []
    y = 16
    for _, crop in lines[:24]:
        ch, cw = crop.shape[:2]
        if ch < 4 or cw < 4:
            spans.append(None)
            continue
        ww = max(8, min(1600, round(cw * height / ch)))
        gray = np.asarray(Image.fromarray(np.ascontiguousarray(crop[:, :, ::-1])).convert("L"), dtype=np.float32)
        if np.median(gray) < 0.5 * (float(gray.min()) + float(gray.max())):
            gray = 255.0 - gray  # light letters on a dark sign: Tesseract wants dark on light
        lo, hi = np.percentile(gray, (2, 98))
        gray = np.clip((gray - lo) * 255.0 / max(hi - lo, 1.0), 0, 255)
        rows.append((Image.fromarray(gray.astype(np.uint8), "L").resize((ww, height)), y))
        spans.append((y, y + height))
        y += height + 24
    if not rows:
        return lines
    mosaic = Image.new("L", (max(r.size[0] for r, _ in rows) + 32, y), 255)
    for r, yy in rows:
        mosaic.paste(r, (16, yy))
    with tempfile.TemporaryDirectory(prefix="geoscout-ocr-") as tmp:
        src = Path(tmp) / "lines.png"
        mosaic.save(src)
        if _DEBUG_DIR:
            mosaic.save(Path(_DEBUG_DIR) / "mosaic.png")
        try:
            out = subprocess.run(
                [exe, str(src), "-", "-l", langs, "--psm", "4", "tsv"],
                capture_output=True,
                text=True,
                timeout=TESSERACT_TIMEOUT_S,
                check=False,
                env={**os.environ, "OMP_THREAD_LIMIT": "1"},  # one thread: the backbone runs beside it
            )
        except (OSError, subprocess.SubprocessError):
            return lines
    words: list[list[tuple[str, float]]] = [[] for _ in spans]
    for row in out.stdout.splitlines()[1:]:
        f = row.split("\t")
        if len(f) < 12 or not f[11].strip():
            continue
        try:
            top, hh, conf = int(f[7]), int(f[9]), float(f[10])
        except ValueError:
            continue
        mid = top + hh / 2
        for k, span in enumerate(spans):
            if span is not None and span[0] - 12 <= mid <= span[1] + 12:
                words[k].append((f[11].strip(), conf))
                break
    out_lines = []
    for (line, crop), ws in zip(lines, words + [[]] * (len(lines) - len(words))):
        text = " ".join(w for w, _ in ws)
        conf = float(np.mean([c for _, c in ws])) / 100.0 if ws else 0.0
        if ws and conf >= TESSERACT_MIN_CONF and _is_word_in_script(text):
            line = TextLine(text, line.box, conf, "tesseract")
        out_lines.append((line, crop))
    return out_lines
