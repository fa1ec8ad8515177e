// Shared by the pages: the JSON API with the API key from sessionStorage, and safe DOM
// building. Data is only ever inserted as text (textContent), never as HTML.

const KEY = "botrequests.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

export async function api(path) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    askForKey();
    throw new ApiError(401, "an API key is needed");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.detail ?? response.statusText);
  return body;
}

function askForKey() {
  const form = document.getElementById("key-form");
  form.hidden = false;
  form.onsubmit = (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, new FormData(form).get("key").trim());
    location.reload();
  };
}

export function setupForgetKey() {
  const button = document.getElementById("forget-key");
  if (!sessionStorage.getItem(KEY)) return;
  button.hidden = false;
  button.onclick = () => { sessionStorage.removeItem(KEY); location.reload(); };
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function status(message, isError = false) {
  const node = document.getElementById("status");
  node.textContent = message;
  node.classList.toggle("error", isError);
}

export function short(value, length = 80) {
  if (value === undefined || value === null) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

export function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "") : "";
}

export const refName = (ref) => (ref && typeof ref === "object" ? ref.name ?? ref.id : ref ?? "");

export const isId = (value) => /^[0-9a-fA-F]{24}$/.test(value);

export const requestLink = (id, text) => el("a", { href: `/ui/requests/${id}`, text });
