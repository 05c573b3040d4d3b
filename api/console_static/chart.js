// A line chart of a few series over the last minutes, drawn as SVG by hand.

const SVG = "http://www.w3.org/2000/svg";
const WIDEST = 1200;
const NARROWEST = 300;
const PAD = { left: 52, right: 12, top: 12, bottom: 26 };

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function tickLabel(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(value % 1e6 ? 1 : 0)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(value % 1e3 ? 1 : 0)}k`;
  return String(Math.round(value * 100) / 100);
}

/**
 * series: [{ name, colour, points: [[seconds, value], ...] }]; window: seconds shown, ending now.
 */
export function lineChart({ series, window, title, width }) {
  // Drawn at the width it is shown at, so that its labels keep their size on a phone.
  const WIDTH = Math.round(Math.min(WIDEST, Math.max(NARROWEST, width || WIDEST)));
  const HEIGHT = Math.round(Math.max(160, Math.min(240, WIDTH * 0.3)));
  const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": title });
  const now = Date.now() / 1000;
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const x = (t) => PAD.left + ((t - (now - window)) / window) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);

  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    svg.append(el("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
    svg.append(el("text", { x: PAD.left - 8, y: y(value) + 4, class: "axis", "text-anchor": "end" }, tickLabel(value)));
  }
  // A label a minute, or every 15 s while the window is short; fewer on a narrow chart.
  const step = (window > 120 ? 60 : 15) * (WIDTH < 480 ? 2 : 1);
  const ticks = Math.round(window / step);
  for (let k = 0; k <= ticks; k += 1) {
    const back = window - k * step;
    const label = back === 0 ? "now" : back % 60 === 0 ? `−${back / 60} min` : `−${back} s`;
    svg.append(el("text", { x: x(now - back), y: HEIGHT - 6, class: "axis", "text-anchor": k === 0 ? "start" : k === ticks ? "end" : "middle" }, label));
  }
  // The first series is drawn last, on top of the others.
  for (const line of [...series].reverse()) {
    const shown = line.points.filter(([t]) => t >= now - window);
    if (shown.length === 0) continue;
    const path = shown.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const style = { d: path, class: "series", stroke: line.colour };
    // Lines that run on top of each other (accepted and written, when keeping up) stay apart.
    if (line.dashed) style["stroke-dasharray"] = "6 4";
    svg.append(el("path", style));
    const [lastT, lastV] = shown[shown.length - 1];
    svg.append(el("circle", { cx: x(lastT), cy: y(lastV), r: 3, fill: line.colour }));
  }
  return svg;
}
