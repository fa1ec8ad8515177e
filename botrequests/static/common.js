// Shared by the pages: the JSON API with the API key, errors in words, pickers, and safe
// DOM building. Data is only ever inserted as text (textContent), never as HTML.

const KEY = "botrequests.apiKey";

// The key lives in this tab (sessionStorage) unless the user asked to remember it on this
// device (localStorage).
export const storedKey = () => sessionStorage.getItem(KEY) || localStorage.getItem(KEY);

function forgetKey() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(status, detail));
    this.status = status;
    this.detail = detail;
  }
}

// FastAPI's 422 detail is a list of {loc, msg}: said as "field: message" in words.
function describe(status, detail) {
  if (Array.isArray(detail)) {
    return detail
      .map((e) => {
        const where = (e.loc ?? []).filter((p) => !["body", "query", "path"].includes(p)).join(".");
        return where ? `${where}: ${e.msg}` : e.msg;
      })
      .join("; ");
  }
  if (typeof detail === "string") return detail;
  if (status === 503) return "the database is not available right now; try again shortly";
  return `the service answered ${status}`;
}

async function call(path, accept) {
  const headers = { Accept: accept };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { headers });
  } catch {
    throw new ApiError(0, "the service cannot be reached");
  }
  if (response.status === 401) {
    // "no key" and "wrong key" are different problems, told apart here.
    const message = key
      ? "This API key was not accepted: it may be mistyped or revoked. Enter another."
      : "An API key is needed: the one the service printed at start-up, or one issued to your organization.";
    askForKey(message, Boolean(key));
    throw new ApiError(401, key ? "the API key was not accepted" : "an API key is needed");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.detail ?? response.statusText);
  }
  return response;
}

export async function api(path) {
  return (await call(path, "application/json")).json();
}

// A download the API key must authorize: fetched, then saved under the service's name.
export async function download(path) {
  const response = await call(path, "*/*");
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? "export";
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return name;
}

// The form asking for a key, the same on every page: made when first needed, at the top.
function keyForm() {
  let form = document.getElementById("key-form");
  if (form) return form;
  form = el(
    "form",
    { id: "key-form", class: "panel" },
    el("p", { class: "key-message" }),
    el("label", {}, "API key ", el("input", { type: "password", name: "key", autocomplete: "off", required: "" })),
    el("label", { class: "inline" }, el("input", { type: "checkbox", name: "remember" }), " Remember on this device"),
    el("button", { type: "submit", text: "Use key" }),
    el("p", { class: "muted", text: 'Without "remember", the key is kept in this tab only and forgotten when it closes.' }),
  );
  document.querySelector("main").prepend(form);
  return form;
}

function askForKey(message, wrong) {
  const form = keyForm();
  form.hidden = false;
  const note = form.querySelector(".key-message");
  note.textContent = message;
  note.classList.toggle("error", wrong);
  form.onsubmit = (event) => {
    event.preventDefault();
    const data = new FormData(form);
    forgetKey();
    const store = data.get("remember") ? localStorage : sessionStorage;
    store.setItem(KEY, String(data.get("key")).trim());
    location.reload();
  };
}

export function setupPage() {
  const button = document.getElementById("forget-key");
  if (button && storedKey()) {
    button.hidden = false;
    button.onclick = () => { forgetKey(); location.reload(); };
  }
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function status(message, isError = false) {
  const node = document.getElementById("status");
  node.textContent = message;
  node.classList.toggle("error", isError);
}

export function short(value, length = 80) {
  if (value === undefined || value === null) return "";
  const text = (typeof value === "string" ? value : JSON.stringify(value)).replace(/\s+/g, " ").trim();
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

export function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "") : "";
}

export const refName = (ref) => (ref && typeof ref === "object" ? ref.name ?? ref.id : ref ?? "");
export const refId = (ref) => (ref && typeof ref === "object" ? ref.id : ref ?? "");

export const isId = (value) => /^[0-9a-fA-F]{24}$/.test(value);

export const requestLink = (id, text) => el("a", { href: `/ui/requests/${id}`, text });

// A name that filters the search by what it names.
export function filterLink(name, value, text) {
  if (!value) return document.createTextNode(text ?? "");
  return el("a", { href: `/ui?${new URLSearchParams({ [name]: value })}`, text: text || value, class: "filter" });
}

// The request's answer as text to read: a string, or the text inside a common envelope
// ({message}, {text}, {content}, {answer}); null when it is structured data.
// Messages as OpenTelemetry spans record them ([{role, content}], botrequests' shape for
// `inputs.messages` and `response.messages`); null for anything else.
function messageList(value) {
  const ok = Array.isArray(value) && value.every((m) => m && typeof m === "object" && typeof m.role === "string");
  return ok ? value : null;
}

const contents = (messages) => messages.map((m) => (typeof m.content === "string" ? m.content : "")).filter(Boolean).join("\n\n");

export function answerText(response) {
  if (typeof response === "string") return response;
  const said = messageList(response?.messages);
  if (said && said.length && contents(said)) return contents(said);
  if (response && typeof response === "object" && !Array.isArray(response)) {
    for (const name of ["message", "text", "content", "answer", "output"]) {
      if (typeof response[name] === "string" && Object.keys(response).length <= 2) return response[name];
    }
  }
  return null;
}

// What the user gave: input values as "name: value", else the prompt.
export function userText(item) {
  // A conversation's messages: what was said since the last answer is this turn's.
  const messages = messageList(item.inputs?.messages);
  if (messages) {
    let start = messages.length;
    while (start > 0 && messages[start - 1].role !== "assistant") start -= 1;
    const turn = contents(messages.slice(start).filter((m) => m.role !== "system"));
    if (turn) return turn;
  }
  const inputs = item.inputs && typeof item.inputs === "object" ? Object.entries(item.inputs) : [];
  if (inputs.length) {
    return inputs.map(([name, value]) => `${name}: ${typeof value === "string" ? value : JSON.stringify(value)}`).join("\n");
  }
  return item.prompt ?? "";
}

// `feedback` is the service's summary ({count, averageScore}) from beside the record (a
// thread item's), never a field of the record: an application may store its own.
export function usageFacts(item, feedback) {
  const usage = item.usage ?? {};
  const facts = [];
  if (usage.latencyMs !== undefined) facts.push(`${Math.round(usage.latencyMs)} ms`);
  if (usage.totalTokens !== undefined) facts.push(`${usage.totalTokens} tokens`);
  if (item.credits !== undefined && item.credits !== null) facts.push(`${item.credits} credit${item.credits === 1 ? "" : "s"}`);
  if (feedback?.count) facts.push(`feedback ${score(feedback.averageScore) || "0"} (${feedback.count})`);
  return facts;
}

// A text input that suggests records as the user types (a datalist filled from a small
// search endpoint) and keeps the chosen record's id for the query.
export function picker(input, { search, label, value }) {
  const list = el("datalist", { id: `${input.name}-choices` });
  input.setAttribute("list", list.id);
  input.after(list);
  const ids = new Map();
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const items = await search(input.value.trim());
        list.replaceChildren(...items.map((item) => {
          ids.set(label(item), value(item));
          return el("option", { value: label(item) });
        }));
      } catch {
        // the search itself reports what went wrong
      }
    }, 150);
  });
  return {
    // The id for the query: a chosen suggestion's, else what was typed when it is one.
    value() {
      const text = input.value.trim();
      return ids.get(text) ?? text;
    },
    show(text, id) {
      ids.set(text, id);
      input.value = text;
    },
  };
}

// --- search words, as the service reads them (botrequests/words.py) ---------------------

// The separators: ASCII punctuation but `_`, white space, dashes, quotation marks, `…`
// and the like; the rest belongs to words.
const ASCII_SEPARATORS = "\\t\\n\\x0b\\x0c\\r\\x20-\\x2f\\x3a-\\x40\\x5b-\\x5e\\x60\\x7b-\\x7e";
const OTHER_SEPARATORS = "\\u00a0\\u00a1\\u00a7\\u00ab\\u00b6\\u00bb\\u00bf\\u00d7\\u00f7\\u2000-\\u200a\\u2010-\\u2029\\u202f\\u2030-\\u203e\\u205f\\u3000-\\u3002";
const WORD = new RegExp(`[^${ASCII_SEPARATORS}${OTHER_SEPARATORS}]+`, "gu");

// A word without case or accents.
export const fold = (word) => word.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();

export function searchWords(q) {
  return [...new Set((q ?? "").match(WORD)?.map(fold) ?? [])];
}

// `text` as nodes, the words of `words` (folded) in <mark>: text nodes only, never HTML.
export function highlighted(text, words) {
  const fragment = document.createDocumentFragment();
  const wanted = new Set(words ?? []);
  if (!wanted.size || !text) {
    fragment.append(text ?? "");
    return fragment;
  }
  let at = 0;
  for (const match of text.matchAll(WORD)) {
    if (!wanted.has(fold(match[0]))) continue;
    if (match.index > at) fragment.append(text.slice(at, match.index));
    fragment.append(el("mark", { text: match[0] }));
    at = match.index + match[0].length;
  }
  if (at < text.length) fragment.append(text.slice(at));
  return fragment;
}

// The words of this page's `?q=`, for pages opened from a search.
export const pageWords = () => searchWords(new URLSearchParams(location.search).get("q"));

// --- numbers and times for people -------------------------------------------------------

// Facts shown as "a · b · c", each kept whole (a line may break only between them).
export function factSpans(facts) {
  return facts.flatMap((fact, at) => [at ? " · " : "", el("span", { text: fact })]);
}

// A time to the second, with the full time (milliseconds, UTC) on hover.
export function timeEl(iso, text) {
  if (!iso) return document.createTextNode(text ?? "");
  return el("time", { datetime: iso, title: `${iso.replace("T", " ").replace("Z", "")} UTC`, text: text ?? when(iso) });
}

// A score or an average: at most two decimals, a sign for positive ones (scores are often
// -1 to +1), no trailing zeros.
export function score(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "";
  const shown = String(Number(Number(value).toFixed(2)));
  return Number(value) > 0 ? `+${shown}` : shown;
}

export function feedbackText(summary) {
  if (!summary?.count) return "";
  return `${score(summary.averageScore)} avg · ${summary.count} rating${summary.count === 1 ? "" : "s"}`;
}

// A cost in currency units, to what matters: 0.0021 → "0.0021", 1.5 → "1.50".
export function cost(value) {
  if (value === null || value === undefined || value === "") return "";
  const number = Number(value);
  if (Number.isNaN(number)) return String(value);
  return number >= 1 ? number.toFixed(2) : String(Number(number.toPrecision(3)));
}

// What a failed request says of its failure: the recorded error, else its answer's text.
export function failureText(item) {
  const error = item.response?.error;
  if (error && typeof error === "object") {
    return [error.type, error.message].filter((part) => typeof part === "string" && part).join(": ");
  }
  if (typeof error === "string") return error;
  return answerText(item.response) ?? "";
}

// `text` shortened to about `length` characters around its first word of `words` (a
// search's): a match deep in a long input is shown, with "…" where text is left out.
export function snippet(value, words, length = 80) {
  const text = short(value, 100_000);
  const wanted = new Set(words ?? []);
  let first = -1;
  if (wanted.size) {
    for (const match of text.matchAll(WORD)) {
      if (wanted.has(fold(match[0]))) { first = match.index; break; }
    }
  }
  if (first < length / 2 || text.length <= length) return short(text, length);
  const start = Math.max(0, Math.min(first - Math.floor(length / 3), text.length - length + 1));
  const cut = text.slice(start, start + length - 2);
  return `…${cut}${start + length - 2 < text.length ? "…" : ""}`;
}
