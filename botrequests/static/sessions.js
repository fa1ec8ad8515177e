import { api, el, filterLink, refId, refName, setupPage, status, timeEl } from "./common.js";

// The 100 most recently active sessions (the API's most per call), those whose key starts
// with what is typed; each opens the session's requests.
const form = document.getElementById("filters");
const rows = document.querySelector("#results tbody");

const cell = (label, attributes, ...children) => el("td", { "data-label": label, ...attributes }, ...children);

function row(session) {
  const user = session.user;
  return el(
    "tr",
    { "data-session": session.sessionKey },
    cell("Session", {}, filterLink("sessionKey", session.sessionKey)),
    cell("User", {}, user ? filterLink("createdBy", refId(user), refName(user)) : el("span", { class: "muted", text: "none" })),
    cell("Requests", { class: "num", text: String(session.requests) }),
    cell("First", {}, timeEl(session.first)),
    cell("Last", {}, timeEl(session.last)),
  );
}

async function load() {
  const q = new URLSearchParams(location.search).get("q") ?? "";
  form.elements.q.value = q;
  status("Loading…");
  try {
    const params = new URLSearchParams({ limit: "100", ...(q ? { q } : {}) });
    const { items } = await api(`/bot-requests/sessions?${params}`);
    rows.replaceChildren(...items.map(row));
    status(items.length ? `${items.length} session${items.length === 1 ? "" : "s"}, most recently active first` : "No sessions match.");
  } catch (error) {
    rows.replaceChildren();
    status(`Could not list sessions: ${error.message}`, true);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = form.elements.q.value.trim();
  history.pushState(null, "", q ? `/ui/sessions?${new URLSearchParams({ q })}` : "/ui/sessions");
  load();
});
window.addEventListener("popstate", load);

setupPage();
load();
