// One dead letter: why it failed, where it came from, its headers and its value as text,
// pretty-printed JSON or base64.

import { ApiError, get } from "./api.js";
import { badge, errorBox, h, replace, when } from "./ui.js";

const utf8 = new TextEncoder();

function toBase64(text) {
  let binary = "";
  for (const byte of utf8.encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function fromBase64(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
}

/** The value in each form; null where it has none (JSON of a value that is not JSON). */
function forms(letter) {
  if (letter.value_format === "json") {
    const text = JSON.stringify(letter.value);
    return { text, json: JSON.stringify(letter.value, null, 2), base64: toBase64(text) };
  }
  if (letter.value_format === "text") {
    let pretty = null;
    try {
      pretty = JSON.stringify(JSON.parse(letter.value), null, 2);
    } catch {
      pretty = null;
    }
    return { text: letter.value, json: pretty, base64: toBase64(letter.value) };
  }
  if (letter.value_format === "base64") {
    return { text: fromBase64(letter.value), json: null, base64: letter.value };
  }
  return { text: null, json: null, base64: null };
}

export function render(container, { id }) {
  const body = h("div", {}, h("p", { class: "muted" }, "Reading the dead letter…"));
  replace(container, h("div", { class: "page-head" }, h("h1", {}, h("a", { href: "#/dead-letters", class: "crumb" }, "Dead letters"), " / ", id)), body);

  get(`/ops/dlq/messages/${encodeURIComponent(id)}`)
    .then((letter) => draw(letter))
    .catch((error) => replace(body, error instanceof ApiError && error.status === 404 ? h("p", { class: "empty" }, `Dead letter ${id} not found.`) : errorBox(error)));

  function draw(letter) {
    const values = forms(letter);
    const preferred = values.json !== null ? "json" : values.text !== null && letter.value_format !== "base64" ? "text" : "base64";
    const shown = h("pre", { class: "value", "aria-label": "value" });
    const tabs = h("div", { class: "tabs", role: "tablist" });
    const pick = (form) => {
      for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.dataset.form === form));
      shown.textContent = values[form] ?? "";
    };
    for (const [form, label] of [["text", "Text"], ["json", "JSON"], ["base64", "Base64"]]) {
      tabs.append(h("button", { type: "button", role: "tab", dataset: { form }, disabled: values[form] === null, onclick: () => pick(form) }, label));
    }
    const source = letter.source || {};
    replace(
      body,
      h(
        "section",
        { class: "panel" },
        h("div", { class: "summary-head" }, badge(letter.status), h("code", { class: "code-error" }, letter.error_class), h("span", { class: "muted" }, `stage ${letter.stage}`)),
        h("p", { class: "error-message" }, letter.error_message),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Dead-lettered"), h("dd", {}, when(letter.dead_lettered_at)),
          h("dt", {}, "First failed"), h("dd", {}, when(letter.first_failed_at)),
          h("dt", {}, "Source"), h("dd", {}, `${source.topic ?? "?"} partition ${source.partition ?? "?"} offset ${source.offset ?? "?"}`),
          letter.origin ? [h("dt", {}, "Origin"), h("dd", {}, letter.origin)] : null,
          h("dt", {}, "Attempts"), h("dd", {}, String(letter.attempts ?? "–")),
          h("dt", {}, "Replays"), h("dd", {}, `${letter.replay_count}${letter.replay_id ? ` (last by ${letter.replay_id})` : ""}`),
          h("dt", {}, "Entity"), h("dd", {}, letter.entity || "–"),
          h("dt", {}, "Batch"), h("dd", {}, letter.batch_id ? h("a", { href: `#/batches/${encodeURIComponent(letter.batch_id)}` }, letter.batch_id) : "–"),
          h("dt", {}, "Key"), h("dd", {}, letter.key ?? "–"),
          h("dt", {}, "Size"), h("dd", {}, `${letter.size} bytes`),
        ),
        letter.status === "pending" && letter.key
          ? h("p", {}, h("a", { class: "button", href: `#/dead-letters?key=${encodeURIComponent(letter.key)}&status=pending` }, "Replay letters with this key…"))
          : null,
      ),
      h(
        "section",
        { class: "panel" },
        h("h2", {}, "Headers"),
        Object.keys(letter.headers || {}).length
          ? h("div", { class: "table-wrap" }, h("table", { class: "table headers" }, h("tbody", {}, Object.entries(letter.headers).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, h("code", {}, v)))))))
          : h("p", { class: "empty" }, "No headers."),
      ),
      h("section", { class: "panel" }, h("h2", {}, "Value"), letter.value_format === "none" ? h("p", { class: "empty" }, "The value was not kept (see batchline.value.omitted).") : [tabs, shown]),
    );
    if (letter.value_format !== "none") pick(preferred);
  }
}
