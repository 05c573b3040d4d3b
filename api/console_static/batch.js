// One batch: counts, timings, a progress bar that moves while it runs, its failures grouped
// by error code (details and payload, paged), retry, delete, and the failures as NDJSON.

import { ApiError, call, download, get, query, raw } from "./api.js";
import { badge, card, confirmDialog, count, duration, errorBox, h, json, pager, progress, replace, shortJson, toast, when } from "./ui.js";

const PAGE_SIZE = 20;
const POLL_MS = 1000;
// Entities whose unique conflicts a retry may resolve against the existing row.
const IGNORE_CONSTRAINTS_ENTITIES = new Set(["activity"]);

const path = (id) => `/api/v1/batch-inserts/${encodeURIComponent(id)}`;

/** The batch without its per-record results when the API can leave them out. */
async function header(id) {
  const answer = await get(`${path(id)}${query({ results: "none" })}`);
  // An API without results paging sends every result: the header is all this page uses.
  delete answer.results;
  return answer;
}

/** Status and counts alone, cheap enough to ask every second while a batch runs. */
async function counts(id) {
  const answer = await get(`/api/v1/batch-inserts${query({ q: id, limit: 1, include: "entity,source" })}`);
  const found = answer.data.find((b) => b.id === id);
  if (!found) throw new ApiError(404, `Batch ${id} not found`, null);
  return found;
}

export function render(container, { id, params }) {
  const state = {
    error: params.get("error") || "",
    page: Number(params.get("page")) || 1,
    selected: new Set(),
    batch: null,
    failures: null,
  };
  let timer = null;

  const top = h("div", { class: "page-head" }, h("h1", {}, h("a", { href: "#/batches", class: "crumb" }, "Batches"), " / ", id));
  const summary = h("section", { class: "panel" }, h("p", { class: "muted" }, "Loading…"));
  const failuresPanel = h("section", { class: "panel" });
  replace(container, top, summary, failuresPanel);

  async function refresh() {
    clearTimeout(timer);
    try {
      const running = state.batch && state.batch.status === "processing" ? await counts(id) : null;
      if (running && running.status === "processing") {
        Object.assign(state.batch, running);
      } else {
        // The list's row names the entity and source, which the batch's own answer does not.
        const [full, row] = await Promise.all([header(id), counts(id)]);
        state.batch = { ...full, entity: row.entity, source: row.source };
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        replace(summary, h("p", { class: "empty" }, `Batch ${id} does not exist (it may have been deleted).`));
        replace(failuresPanel);
        return;
      }
      replace(summary, errorBox(error));
      return;
    }
    drawSummary();
    failuresPanel.hidden = state.batch.status === "processing";
    if (state.batch.status === "processing") {
      timer = setTimeout(refresh, POLL_MS);
    } else {
      await loadFailures();
    }
  }

  function drawSummary() {
    const b = state.batch;
    // Stored records: inserted, and updated where the API counts updates apart.
    const stored = b.inserted_count + (b.updated_count ?? 0);
    const done = stored + b.failed_count;
    replace(
      summary,
      h(
        "div",
        { class: "summary-head" },
        badge(b.status),
        h("span", { class: "muted" }, `${b.entity} · ${b.source}`),
        h(
          "div",
          { class: "head-actions" },
          h("button", { type: "button", class: "button", disabled: !b.failed_count, onclick: downloadFailures }, "Download failures (NDJSON)"),
          h("button", { type: "button", class: "button danger", disabled: b.status === "processing", onclick: remove }, "Delete operation"),
        ),
      ),
      progress(stored, b.failed_count, b.record_count, `progress of ${b.id}`),
      h("p", { class: "progress-text" }, `${count(done)} of ${count(b.record_count)} records done`, b.status === "processing" ? " · updating every second" : ""),
      h(
        "div",
        { class: "cards" },
        card("Records", count(b.record_count), { figure: "records" }),
        card("Inserted", count(b.inserted_count), { class: "card-written", figure: "inserted" }),
        "updated_count" in b ? card("Updated", count(b.updated_count), { class: "card-written", figure: "updated" }) : null,
        card("Failed", count(b.failed_count), { class: b.failed_count ? "card-alert" : "", figure: "failed" }),
        card("Took", b.completed_at ? duration(b.created_at, b.completed_at) : "running", { figure: "took" }),
      ),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Created"), h("dd", {}, when(b.created_at)),
        h("dt", {}, "Completed"), h("dd", {}, when(b.completed_at)),
        b.updated_at ? [h("dt", {}, "Last retry"), h("dd", {}, when(b.updated_at))] : null,
        b.failure_reason ? [h("dt", {}, "Failure reason"), h("dd", { class: "bad" }, b.failure_reason)] : null,
      ),
    );
  }

  async function loadFailures() {
    if (!state.batch.failed_count) {
      state.failures = null;
      replace(failuresPanel, h("h2", {}, "Failures"), h("p", { class: "empty" }, "No record failed."));
      return;
    }
    try {
      state.failures = await get(
        `${path(id)}/failures${query({ error: state.error, offset: (state.page - 1) * PAGE_SIZE, limit: PAGE_SIZE })}`,
      );
      if (state.error && !state.failures.errors.some((e) => e.error === state.error)) {
        // Nothing fails with that code any more (a retry fixed them): show every failure.
        setFilter("");
        return;
      }
      drawFailures();
    } catch (error) {
      replace(failuresPanel, h("h2", {}, "Failures"), errorBox(error));
    }
  }

  function setFilter(error) {
    state.error = error;
    state.page = 1;
    state.selected.clear();
    loadFailures();
  }

  function drawFailures() {
    const f = state.failures;
    const retryable = f.data.filter((r) => r.payload !== null);
    const ignore = h("input", { type: "checkbox", name: "ignore_constraints", disabled: !IGNORE_CONSTRAINTS_ENTITIES.has(state.batch.entity) });
    const selectAll = h("input", {
      type: "checkbox",
      "aria-label": "select every retryable failure on this page",
      checked: retryable.length > 0 && retryable.every((r) => state.selected.has(r.index)),
      disabled: !retryable.length,
      onchange: (event) => {
        for (const r of retryable) event.target.checked ? state.selected.add(r.index) : state.selected.delete(r.index);
        drawFailures();
      },
    });
    const busy = state.batch.status === "processing";
    replace(
      failuresPanel,
      h("h2", {}, "Failures"),
      h(
        "div",
        { class: "chips", role: "group", "aria-label": "failures by error code" },
        h("button", { type: "button", class: `chip ${state.error ? "" : "active"}`, onclick: () => setFilter("") }, `all ${count(f.errors.reduce((n, e) => n + e.count, 0))}`),
        f.errors.map((e) => h("button", { type: "button", class: `chip ${state.error === e.error ? "active" : ""}`, dataset: { error: e.error }, onclick: () => setFilter(e.error) }, `${e.error} ${count(e.count)}`)),
      ),
      h(
        "div",
        { class: "retry-bar" },
        h("label", { class: "check" }, ignore, " ignore constraints ", h("span", { class: "muted small" }, "(a conflicting existing row takes the retried values)")),
        h("button", { type: "button", class: "button primary", disabled: busy || state.selected.size === 0, onclick: () => retry([...state.selected], ignore.checked) }, `Retry selected (${state.selected.size})`),
        h("button", { type: "button", class: "button", disabled: busy, onclick: () => retryAll(ignore.checked) }, state.error ? `Retry all ${state.error}` : "Retry all failed"),
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table failures" },
          h("thead", {}, h("tr", {}, h("th", { class: "pick" }, selectAll), h("th", { class: "num" }, "Index"), h("th", {}, "Error"), h("th", {}, "Details"), h("th", { class: "wide" }, "Payload"))),
          h(
            "tbody",
            {},
            f.data.map((r) =>
              h(
                "tr",
                { dataset: { index: r.index } },
                h(
                  "td",
                  { class: "pick" },
                  h("input", {
                    type: "checkbox",
                    "aria-label": `select record ${r.index}`,
                    checked: state.selected.has(r.index),
                    disabled: r.payload === null,
                    title: r.payload === null ? "No payload was kept: send this record again" : "",
                    onchange: (event) => {
                      event.target.checked ? state.selected.add(r.index) : state.selected.delete(r.index);
                      drawFailures();
                    },
                  }),
                ),
                h("td", { class: "num" }, r.index),
                h("td", {}, h("code", { class: "code-error" }, r.error)),
                h("td", { class: "details" }, detailsOf(r.details)),
                h("td", { class: "wide" }, r.payload === null ? h("span", { class: "muted" }, "not kept") : h("details", {}, h("summary", {}, h("code", {}, shortJson(r.payload, 80))), h("pre", {}, json(r.payload)))),
              ),
            ),
          ),
        ),
      ),
      pager({ page: state.page, pages: Math.ceil(f.pagination.total / PAGE_SIZE), total: f.pagination.total, noun: "failures", onPage: (p) => { state.page = p; loadFailures(); } }),
    );
  }

  async function retry(indices, ignoreConstraints) {
    if (!indices.length) return;
    if (ignoreConstraints) {
      const sure = await confirmDialog({
        title: `Retry ${count(indices.length)} record${indices.length === 1 ? "" : "s"} ignoring constraints?`,
        text: "Where a retried record conflicts with a stored one, the stored record takes the retried values; its old values are not kept.",
        action: "Retry",
      });
      if (!sure) return;
    }
    try {
      const answer = await call("PUT", path(id), { retry_indices: indices.sort((a, b) => a - b), ignore_constraints: ignoreConstraints });
      toast(`Retrying ${count(indices.length)} record${indices.length === 1 ? "" : "s"}${ignoreConstraints ? " (ignoring constraints)" : ""}: ${answer.body.status}`, "ok");
      state.selected.clear();
      state.page = 1;
      await refresh();
    } catch (error) {
      toast(`Retry refused: ${error.message}`, "bad");
    }
  }

  async function retryAll(ignoreConstraints) {
    // Every retryable failure, read as a stream (a page holds only PAGE_SIZE of them).
    try {
      const text = await (await raw(`${path(id)}/failures.ndjson${query({ error: state.error })}`)).text();
      const indices = text.split("\n").filter(Boolean).map((line) => JSON.parse(line)).filter((r) => r.payload !== null).map((r) => r.index);
      if (!indices.length) {
        toast("No failed record has a payload to retry: send them again.", "bad");
        return;
      }
      await retry(indices, ignoreConstraints);
    } catch (error) {
      toast(`Retry failed: ${error.message}`, "bad");
    }
  }

  async function downloadFailures() {
    try {
      const bytes = await download(`${path(id)}/failures.ndjson${query({ error: state.error })}`, `${id}-failures${state.error ? `-${state.error}` : ""}.ndjson`);
      toast(`Downloaded ${count(bytes)} bytes of failures`, "ok");
    } catch (error) {
      toast(`Download failed: ${error.message}`, "bad");
    }
  }

  async function remove() {
    const sure = await confirmDialog({
      title: `Delete ${id}?`,
      text: "This removes the operation and its per-record results. Stored records stay. It cannot be undone.",
      action: "Delete",
    });
    if (!sure) return;
    try {
      await call("DELETE", path(id));
      toast(`${id} deleted`, "ok");
      location.hash = "#/batches";
    } catch (error) {
      toast(`Delete refused: ${error.message}`, "bad");
    }
  }

  refresh();
  return () => {
    clearTimeout(timer);
  };
}

function detailsOf(details) {
  if (details === null || details === undefined) return "";
  if (Array.isArray(details)) {
    return h("ul", { class: "problems" }, details.map((d) => h("li", {}, d && typeof d === "object" && d.message ? [d.field ? h("strong", {}, `${d.field}: `) : null, d.message] : shortJson(d, 200))));
  }
  if (typeof details === "object") {
    return h("dl", { class: "mini" }, Object.entries(details).map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]));
  }
  return h("code", {}, shortJson(details, 200));
}
