// Small DOM helpers. Text always goes in as text nodes: nothing from the API is parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    // Through CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    else if (key === "style") Object.assign(element.style, value);
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const numbers = new Intl.NumberFormat("en");
export const count = (n) => (n === null || n === undefined ? "–" : numbers.format(n));

export function rate(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (n >= 100) return numbers.format(Math.round(n));
  return n.toFixed(n >= 10 ? 1 : 2).replace(/\.?0+$/, "") || "0";
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium", timeZone: "UTC" }) + " UTC";
}

export function ago(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function duration(fromIso, toIso) {
  if (!fromIso || !toIso) return "–";
  const ms = new Date(toIso).getTime() - new Date(fromIso).getTime();
  // The API's times are whole seconds.
  if (ms < 1000) return "< 1 s";
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function badge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

/** A bar of done/total; `parts` colours inserted and failed apart. */
export function progress(inserted, failed, total, label) {
  const share = (n) => (total > 0 ? Math.min(100, (100 * n) / total) : 0);
  const done = Math.round(share(inserted + failed));
  return h(
    "div",
    { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": done, "aria-label": label || "progress", title: `${count(inserted + failed)} of ${count(total)} records` },
    h("span", { class: "progress-ok", style: { width: `${share(inserted)}%` } }),
    h("span", { class: "progress-failed", style: { width: `${share(failed)}%` } }),
  );
}

export function card(label, value, extra = {}) {
  return h("div", { class: `card ${extra.class || ""}` }, h("div", { class: "card-label" }, label), h("div", { class: "card-value", "data-figure": extra.figure }, value), extra.note ? h("div", { class: "card-note" }, extra.note) : null);
}

export function errorBox(error) {
  return h("div", { class: "error-box", role: "alert" }, error.message || String(error));
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast toast-${kind}`, role: "status" }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** A modal that asks before something that cannot be undone; resolves to true or false. */
export function confirmDialog({ title, text, action, danger = true }) {
  return new Promise((resolve) => {
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    const dialog = h(
      "dialog",
      { class: "modal", "aria-label": title },
      h("h2", {}, title),
      h("p", {}, text),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "button", onclick: () => close(false) }, "Cancel"),
        h("button", { type: "button", class: `button ${danger ? "danger" : "primary"}`, onclick: () => close(true) }, action),
      ),
    );
    dialog.addEventListener("cancel", () => close(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Page navigation: "Page 2 of 7 · 130 batches" with previous and next. */
export function pager({ page, pages, total, noun, onPage }) {
  return h(
    "div",
    { class: "pager" },
    h("button", { type: "button", class: "button small", disabled: page <= 1, onclick: () => onPage(page - 1) }, "‹ Previous"),
    h("span", { class: "pager-text" }, `Page ${count(page)} of ${count(Math.max(pages, 1))} · ${count(total)} ${noun}`),
    h("button", { type: "button", class: "button small", disabled: page >= pages, onclick: () => onPage(page + 1) }, "Next ›"),
  );
}

export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map(([optionValue, text]) => h("option", { value: optionValue, selected: optionValue === (value || "") }, text)),
  );
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function shortJson(value, max = 120) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
