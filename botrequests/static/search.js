import { api, el, refName, requestLink, setupForgetKey, short, status, when } from "./common.js";

const FILTERS = ["bot", "organization", "createdBy", "success", "sessionKey", "from", "to"];
const form = document.getElementById("filters");
const rows = document.querySelector("#results tbody");
const more = document.getElementById("more");
let next = null;

// Filters live in the URL, so a search is a link that can be shared.
function fromUrl() {
  const params = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    const value = params.get(name);
    if (value !== null) form.elements[name].value = name === "from" || name === "to" ? value.replace(/Z$/, "") : value;
  }
}

function query() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    let value = form.elements[name].value.trim();
    if (!value) continue;
    if ((name === "from" || name === "to") && !value.endsWith("Z")) value = `${value}Z`;
    params.set(name, value);
  }
  return params;
}

function row(item) {
  const success = item.success === true ? "yes" : item.success === false ? "no" : "";
  return el(
    "tr",
    { "data-id": item.id },
    el("td", {}, requestLink(item.id, when(item.createdAt) || item.id)),
    el("td", { text: refName(item.bot) }),
    el("td", { text: refName(item.createdBy) }),
    el("td", { class: success, text: success }),
    el("td", { class: "clip", text: short(item.prompt) }),
    el("td", { class: "clip", text: short(item.response) }),
  );
}

async function load(append) {
  const params = query();
  params.set("limit", "50");
  if (append && next) params.set("cursor", next);
  status("Loading…");
  try {
    const page = await api(`/bot-requests?${params}`);
    if (!append) rows.replaceChildren();
    rows.append(...page.items.map(row));
    next = page.next;
    more.hidden = !next;
    const shown = rows.children.length;
    status(shown ? `${shown} request${shown === 1 ? "" : "s"}${next ? ", more available" : ""}` : "No requests match.");
  } catch (error) {
    status(`Could not search: ${error.message}`, true);
  }
}

async function loadBots() {
  try {
    const bots = await api("/bots?limit=500");
    const select = form.elements.bot;
    const wanted = new URLSearchParams(location.search).get("bot");
    for (const bot of bots.items) select.append(el("option", { value: bot.id, text: `${bot.name} (${bot.slug})` }));
    if (wanted) select.value = wanted;
  } catch {
    // the search below says what went wrong
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = query();
  history.replaceState(null, "", params.toString() ? `/ui?${params}` : "/ui");
  load(false);
});
more.addEventListener("click", () => load(true));

setupForgetKey();
fromUrl();
await loadBots();
load(false);
