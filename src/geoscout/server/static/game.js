"use strict";
// geoscout play mode: guess where a photo was taken on an offline SVG world map, against the model.
const W = 1000, H = 500;
const $ = (id) => document.getElementById(id);
const proj = (lat, lon) => [((lon + 180) / 360) * W, ((90 - lat) / 180) * H];
const unproj = (x, y) => [90 - (y / H) * 180, (x / W) * 360 - 180];
let world = null, game = null, guess = null, shown = null;

function ringPath(ring) {
  let d = "", prev = null;
  for (const [lon, lat] of ring) {
    const [x, y] = proj(lat, lon);
    d += (prev === null || Math.abs(lon - prev) > 180 ? "M" : "L") + x.toFixed(1) + "," + y.toFixed(1);
    prev = lon;
  }
  return d + "Z";
}

function geomPath(g) {
  const polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
  return polys.map((p) => p.map(ringPath).join("")).join("");
}

function el(tag, attrs = {}, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function dot(svg, cls, lat, lon, title) {
  const [x, y] = proj(lat, lon);
  const c = el("circle", { class: cls, cx: x, cy: y, r: cls === "truth" ? 10 : 6 });  // the truth: a ring around guesses
  c.appendChild(el("title", {}, title));
  svg.appendChild(c);
}

function line(svg, a, b) {
  const [x1, y1] = proj(a.lat, a.lon), [x2, y2] = proj(b.lat, b.lon);
  svg.appendChild(el("line", { class: "to-truth", x1, y1, x2, y2 }));
}

function drawMap() {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "World map" });
  svg.appendChild(el("rect", { x: 0, y: 0, width: W, height: H, fill: "transparent" }));
  if (world) {
    const g = el("g");
    for (const f of world.features) g.appendChild(el("path", { class: "country", d: geomPath(f.geometry) }));
    svg.appendChild(g);
  }
  if (shown) {  // a played round: truth, the player's and the model's guesses
    const t = shown.truth;
    if (shown.player) line(svg, shown.player, t);
    line(svg, shown.model, t);
    if (shown.player) dot(svg, "guess", shown.player.lat, shown.player.lon, "your guess");
    dot(svg, "model", shown.model.lat, shown.model.lon, "the model's guess");
    dot(svg, "truth", t.lat, t.lon, "the true place");
  } else if (guess) {
    dot(svg, "guess", guess.lat, guess.lon, "your guess");
  }
  svg.addEventListener("click", (e) => {
    if (shown || !game || game.finished) return;
    const pt = svg.createSVGPoint();
    pt.x = e.clientX; pt.y = e.clientY;
    const p = pt.matrixTransform(svg.getScreenCTM().inverse());
    const [lat, lon] = unproj(p.x, p.y);
    setGuess(Math.max(-90, Math.min(90, lat)), Math.max(-180, Math.min(180, lon)));
  });
  $("game-map").replaceChildren(svg);
}

function setGuess(lat, lon) {
  guess = { lat, lon };
  $("guess-lat").value = lat.toFixed(4);
  $("guess-lon").value = lon.toFixed(4);
  $("guess").disabled = false;
  drawMap();
}

const fmt = (x) => Math.round(x).toLocaleString("en");

function placeName(t) {
  return [t.city, t.admin1, t.country_name || t.country].filter(Boolean).join(", ") || "open sea";
}

async function api(method, url, body) {
  const res = await fetch(url, { method, headers: body ? { "Content-Type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
  return data;
}

function showRound() {
  shown = null; guess = null;
  $("guess-lat").value = ""; $("guess-lon").value = "";
  $("guess").disabled = true; $("guess").hidden = false; $("next").hidden = true; $("again").hidden = true;
  $("round-result").replaceChildren();
  $("photo").src = game.photo_url;
  $("game-status").textContent = `Round ${game.round} of ${game.rounds}: click where you think this photo was taken.`;
  drawMap();
}

function showScores() {
  const body = document.querySelector("#scores tbody");
  body.replaceChildren();
  for (const r of game.results) {
    const tr = body.insertRow();
    tr.className = "round-row";
    const cells = [String(r.round), placeName(r.truth), r.player ? fmt(r.player.score) : "—", fmt(r.model.score)];
    cells.forEach((v, j) => { const td = tr.insertCell(); td.textContent = v; if (j !== 1) td.className = "num"; });
  }
  $("total-player").textContent = fmt(game.total.player);
  $("total-model").textContent = fmt(game.total.model);
}

async function submitGuess(e) {
  e.preventDefault();
  const lat = parseFloat($("guess-lat").value), lon = parseFloat($("guess-lon").value);
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return;
  $("guess").disabled = true;
  $("game-status").textContent = "Scoring your guess; the model is guessing too…";
  try {
    const data = await api("POST", `/v1/game/${game.game_id}/guess`, { lat, lon, round: game.round });
    const r = data.result;
    game = data; shown = r;
    drawMap(); showScores();
    const p = document.createElement("p");
    p.id = "round-summary";
    p.textContent = `It was ${placeName(r.truth)}. You: ${fmt(r.player.distance_km)} km away, ${fmt(r.player.score)} points. ` +
      `The model: ${fmt(r.model.distance_km)} km away, ${fmt(r.model.score)} points.`;
    const legend = document.createElement("p");
    legend.className = "legend";
    for (const [cls, label] of [["truth", "truth"], ["you", "you"], ["model", "model"]]) {
      const dotEl = document.createElement("span");
      dotEl.className = `key ${cls}`;
      legend.append(dotEl, label);
    }
    $("round-result").replaceChildren(p, legend);
    $("guess").hidden = true;
    if (game.finished) {
      $("game-status").textContent = `Game over: you scored ${fmt(game.total.player)}, the model ${fmt(game.total.model)} (of ${fmt(game.max_total)}).`;
      $("again").hidden = false;
    } else {
      $("game-status").textContent = `Round ${r.round} of ${game.rounds} done.`;
      $("next").hidden = false;
      $("next").focus();
    }
  } catch (err) {
    $("game-status").textContent = `Error: ${err.message}`;
    $("guess").disabled = false;
  }
}

async function newGame() {
  try {
    const seed = new URLSearchParams(location.search).get("seed");
    game = await api("POST", "/v1/game", seed !== null ? { seed: parseInt(seed, 10) } : {});
    showScores(); showRound();
  } catch (err) {
    $("game-status").textContent = `Error: ${err.message}`;
  }
}

function init() {
  $("guess-form").addEventListener("submit", submitGuess);
  for (const id of ["guess-lat", "guess-lon"]) $(id).addEventListener("input", () => {
    const lat = parseFloat($("guess-lat").value), lon = parseFloat($("guess-lon").value);
    if (Number.isFinite(lat) && Number.isFinite(lon) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180) { guess = { lat, lon }; $("guess").disabled = false; drawMap(); }
  });
  $("next").addEventListener("click", () => { $("photo").removeAttribute("src"); showRound(); });
  $("again").addEventListener("click", newGame);
  drawMap();
  fetch("/v1/world").then((r) => r.json()).then((w) => { world = w; drawMap(); }).catch(() => {});
  newGame();
}

document.addEventListener("DOMContentLoaded", init);
