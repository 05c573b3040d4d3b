// Every call the console makes goes through the public API, with the operator's bearer
// token when one was given. The token lives in sessionStorage: gone when the tab closes.

const TOKEN_KEY = "batchline.console.token";

export class AuthError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const listeners = new Set();

/** Called with an AuthError whenever the API answers 401 or 403. */
export function onAuthProblem(listener) {
  listeners.add(listener);
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra) {
  const all = { Accept: "application/json", ...extra };
  const current = token();
  if (current) all.Authorization = `Bearer ${current}`;
  return all;
}

function reason(body, fallback) {
  if (body && typeof body === "object") {
    if (body.error && typeof body.error === "object") return body.error.message || body.error.reason || fallback;
    if (Array.isArray(body.errors) && body.errors[0]) return body.errors[0].message || fallback;
  }
  return fallback;
}

async function parse(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A JSON call; resolves to { status, body, headers }, throws ApiError/AuthError. */
export async function call(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `The API did not answer (${error.message})`, null);
  }
  const parsed = await parse(response);
  if (response.status === 401 || response.status === 403) {
    const problem = authProblem(response.status, parsed);
    listeners.forEach((listener) => listener(problem));
    throw problem;
  }
  if (!response.ok) {
    throw new ApiError(response.status, reason(parsed, `${response.status} ${response.statusText}`), parsed);
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

export const get = (path) => call("GET", path).then((answer) => answer.body);

function authProblem(status, body) {
  // The API says which role the call needed ("This needs the producer role").
  const said = reason(body, "");
  const fallback =
    status === 401
      ? "This API needs a token."
      : "This token lacks a role this page needs.";
  return new AuthError(status, said ? (said.endsWith(".") ? said : `${said}.`) : fallback);
}

/** A call answered with anything but JSON (metrics, NDJSON), with the same token handling. */
export async function raw(path, accept = "*/*") {
  const response = await fetch(path, { headers: headers({ Accept: accept }) });
  if (response.status === 401 || response.status === 403) {
    const problem = authProblem(response.status, await parse(response));
    listeners.forEach((listener) => listener(problem));
    throw problem;
  }
  if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`, null);
  return response;
}

export const getText = (path) => raw(path, "text/plain").then((response) => response.text());

/** Save what a call answers as a file (a link could not carry the bearer token). */
export async function download(path, filename) {
  const blob = await (await raw(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return blob.size;
}

/** Whether the API answers an operator call without any token (authentication off). */
export async function isOpen() {
  try {
    const response = await fetch("/ops/dlq/replays?limit=1", { headers: { Accept: "application/json" } });
    return response.ok;
  } catch {
    return false;
  }
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
