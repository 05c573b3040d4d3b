// The console's shell: routing between pages, and the operator's token.

import { isOpen, onAuthProblem, setToken, token } from "./api.js";
import { h, replace } from "./ui.js";
import * as overview from "./overview.js";
import * as batches from "./batches.js";
import * as batch from "./batch.js";
import * as deadLetters from "./dead-letters.js";
import * as deadLetter from "./dead-letter.js";
import * as entities from "./entities.js";

const view = document.getElementById("view");
const banner = document.getElementById("banner");
const access = document.getElementById("access");
let cleanup = null;
let open = false;

function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "overview";
  const [path, search = ""] = hash.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const params = new URLSearchParams(search);
  if (parts[0] === "batches" && parts[1]) return { page: "batches", module: batch, args: { id: parts[1], params } };
  if (parts[0] === "batches") return { page: "batches", module: batches, args: { params } };
  if (parts[0] === "dead-letters" && parts[1]) return { page: "dead-letters", module: deadLetter, args: { id: parts[1], params } };
  if (parts[0] === "dead-letters") return { page: "dead-letters", module: deadLetters, args: { params } };
  if (parts[0] === "entities") return { page: "entities", module: entities, args: { name: parts[1], params } };
  return { page: "overview", module: overview, args: { params } };
}

function show() {
  if (cleanup) cleanup();
  cleanup = null;
  const { page, module, args } = route();
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  replace(view);
  cleanup = module.render(view, args) || null;
}

function showAccess() {
  if (open && !token()) {
    replace(access, h("span", { class: "pill pill-open", title: "Authentication is not configured: anyone who reaches this API may use it." }, "Open console · no token needed"));
  } else if (token()) {
    replace(
      access,
      h("span", { class: "pill pill-token" }, "Operator token set"),
      h("button", { type: "button", class: "link-button", onclick: () => { setToken(""); showAccess(); show(); } }, "Forget"),
    );
  } else {
    replace(access, h("button", { type: "button", class: "button small", onclick: () => askForToken("Paste a token.") }, "Enter token"));
  }
}

function askForToken(message) {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", placeholder: "operator token", "aria-label": "Operator token", required: true });
  const form = h(
    "form",
    {
      class: "token-form",
      onsubmit: (event) => {
        event.preventDefault();
        setToken(input.value.trim());
        banner.hidden = true;
        showAccess();
        show();
      },
    },
    h("strong", {}, "Token needed. "),
    h("span", { class: "auth-reason" }, message),
    h(
      "span",
      { class: "small" },
      " The console needs a token with the operator role, with reader to see batches and entities and producer to retry them. It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.",
    ),
    h("div", { class: "token-row" }, input, h("button", { type: "submit", class: "button primary" }, "Use token")),
  );
  replace(banner, form);
  banner.hidden = false;
  banner.className = "banner banner-auth";
  input.focus();
}

onAuthProblem((problem) => askForToken(problem.message));
window.addEventListener("hashchange", show);

open = await isOpen();
if (open) {
  banner.className = "banner banner-open";
  replace(
    banner,
    h("strong", {}, "This console is open."),
    h("span", { class: "hide-narrow" }, " The API accepts operator calls without a token."),
    " Anyone who can reach the API can retry, delete and replay.",
    h("span", { class: "hide-narrow" }, " Configure authentication to restrict it."),
  );
  banner.hidden = false;
}
showAccess();
show();
