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
  if (feedback?.count) facts.push(`feedback ${feedback.averageScore >= 0 ? "+" : ""}${feedback.averageScore} (${feedback.count})`);
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
