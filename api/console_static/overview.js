// Overview: records per second (from /metrics), batches by status, consumer lag per
// partition and dead letters pending (from /ops/overview).

import { get, getText } from "./api.js";
import { lineChart } from "./chart.js";
import { card, count, errorBox, h, rate, replace } from "./ui.js";

const WINDOW_SECONDS = 300;
const METRICS_EVERY_MS = 2000;
const OVERVIEW_EVERY_MS = 5000;
const SERIES = [
  { key: "accepted", name: "accepted", colour: "#2563eb", metric: "batchline_records_accepted_total", dashed: true },
  { key: "written", name: "written", colour: "#16a34a", metric: "batchline_records_written_total" },
  { key: "failed", name: "failed", colour: "#dc2626", metric: "batchline_records_failed_total" },
];

// Kept while the tab is open, so coming back to the page shows the minutes before.
const samples = [];

function totals(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[2]);
    if (Number.isFinite(value)) sums[match[1]] = (sums[match[1]] || 0) + value;
  }
  const found = {};
  for (const series of SERIES) found[series.key] = sums[series.metric] ?? null;
  return found;
}

function rates() {
  const points = Object.fromEntries(SERIES.map((s) => [s.key, []]));
  for (let i = 1; i < samples.length; i += 1) {
    const [before, after] = [samples[i - 1], samples[i]];
    const seconds = after.t - before.t;
    if (seconds <= 0) continue;
    for (const series of SERIES) {
      const [a, b] = [before.totals[series.key], after.totals[series.key]];
      // A restarted process starts its counters again from zero.
      if (a !== null && b !== null) points[series.key].push([after.t, Math.max(0, (b - a) / seconds)]);
    }
  }
  return points;
}

export function render(container) {
  const rateCards = h("div", { class: "cards rates" });
  const chartBox = h("div", { class: "chart-box" });
  const batchCards = h("div", { class: "cards" });
  const lagBox = h("div", {});
  const note = h("p", { class: "muted small" });
  replace(
    container,
    h("h1", {}, "Overview"),
    h("section", { class: "panel" }, h("h2", {}, "Records per second"), rateCards, chartBox, legend(), note),
    h("section", { class: "panel" }, h("h2", {}, "Batches and dead letters"), batchCards),
    h("section", { class: "panel" }, h("h2", {}, "Consumer lag"), h("p", { class: "muted small" }, "Messages not yet processed, per partition: the consumer group's committed offset against the partition's end."), lagBox),
  );

  async function sampleMetrics() {
    try {
      const text = await getText("/metrics");
      samples.push({ t: Date.now() / 1000, totals: totals(text) });
      while (samples.length && samples[0].t < Date.now() / 1000 - WINDOW_SECONDS - 10) samples.shift();
      drawRates();
    } catch (error) {
      replace(note, errorBox(error));
    }
  }

  function drawRates() {
    const points = rates();
    const latest = (key) => (points[key].length ? points[key][points[key].length - 1][1] : null);
    replace(
      rateCards,
      SERIES.map((s) => card(`${s.name[0].toUpperCase()}${s.name.slice(1)} / s`, rate(latest(s.key)), { class: `card-${s.key}`, figure: `rate-${s.key}` })),
    );
    // The last five minutes, or less while the page has seen less (at least one minute).
    const seen = samples.length ? Date.now() / 1000 - samples[0].t : 0;
    const window = Math.min(WINDOW_SECONDS, Math.max(60, Math.ceil(seen / 60) * 60));
    replace(chartBox, lineChart({ series: SERIES.map((s) => ({ ...s, points: points[s.key] })), window, width: chartBox.clientWidth, title: `records accepted, written and failed per second, last ${window / 60} min` }));
    const last = samples[samples.length - 1];
    const missing = last ? SERIES.filter((s) => last.totals[s.key] === null).map((s) => s.name) : [];
    replace(
      note,
      missing.length
        ? `This API process has no ${missing.join(" or ")} counters: workers running apart serve theirs on their own /metrics (BATCHLINE_WORKER_METRICS_PORT).`
        : "From this process's /metrics, sampled every 2 s.",
    );
  }

  async function loadOverview() {
    try {
      const answer = await get("/ops/overview");
      const letters = answer.dead_letters;
      replace(
        batchCards,
        card("Processing", count(answer.batches.processing), { figure: "batches-processing", note: h("a", { href: "#/batches?status=processing" }, "show") }),
        card("Completed", count(answer.batches.completed), { figure: "batches-completed", note: h("a", { href: "#/batches?status=completed" }, "show") }),
        card("Failed", count(answer.batches.failed), { class: answer.batches.failed ? "card-alert" : "", figure: "batches-failed", note: h("a", { href: "#/batches?status=failed" }, "show") }),
        card("Dead letters pending", letters ? count(letters.pending) : "?", {
          class: letters && letters.pending ? "card-alert" : "",
          figure: "dead-letters-pending",
          note: letters ? h("a", { href: "#/dead-letters?status=pending" }, `${count(letters.parked)} parked · ${count(letters.replayed)} replayed`) : answer.unavailable.dead_letters,
        }),
      );
      replace(lagBox, answer.consumer_lag ? lagTable(answer.consumer_lag) : errorBox(new Error(`Lag unavailable: ${answer.unavailable.consumer_lag}`)));
    } catch (error) {
      replace(batchCards, errorBox(error));
    }
  }

  if (samples.length) drawRates();
  sampleMetrics();
  loadOverview();
  const timers = [setInterval(sampleMetrics, METRICS_EVERY_MS), setInterval(loadOverview, OVERVIEW_EVERY_MS)];
  return () => timers.forEach(clearInterval);
}

function legend() {
  return h(
    "div",
    { class: "legend" },
    SERIES.map((s) => h("span", { class: "legend-item" }, h("span", { class: `swatch ${s.dashed ? "dashed" : ""}`, style: { color: s.colour } }), s.name)),
  );
}

function lagTable(lags) {
  const largest = Math.max(1, ...lags.map((l) => l.lag));
  const byTopic = new Map();
  for (const lag of lags) {
    if (!byTopic.has(lag.topic)) byTopic.set(lag.topic, []);
    byTopic.get(lag.topic).push(lag);
  }
  return h(
    "div",
    { class: "lag-grid" },
    [...byTopic].map(([topic, rows]) =>
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table", "aria-label": `lag of ${topic}` },
          h("caption", {}, topic, h("span", { class: "muted" }, ` · group ${rows[0].group} · total lag ${count(rows.reduce((n, r) => n + r.lag, 0))}`)),
          h("thead", {}, h("tr", {}, h("th", {}, "Partition"), h("th", { class: "num" }, "Committed"), h("th", { class: "num" }, "End"), h("th", { class: "num" }, "Lag"), h("th", { class: "wide" }, ""))),
          h(
            "tbody",
            {},
            rows.map((r) =>
              h(
                "tr",
                {},
                h("td", {}, r.partition),
                h("td", { class: "num" }, r.committed === null ? "none" : count(r.committed)),
                h("td", { class: "num" }, count(r.end)),
                h("td", { class: `num ${r.lag ? "warn" : ""}` }, count(r.lag)),
                h("td", { class: "wide" }, h("div", { class: "bar" }, h("span", { style: { width: `${(100 * r.lag) / largest}%` } }))),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}
