"use strict";
// geoscout web page: upload photos, draw the answer on an offline SVG world map.
const W = 1000, H = 500;
const $ = (id) => document.getElementById(id);
let world = null;

const proj = (lat, lon) => [((lon + 180) / 360) * W, ((90 - lat) / 180) * H];

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

function destination(lat, lon, bearingDeg, km) {
  const R = 6371, d = km / R, b = (bearingDeg * Math.PI) / 180;
  const p1 = (lat * Math.PI) / 180, l1 = (lon * Math.PI) / 180;
  const p2 = Math.asin(Math.sin(p1) * Math.cos(d) + Math.cos(p1) * Math.sin(d) * Math.cos(b));
  const l2 = l1 + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(p1), Math.cos(d) - Math.sin(p1) * Math.sin(p2));
  return [(p2 * 180) / Math.PI, ((((l2 * 180) / Math.PI) + 540) % 360) - 180];
}

function el(tag, attrs = {}, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// The view (in map units) that holds the candidates and the 68% circle, 2:1 like the map; the world when
// they spread over more than half of it.
function viewOf(pred) {
  if (!pred || !pred.candidates || !pred.candidates.length) return [0, 0, W, H];
  const pts = pred.candidates.map((c) => proj(c.lat, c.lon));
  const top = pred.candidates[0];
  if (pred.radius_km && pred.radius_km < 5000) {
    for (let b = 0; b < 360; b += 30) { const [la, lo] = destination(top.lat, top.lon, b, pred.radius_km); pts.push(proj(la, lo)); }
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 - x0 > W / 2 || y1 - y0 > H / 2) return [0, 0, W, H];
  let w = Math.max((x1 - x0) * 1.3, 40), h = Math.max((y1 - y0) * 1.3, 20);
  if (w < 2 * h) w = 2 * h; else h = w / 2;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const x = Math.min(Math.max(cx - w / 2, 0), W - w), y = Math.min(Math.max(cy - h / 2, 0), H - h);
  return [x, y, w, h];
}

function drawMap(pred) {
  const box = viewOf(pred);
  const k = box[2] / W; // markers and labels keep their on-screen size when zoomed in
  const svg = el("svg", { viewBox: box.map((v) => v.toFixed(1)).join(" "), role: "img", "aria-label": "World map" });
  if (world) {
    const g = el("g");
    for (const f of world.features) g.appendChild(el("path", { class: "country", d: geomPath(f.geometry) }));
    svg.appendChild(g);
  }
  if (pred && pred.candidates && pred.candidates.length) {
    const heat = pred.heatmap || [];
    const pmax = Math.max(...heat.map((h) => h[2]), 1e-9);
    for (const [lat, lon, p] of heat) {
      const [x, y] = proj(lat, lon);
      const a = Math.sqrt(p / pmax);
      svg.appendChild(el("circle", { class: "heat", cx: x, cy: y, r: k * (3 + 9 * a), fill: `rgba(231,76,60,${(0.12 + 0.5 * a).toFixed(2)})` }));
    }
    const top = pred.candidates[0];
    if (pred.radius_km) {
      const pts = [];
      for (let b = 0; b <= 360; b += 6) pts.push(destination(top.lat, top.lon, b, pred.radius_km));
      svg.appendChild(el("path", { class: "radius", d: ringPath(pts.map(([la, lo]) => [lo, la])).replace(/Z$/, "") }));
    }
    pred.candidates.slice().reverse().forEach((c, iRev) => {
      const rank = pred.candidates.length - iRev;
      const [x, y] = proj(c.lat, c.lon);
      const g = el("g", { class: "marker", "data-rank": rank });
      g.appendChild(el("title", {}, `#${rank} ${placeName(c)} (${(100 * c.probability).toFixed(1)}%)`));
      g.appendChild(el("circle", { class: "cand", cx: x, cy: y, r: k * (rank === 1 ? 8 : 6), fill: rank === 1 ? "#c0392b" : "#2e86de" }));
      g.appendChild(el("text", { class: "rank", x: x, y: y + 3 * k, "text-anchor": "middle", style: `font-size:${(9 * k).toFixed(2)}px` }, String(rank)));
      svg.appendChild(g);
    });
  }
  $("map").replaceChildren(svg);
}

function placeName(c) {
  return [c.city, c.admin1, c.country_name || c.country].filter(Boolean).join(", ") || "open sea";
}

function showResults(data) {
  const box = $("results");
  box.replaceChildren();
  for (const p of data.predictions) {
    if (p.error) {
      const e = document.createElement("p");
      e.className = "error";
      // the error text names the upload already when it is the failure's source
      e.textContent = p.error_source === p.image_id ? p.error : `${p.image_id}: ${p.error}`;
      box.appendChild(e);
      continue;
    }
    const t = document.createElement("table");
    const cap = t.createCaption();
    cap.textContent = `${p.image_id} — within ${Math.round(p.radius_km).toLocaleString()} km with 68% probability; expected score ${Math.round(p.expected_score)}`;
    const head = t.createTHead().insertRow();
    for (const h of ["#", "place", "probability", "lat", "lon"]) {
      const th = document.createElement("th"); th.scope = "col"; th.textContent = h; head.appendChild(th);
    }
    const body = t.createTBody();
    p.candidates.forEach((c, i) => {
      const r = body.insertRow();
      r.className = "candidate";
      const cells = [String(i + 1), placeName(c), (100 * c.probability).toFixed(1) + "%", c.lat.toFixed(4), c.lon.toFixed(4)];
      cells.forEach((v, j) => { const td = r.insertCell(); td.textContent = v; if (j !== 1) td.className = "num"; });
    });
    box.appendChild(t);
  }
  const first = data.predictions.find((p) => !p.error);
  drawMap(first || null);
  showCues(data.predictions[0] && !data.predictions[0].error ? data.predictions[0] : null);
}

// The clues read in the (first) photo: boxes drawn over the preview, one line each beside the map.
function cueLine(c) {
  const eff = c.effect || {};
  let moved = "";
  if (eff.answer === "direct") moved = " — answers directly";
  else if (eff.top && eff.top.length) moved = " — " + eff.top.map(([cc, r]) => `${cc} ×${Number(r).toPrecision(3)}`).join(", ");
  const unsure = typeof eff.reading_score === "number" && eff.reading_score < 0.8
    ? ` (read at ${eff.reading_score.toFixed(2)})` : "";  // as Cue.summary says it (types.UNSURE_READING)
  return `“${c.text}”${unsure}: ${c.evidence}${moved}`;
}

function showCues(pred) {
  const box = $("cues"), svg = $("boxes"), img = $("preview");
  box.replaceChildren();
  svg.replaceChildren();
  const cues = (pred && pred.cues) || [];
  if (!cues.length) return;
  const h = document.createElement("h2");
  h.textContent = "Clues read in the photo";
  const ul = document.createElement("ul");
  for (const c of cues) {
    const li = document.createElement("li");
    li.className = "cue";
    const k = document.createElement("span");
    k.className = "kind";
    k.textContent = c.kind + " ";
    li.append(k, document.createTextNode(cueLine(c)));
    ul.appendChild(li);
  }
  box.append(h, ul);
  const draw = () => {
    svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
    const seen = new Set();
    for (const c of cues) {
      if (!c.box || (c.view !== null && c.view !== undefined && c.view !== 0)) continue;
      const key = c.box.join(",");
      if (seen.has(key)) continue;
      seen.add(key);
      const [x0, y0, x1, y1] = c.box;
      const r = el("rect", { class: "cue-box", x: x0, y: y0, width: x1 - x0, height: y1 - y0 });
      r.appendChild(el("title", {}, `${c.kind}: ${c.text}`));
      svg.append(r, el("text", { x: x0, y: Math.max(14, y0 - 4) }, c.kind));
    }
  };
  if (img.complete && img.naturalWidth) draw(); else img.addEventListener("load", draw, { once: true });
}

async function locate(files) {
  if (!files || !files.length) return;
  const fd = new FormData();
  for (const f of files) fd.append("files", f, f.name);
  fd.append("top_k", $("topk").value || "5");
  fd.append("panorama", $("panorama").checked ? "true" : "false");
  const prev = $("preview");
  prev.src = URL.createObjectURL(files[0]); prev.alt = `Preview of ${files[0].name}`; $("photo").hidden = false;
  $("boxes").replaceChildren(); $("cues").replaceChildren();
  $("results").replaceChildren(); // the previous photo's answer must not stay beside the new one
  drawMap(null);
  $("status").className = "";
  $("status").textContent = `Locating ${files.length} photo(s)…`;
  try {
    const res = await fetch("/v1/locate", { method: "POST", body: fd });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
    $("status").textContent = `Done: ${data.predictions.length} answer(s) from ${data.model}.`;
    showResults(data);
  } catch (err) {
    $("status").textContent = `Error: ${err.message}`;
    $("status").className = "error";
  }
}

function init() {
  const drop = $("drop"), input = $("files");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); locate(e.dataTransfer.files); });
  input.addEventListener("change", () => locate(input.files));
  $("form").addEventListener("submit", (e) => { e.preventDefault(); locate(input.files); });
  fetch("/v1/models").then((r) => r.json()).then((m) => { $("model").textContent = m.loaded.name; }).catch(() => {});
  fetch("/v1/game").then((r) => { if (r.ok) $("play-link").hidden = false; }).catch(() => {});
  fetch("/v1/world").then((r) => r.json()).then((w) => { world = w; drawMap(null); }).catch(() => drawMap(null));
}

document.addEventListener("DOMContentLoaded", init);
