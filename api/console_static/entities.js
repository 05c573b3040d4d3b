// Entities: the YAML-defined entities and their fields, and a record browser with the
// /data filters (field=v, field[GT]=v …), order and paging.

import { get } from "./api.js";
import { count, errorBox, field, h, replace, select } from "./ui.js";

const PAGE_SIZE = 20;
const OPERATORS = [["", "="], ["GT", ">"], ["GTE", "≥"], ["LT", "<"], ["LTE", "≤"], ["NOT", "≠"], ["CONTAINS", "contains"], ["STARTS_WITH", "starts with"]];

function typeOf(f) {
  if (f.type === "ENTITY_REF" && f.entityRef) return `→ ${f.entityRef.entity}`;
  if (f.type === "ENUM" && f.enums) return `ENUM (${f.enums.join(", ")})`;
  if (f.type === "ARRAY" && f.array) return `ARRAY of ${f.array.type}`;
  return f.type;
}

export function render(container, { name, params }) {
  const list = h("div", { class: "entity-grid" }, h("p", { class: "muted" }, "Loading entities…"));
  const browser = h("section", { class: "panel" });
  replace(container, h("h1", {}, "Entities"), h("section", { class: "panel" }, h("h2", {}, "Schemas"), h("p", { class: "muted small" }, "Declared in the YAML files of BATCHLINE_ENTITIES_DIR and served under /data."), list), browser);

  get("/entity")
    .then((answer) => {
      const entities = answer.data;
      replace(
        list,
        entities.map((e) =>
          h(
            "article",
            { class: `entity ${name && name.toLowerCase() === e.name.toLowerCase() ? "active" : ""}`, dataset: { entity: e.name } },
            h("h3", {}, h("a", { href: `#/entities/${encodeURIComponent(e.name.toLowerCase())}` }, e.name), h("span", { class: "muted small" }, ` key: ${e.lk.join(" + ")}`)),
            h(
              "table",
              { class: "table compact" },
              h("tbody", {}, e.fields.map((f) => h("tr", {}, h("td", {}, f.name, e.lk.includes(f.name) ? h("span", { class: "key", title: "logical key" }, " key") : null), h("td", { class: "muted" }, typeOf(f)), h("td", { class: "small" }, f.required ? "required" : "")))),
            ),
          ),
        ),
      );
      const chosen = entities.find((e) => name && e.name.toLowerCase() === name.toLowerCase()) || null;
      if (chosen) drawBrowser(browser, chosen, params);
      else replace(browser, h("h2", {}, "Records"), h("p", { class: "empty" }, entities.length ? "Pick an entity above to browse its records." : "No entity is declared."));
    })
    .catch((error) => replace(list, errorBox(error)));
}

function drawBrowser(panel, entity, params) {
  const key = entity.name.toLowerCase();
  const fields = entity.fields.map((f) => f.name);
  const start = Number(params.get("start")) || 0;
  const order = params.get("orderBy") || "";
  const filters = [...params.entries()].filter(([k]) => !["start", "orderBy"].includes(k));

  const rows = h("div", { class: "filter-rows" });
  const addRow = (fieldName = fields[0], operator = "", value = "") => {
    const fieldSelect = select("field", fields.map((f) => [f, f]), fieldName);
    const operatorSelect = select("operator", OPERATORS, operator);
    const input = h("input", { type: "text", name: "value", value, "aria-label": "value" });
    const row = h("div", { class: "filter-row" }, fieldSelect, operatorSelect, input, h("button", { type: "button", class: "link-button", "aria-label": "remove filter", onclick: () => row.remove() }, "✕"));
    rows.append(row);
  };
  for (const [k, v] of filters) {
    const match = /^(\w+)(?:\[(\w+)\])?$/.exec(k);
    if (match) addRow(match[1], match[2] || "", v);
  }
  const orderField = select("order", [["", "default order"], ...fields.flatMap((f) => [[f, `${f} ↑`], [`-${f}`, `${f} ↓`]])], order);
  const go = (first) => {
    const search = new URLSearchParams();
    for (const row of rows.children) {
      const [f, op, value] = [row.querySelector("[name=field]").value, row.querySelector("[name=operator]").value, row.querySelector("[name=value]").value];
      if (value !== "") search.append(op ? `${f}[${op}]` : f, value);
    }
    if (orderField.value) search.set("orderBy", orderField.value);
    if (first) search.set("start", String(first));
    const text = search.toString();
    location.hash = `#/entities/${encodeURIComponent(key)}${text ? `?${text}` : ""}`;
  };
  const table = h("div", {}, h("p", { class: "muted" }, "Loading records…"));
  replace(
    panel,
    h("h2", {}, `Records of ${entity.name}`),
    h(
      "form",
      { class: "browser-form", onsubmit: (event) => { event.preventDefault(); go(0); } },
      rows,
      h("div", { class: "filter-actions" }, h("button", { type: "button", class: "button small", onclick: () => addRow() }, "+ Filter"), field("Order", orderField), h("button", { type: "submit", class: "button primary" }, "Show records")),
    ),
    table,
  );

  const search = new URLSearchParams(filters);
  search.set("start", String(start));
  search.set("limit", String(PAGE_SIZE));
  if (order) search.set("orderBy", order);
  get(`/data/${encodeURIComponent(key)}?${search}`)
    .then((answer) => {
      const total = answer.meta.total;
      const records = answer.data;
      replace(
        table,
        records.length
          ? h(
              "div",
              { class: "table-wrap" },
              h(
                "table",
                { class: "table records" },
                h("thead", {}, h("tr", {}, fields.map((f) => h("th", {}, f)))),
                h("tbody", {}, records.map((r) => h("tr", {}, fields.map((f) => h("td", {}, r[f] === null || r[f] === undefined ? "" : typeof r[f] === "object" ? JSON.stringify(r[f]) : String(r[f])))))),
              ),
            )
          : h("p", { class: "empty" }, "No records match."),
        h(
          "div",
          { class: "pager" },
          h("button", { type: "button", class: "button small", disabled: start <= 0, onclick: () => go(Math.max(0, start - PAGE_SIZE)) }, "‹ Previous"),
          h("span", { class: "pager-text" }, records.length ? `${count(start + 1)}–${count(start + records.length)} of ${count(total)} records` : `${count(total)} records`),
          h("button", { type: "button", class: "button small", disabled: start + PAGE_SIZE >= total, onclick: () => go(start + PAGE_SIZE) }, "Next ›"),
        ),
      );
    })
    .catch((error) => replace(table, errorBox(error)));
}
