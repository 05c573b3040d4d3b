// Batches: newest first, paged, filtered by status, entity and source, searched by id or
// Idempotency-Key; a processing batch shows a moving progress bar.

import { get, query } from "./api.js";
import { ago, badge, count, errorBox, field, h, pager, progress, replace, select } from "./ui.js";

const PAGE_SIZE = 20;
const REFRESH_MS = 2000;
let knownEntities = null;

async function entityNames() {
  if (!knownEntities) {
    try {
      const answer = await get("/entity");
      knownEntities = ["activity", "instance", ...answer.data.map((e) => e.name.toLowerCase())];
    } catch {
      knownEntities = ["activity", "instance"];
    }
  }
  return knownEntities;
}

function go(params) {
  location.hash = `#/batches${query(params)}`;
}

export function render(container, { params }) {
  const wanted = {
    status: params.get("status") || "",
    entity: params.get("entity") || "",
    source: params.get("source") || "",
    q: params.get("q") || "",
    page: Number(params.get("page")) || 1,
  };
  const search = h("input", { type: "search", name: "q", value: wanted.q, placeholder: "id or Idempotency-Key", "aria-label": "Search by batch id or Idempotency-Key" });
  const status = select("status", [["", "any status"], ["processing", "processing"], ["completed", "completed"], ["failed", "failed"]], wanted.status);
  const source = select("source", [["", "any source"], ["rest", "REST"], ["kafka", "Kafka"], ["bulk", "bulk file"]], wanted.source);
  const entity = select("entity", [["", "any entity"]], wanted.entity);
  const apply = () => go({ status: status.value, entity: entity.value, source: source.value, q: search.value.trim(), page: 1 });
  for (const control of [status, source, entity]) control.addEventListener("change", apply);
  const form = h(
    "form",
    { class: "filters", role: "search", onsubmit: (event) => { event.preventDefault(); apply(); } },
    field("Search", search),
    field("Status", status),
    field("Entity", entity),
    field("Source", source),
    h("div", { class: "filter-actions" }, h("button", { type: "submit", class: "button primary" }, "Search"), h("a", { class: "button", href: "#/batches" }, "Clear")),
  );
  const list = h("div", { class: "list" }, h("p", { class: "muted" }, "Loading batches…"));
  replace(container, h("h1", {}, "Batches"), h("section", { class: "panel" }, form), h("section", { class: "panel" }, list));

  entityNames().then((names) => {
    replace(entity, [["", "any entity"], ...names.map((n) => [n, n])].map(([v, t]) => h("option", { value: v, selected: v === wanted.entity }, t)));
  });

  let timer = null;
  async function load() {
    try {
      const answer = await get(`/api/v1/batch-inserts${query({ ...wanted, limit: PAGE_SIZE, include: "entity,source" })}`);
      draw(answer);
      if (answer.data.some((b) => b.status === "processing")) timer = setTimeout(load, REFRESH_MS);
    } catch (error) {
      replace(list, errorBox(error));
    }
  }

  function draw(answer) {
    const { total, page, limit } = answer.pagination;
    const pages = Math.ceil(total / limit);
    if (!answer.data.length) {
      replace(list, h("p", { class: "empty" }, total ? "No batches on this page." : "No batches match."), total ? pager({ page, pages, total, noun: "batches", onPage: (p) => go({ ...wanted, page: p }) }) : null);
      return;
    }
    replace(
      list,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table batches" },
          h(
            "thead",
            {},
            h("tr", {}, h("th", {}, "Batch"), h("th", {}, "Status"), h("th", { class: "wide" }, "Progress"), h("th", { class: "num hide-narrow" }, "Records"), h("th", { class: "num hide-narrow" }, "Inserted"), h("th", { class: "num" }, "Failed"), h("th", { class: "hide-narrow" }, "Entity"), h("th", { class: "hide-narrow" }, "Source"), h("th", { class: "hide-narrow" }, "Created")),
          ),
          h(
            "tbody",
            {},
            answer.data.map((b) =>
              h(
                "tr",
                { dataset: { batch: b.id } },
                h("td", { class: "id" }, h("a", { href: `#/batches/${encodeURIComponent(b.id)}` }, b.id)),
                h("td", {}, badge(b.status)),
                h("td", { class: "wide" }, progress(b.inserted_count + (b.updated_count ?? 0), b.failed_count, b.record_count, `progress of ${b.id}`)),
                h("td", { class: "num hide-narrow" }, count(b.record_count)),
                h("td", { class: "num hide-narrow" }, count(b.inserted_count)),
                h("td", { class: `num ${b.failed_count ? "bad" : ""}` }, count(b.failed_count)),
                h("td", { class: "hide-narrow" }, b.entity),
                h("td", { class: "hide-narrow" }, b.source),
                h("td", { class: "hide-narrow", title: b.created_at }, ago(b.created_at)),
              ),
            ),
          ),
        ),
      ),
      pager({ page, pages, total, noun: total === 1 ? "batch" : "batches", onPage: (p) => go({ ...wanted, page: p }) }),
    );
  }

  load();
  return () => clearTimeout(timer);
}
