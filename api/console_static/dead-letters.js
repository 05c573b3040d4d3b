// Dead letters: the list with `batchline dlq list`'s filters, and replays of what matches —
// a dry run first (how many would go), then the real one with its progress, cancellable.

import { call, get, query } from "./api.js";
import { ago, badge, confirmDialog, count, errorBox, field, h, replace, select, shortJson, toast, when } from "./ui.js";

const FILTERS = ["since", "until", "error_class", "entity", "stage", "key", "status"];
const POLL_MS = 500;

function go(params) {
  location.hash = `#/dead-letters${query(params)}`;
}

export function render(container, { params }) {
  const wanted = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  const limit = Number(params.get("limit")) || 100;
  const text = (name, placeholder) => h("input", { type: "text", name, value: wanted[name], placeholder, "aria-label": name.replace("_", " ") });
  const controls = {
    since: text("since", "e.g. 2h or 2026-03-28T12:00"),
    until: text("until", "ISO time or age"),
    error_class: text("error_class", "e.g. ValidationError"),
    entity: text("entity", "e.g. activity"),
    stage: select("stage", [["", "any stage"], ["decode", "decode"], ["validate", "validate"], ["route", "route"], ["process", "process"]], wanted.stage),
    key: text("key", "Kafka key (batch id)"),
    status: select("status", [["", "any status"], ["pending", "pending"], ["replayed", "replayed"], ["parked", "parked"]], wanted.status),
  };
  const shown = select("limit", [["50", "newest 50"], ["100", "newest 100"], ["500", "newest 500"], ["1000", "newest 1,000"]], String(limit));
  const values = () => ({ ...Object.fromEntries(FILTERS.map((name) => [name, controls[name].value.trim()])), limit: shown.value === "100" ? "" : shown.value });
  const form = h(
    "form",
    { class: "filters", role: "search", onsubmit: (event) => { event.preventDefault(); go(values()); } },
    field("Since", controls.since),
    field("Until", controls.until),
    field("Error class", controls.error_class),
    field("Entity", controls.entity),
    field("Stage", controls.stage),
    field("Key", controls.key),
    field("Status", controls.status),
    field("Show", shown),
    h("div", { class: "filter-actions" }, h("button", { type: "submit", class: "button primary" }, "Filter"), h("a", { class: "button", href: "#/dead-letters" }, "Clear")),
  );
  const list = h("div", {}, h("p", { class: "muted" }, "Reading the dead-letter topic…"));
  const replayPanel = h("section", { class: "panel" });
  const runs = h("section", { class: "panel" });
  replace(container, h("h1", {}, "Dead letters"), h("section", { class: "panel" }, form), h("section", { class: "panel" }, list), replayPanel, runs);

  const filters = Object.fromEntries(Object.entries(wanted).filter(([, v]) => v));
  let timer = null;
  let dryRun = null;

  async function loadList() {
    try {
      const answer = await get(`/ops/dlq/messages${query({ ...wanted, limit })}`);
      drawList(answer);
    } catch (error) {
      replace(list, errorBox(error));
    }
  }

  function drawList(answer) {
    if (!answer.data.length) {
      replace(list, h("p", { class: "empty" }, "No dead letters match."));
      return;
    }
    replace(
      list,
      h("p", { class: "muted small" }, `${count(answer.count)} dead letter${answer.count === 1 ? "" : "s"}, newest first${answer.count >= limit ? ` (the newest ${limit})` : ""}`),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table letters" },
          h("thead", {}, h("tr", {}, h("th", {}, "Letter"), h("th", {}, "Status"), h("th", { class: "hide-narrow" }, "Stage"), h("th", {}, "Error"), h("th", { class: "wide" }, "Message"), h("th", { class: "hide-narrow" }, "Entity"), h("th", { class: "hide-narrow" }, "Key"), h("th", { class: "num hide-narrow" }, "Replays"), h("th", { class: "hide-narrow" }, "When"))),
          h(
            "tbody",
            {},
            answer.data.map((d) =>
              h(
                "tr",
                { dataset: { letter: d.id } },
                h("td", {}, h("a", { href: `#/dead-letters/${encodeURIComponent(d.id)}` }, d.id)),
                h("td", {}, badge(d.status)),
                h("td", { class: "hide-narrow" }, d.stage),
                h("td", {}, h("code", { class: "code-error" }, d.error_class)),
                h("td", { class: "wide" }, shortJson(d.error_message, 140)),
                h("td", { class: "hide-narrow" }, d.entity || "–"),
                h("td", { class: "hide-narrow" }, d.key || "–"),
                h("td", { class: "num hide-narrow" }, d.replay_count),
                h("td", { class: "hide-narrow", title: when(d.dead_lettered_at) }, ago(d.dead_lettered_at)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function drawReplay(run) {
    const rate = h("input", { type: "number", name: "rate", min: "0.1", step: "any", placeholder: "unpaced", "aria-label": "messages per second" });
    const described = Object.keys(filters).length ? Object.entries(filters).map(([k, v]) => `${k}=${v}`).join(", ") : "no filter: every pending dead letter";
    const running = run && run.status === "running";
    const dryDone = dryRun && dryRun.status === "completed";
    replace(
      replayPanel,
      h("h2", {}, "Replay"),
      h("p", {}, "Puts the ", h("strong", {}, "pending"), " dead letters matching the filters above (", h("code", {}, described), ") back on their source topic. Start with a dry run: it counts what would go."),
      h(
        "div",
        { class: "retry-bar" },
        h("button", { type: "button", class: "button", disabled: running, onclick: () => start(true, rate.value) }, "Dry run"),
        field("Rate (messages/s)", rate),
        h(
          "button",
          { type: "button", class: "button primary", disabled: running || !dryDone || dryRun.counts.selected === 0, title: dryDone ? "" : "Run a dry run first", onclick: () => start(false, rate.value) },
          dryDone ? `Replay ${count(dryRun.counts.selected)} for real` : "Replay for real",
        ),
        running ? h("button", { type: "button", class: "button danger", onclick: () => cancel(run) }, "Cancel replay") : null,
      ),
      run ? runView(run) : null,
    );
  }

  function runView(run) {
    const c = run.counts;
    const total = run.progress.total;
    const share = total ? (100 * run.progress.done) / total : run.status === "running" ? 0 : 100;
    const summary = run.dry_run
      ? `Dry run ${run.status}: ${count(c.selected)} would be replayed (${count(c.matched)} matched, ${count(c.parked)} parked, ${count(c.already_replayed)} already replayed)`
      : `Replay ${run.status}: ${count(c.replayed)} of ${count(c.selected)} replayed, ${count(c.parked)} parked, ${count(c.already_replayed)} already replayed`;
    return h(
      "div",
      { class: "run", dataset: { run: run.id } },
      h("p", { class: "run-summary" }, badge(run.status), " ", h("strong", {}, run.id), " · ", summary),
      h("div", { class: "progress", role: "progressbar", "aria-valuenow": Math.round(share), "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": `progress of ${run.id}` }, h("span", { class: "progress-ok", style: { width: `${share}%` } })),
      run.error ? errorBox(new Error(run.error)) : null,
    );
  }

  async function follow(runPath, dry) {
    try {
      const run = await get(runPath);
      if (dry) dryRun = run;
      drawReplay(run);
      if (run.status === "running") {
        timer = setTimeout(() => follow(runPath, dry), POLL_MS);
      } else {
        loadList();
        loadRuns();
      }
    } catch (error) {
      replace(replayPanel, errorBox(error));
    }
  }

  async function start(dry, rate) {
    if (!dry) {
      const sure = await confirmDialog({
        title: `Replay ${count(dryRun.counts.selected)} dead letter${dryRun.counts.selected === 1 ? "" : "s"}?`,
        text: "They go back on their source topic and are processed again. A replayed letter is not replayed twice.",
        action: "Replay",
        danger: false,
      });
      if (!sure) return;
    }
    const body = { filters, dry_run: dry };
    if (rate) body.rate_per_second = Number(rate);
    try {
      const answer = await call("POST", "/ops/dlq/replays", body);
      if (dry) dryRun = answer.body;
      else dryRun = null;
      follow(answer.headers.get("Location"), dry);
    } catch (error) {
      toast(`Replay refused: ${error.message}`, "bad");
    }
  }

  async function cancel(run) {
    try {
      await call("DELETE", `/ops/dlq/replays/${encodeURIComponent(run.id)}`);
      toast(`Cancelling ${run.id}`, "ok");
    } catch (error) {
      toast(`Cancel refused: ${error.message}`, "bad");
    }
  }

  async function loadRuns() {
    try {
      const answer = await get("/ops/dlq/replays?limit=5");
      replace(
        runs,
        h("h2", {}, "Recent replays"),
        answer.data.length
          ? h(
              "div",
              { class: "table-wrap" },
              h(
                "table",
                { class: "table" },
                h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Status"), h("th", {}, "Kind"), h("th", { class: "num" }, "Selected"), h("th", { class: "num" }, "Replayed"), h("th", { class: "num hide-narrow" }, "Parked"), h("th", { class: "hide-narrow" }, "By"), h("th", { class: "hide-narrow" }, "Started"))),
                h(
                  "tbody",
                  {},
                  answer.data.map((r) =>
                    h("tr", {}, h("td", {}, r.id), h("td", {}, badge(r.status)), h("td", {}, r.dry_run ? "dry run" : "replay"), h("td", { class: "num" }, count(r.counts.selected)), h("td", { class: "num" }, count(r.counts.replayed)), h("td", { class: "num hide-narrow" }, count(r.counts.parked)), h("td", { class: "hide-narrow" }, r.requested_by), h("td", { class: "hide-narrow", title: when(r.created_at) }, ago(r.created_at))),
                  ),
                ),
              ),
            )
          : h("p", { class: "empty" }, "No replay has run yet."),
      );
    } catch (error) {
      replace(runs, errorBox(error));
    }
  }

  drawReplay(null);
  loadList();
  loadRuns();
  return () => clearTimeout(timer);
}
