"""Evidence -> likelihood over countries, from tables that ship in installed packages.

- script and language: CLDR territory-language populations (``babel``): the share of a
  country's people who use a language (``population_percent``), and each language's usual
  script (CLDR likely subtags: ``sr`` -> Cyrillic, ``sr_Latn`` -> Latin);
- calling codes: ``phonenumbers`` (``+385`` -> HR; ``+1`` -> US, CA and 23 more);
- currencies: CLDR territory currencies in use today (``babel``);
- web domains: ISO 3166 codes as ccTLDs (``.uk`` -> GB), minus the ones sold as generic names.

Every likelihood is ``P(cue | country)`` up to a constant, floored at :data:`FLOOR` so that no
country is ruled out by one reading: only ratios between countries matter. How often a cue says
nothing about the place (Latin letters on a brand, Chinese on a restaurant abroad, a misread) is
not in these tables: the fusion mixes each table with a uniform component by an error rate
fitted on validation data (:mod:`geoscout.cues.fusion`).
"""

from __future__ import annotations

import functools

__all__ = [
    "GENERIC_TLDS",
    "LANGUAGE_FLOOR",
    "calling_code_likelihood",
    "countries",
    "currency_likelihood",
    "language_likelihood",
    "script_likelihood",
    "tld_likelihood",
]

#: floor of every country likelihood: the chance of seeing the cue in a country where nobody uses it
FLOOR = 0.02
#: English is everybody's second language on signs: a high floor (a judgement: language cues are too rare in
#: the validation data to fit one rate per language; the kind's fitted error rate comes on top)
LANGUAGE_FLOOR = {"en": 0.2}
#: ccTLDs marketed as generic names; they say nothing about the country
GENERIC_TLDS = frozenset({"io", "co", "tv", "me", "ai", "fm", "ly", "to", "cc", "ws", "gg", "am", "nu", "tk", "ag"})
_TLD_ALIASES = {"uk": "GB"}


@functools.cache
def countries() -> tuple[str, ...]:
    """ISO 3166-1 alpha-2 codes of the countries CLDR has population data for (sorted)."""
    from babel.core import get_global

    return tuple(sorted(c for c in get_global("territory_languages") if len(c) == 2 and c.isalpha()))


@functools.cache
def _script_of(lang: str) -> str:
    """CLDR's usual script for a language tag (``sr_Latn`` -> Latn, ``ru`` -> Cyrl); '' when unknown."""
    from babel.core import get_global

    parts = lang.split("_")
    if len(parts) > 1 and len(parts[1]) == 4:
        return parts[1]
    likely = get_global("likely_subtags").get(parts[0], "")
    for p in likely.split("_")[1:]:
        if len(p) == 4:
            return p
    return ""


@functools.cache
def _shares() -> dict[str, dict[str, float]]:
    """``{country: {language tag: share of the population in [0, 1]}}`` from CLDR."""
    from babel.core import get_global

    out: dict[str, dict[str, float]] = {}
    for cc, langs in get_global("territory_languages").items():
        if cc in countries():
            out[cc] = {lang: min(1.0, float(v.get("population_percent") or 0.0) / 100.0) for lang, v in langs.items()}
    return out


def _floored(values: dict[str, float], floor: float) -> dict[str, float]:
    return {cc: floor + (1.0 - floor) * min(1.0, v) for cc, v in values.items()}


@functools.cache
def script_likelihood(script: str) -> dict[str, float]:
    """``P(text in script | country)``: the share of people whose language is written in ``script``.

    ``script`` is an ISO 15924 code (``Cyrl``, ``Grek``, ``Hani``...). Han also counts Japanese
    (kanji); Hangul counts Korean; kana counts Japanese.
    """
    wanted = {"Hani": {"Hani", "Hans", "Hant", "Jpan"}, "Kana": {"Jpan"}, "Hang": {"Kore", "Hang"}}.get(
        script, {script}
    )
    vals = {}
    for cc, langs in _shares().items():
        vals[cc] = max((s for lang, s in langs.items() if _script_of(lang) in wanted), default=0.0)
    return _floored(vals, FLOOR)


@functools.cache
def language_likelihood(lang: str) -> dict[str, float]:
    """``P(text in language | country)``: the CLDR share of the country's people speaking ``lang``."""
    vals = {}
    for cc, langs in _shares().items():
        vals[cc] = max((s for tag, s in langs.items() if tag.split("_")[0] == lang), default=0.0)
    return _floored(vals, LANGUAGE_FLOOR.get(lang, FLOOR))


@functools.cache
def calling_code_likelihood(code: int) -> dict[str, float]:
    """``P(phone number with +code | country)``: 1 for the regions sharing the code, the floor elsewhere."""
    import phonenumbers

    regions = set(phonenumbers.region_codes_for_country_code(int(code)))
    return {cc: 1.0 if cc in regions else FLOOR for cc in countries()}


@functools.cache
def currency_likelihood(currency: str) -> dict[str, float]:
    """``P(price in currency | country)``: 1 where the ISO 4217 ``currency`` is legal tender today."""
    from babel.numbers import get_territory_currencies

    vals = {}
    for cc in countries():
        try:
            vals[cc] = 1.0 if currency in get_territory_currencies(cc) else 0.0
        except Exception:  # babel raises for territories without currency data
            vals[cc] = 0.0
    return _floored(vals, 0.05)


def tld_country(tld: str) -> str | None:
    """The country of a two-letter top-level domain (``uk`` -> GB), None for generic or unknown ones."""
    tld = tld.lower()
    if len(tld) != 2 or tld in GENERIC_TLDS:
        return None
    cc = _TLD_ALIASES.get(tld, tld.upper())
    return cc if cc in countries() else None


@functools.cache
def tld_likelihood(tld: str) -> dict[str, float]:
    """``P(web address ending .tld | country)``: 1 for the domain's country, the floor elsewhere."""
    cc = tld_country(tld)
    return {c: 1.0 if c == cc else 0.05 for c in countries()}
