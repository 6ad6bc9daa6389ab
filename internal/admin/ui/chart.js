// chart.js: a tiny time-series line chart drawn as SVG. No library: the
// dashboard ships inside the binary and works offline, and a few polylines
// are all it needs. SVG (rather than canvas) scales crisply, needs no redraw
// on resize, and its elements can be inspected (the browser test does).
"use strict";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const SVGNS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

// drawChart renders series [{name, points: [[tMillis, value], ...]}] into
// the element, with a time axis over [t0, t1] and a value axis from 0.
function drawChart(el, series, t0, t1, fmt) {
  const W = 600, H = 130, L = 46, R = 6, T = 6, B = 16;
  let maxV = 0;
  for (const s of series) for (const p of s.points) maxV = Math.max(maxV, p[1]);
  maxV = niceMax(maxV);
  const x = (t) => L + (W - L - R) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
  const y = (v) => T + (H - T - B) * (1 - v / maxV);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  for (const f of [0, 0.5, 1]) {
    const v = maxV * f;
    svg.appendChild(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.appendChild(svgEl("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, fmt(v)));
  }
  const mins = Math.round((t1 - t0) / 60000);
  svg.appendChild(svgEl("text", { x: L, y: H - 3 }, mins >= 1 ? `-${mins} min` : `-${Math.round((t1 - t0) / 1000)} s`));
  svg.appendChild(svgEl("text", { x: W - R, y: H - 3, "text-anchor": "end" }, "now"));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const pts = s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    const line = svgEl("polyline", { points: pts, stroke: COLORS[i % COLORS.length] });
    line.appendChild(svgEl("title", {}, s.name));
    svg.appendChild(line);
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, i) => {
    const span = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = COLORS[i % COLORS.length];
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    span.append(sw, `${s.name} ${fmt(last)}`);
    legend.appendChild(span);
  });
  el.replaceChildren(svg, legend);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
