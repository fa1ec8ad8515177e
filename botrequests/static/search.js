import {
  answerText, api, el, filterLink, isId, picker, refId, refName, requestLink, setupPage, short,
  status, usageFacts, userText, when,
} from "./common.js";

const FILTERS = ["bot", "createdBy", "sessionKey", "success", "tag", "model", "from", "to", "organization"];
const form = document.getElementById("filters");
const rows = document.querySelector("#results tbody");
const more = document.getElementById("more");
let next = null;

const pickers = {
  bot: picker(form.elements.bot, {
    search: async (q) => (await api(`/bots?${new URLSearchParams({ q, limit: "10" })}`)).items,
    label: (bot) => `${bot.name} (${bot.slug})`,
    value: (bot) => bot.id,
  }),
  createdBy: picker(form.elements.createdBy, {
    search: async (q) => (await api(`/users?${new URLSearchParams({ q, limit: "10" })}`)).items,
    label: (user) => `${user.name ?? "(no name)"} · ${user.id.slice(-6)}`,
    value: (user) => user.id,
  }),
  sessionKey: picker(form.elements.sessionKey, {
    search: async (q) => (await api(`/bot-requests/sessions?${new URLSearchParams({ q, limit: "10" })}`)).items,
    label: (session) => session.sessionKey,
    value: (session) => session.sessionKey,
  }),
};

// Filters live in the URL (each search is a history entry), so a search is a link that
// can be shared and Back returns to the previous one.
async function fromUrl() {
  const params = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    const value = params.get(name) ?? "";
    form.elements[name].value = name === "from" || name === "to" ? value.replace(/Z$/, "") : value;
  }
  // Ids in the URL are shown by name.
  const named = [["bot", "/bots/", (b) => `${b.name} (${b.slug})`], ["createdBy", "/users/", (u) => `${u.name ?? "(no name)"} · ${u.id.slice(-6)}`]];
  await Promise.all(named.map(async ([name, path, label]) => {
    const id = params.get(name);
    if (!id || !isId(id)) return;
    try {
      pickers[name].show(label(await api(`${path}${id}`)), id);
    } catch {
      // an unknown id stays as typed; the search says what it finds
    }
  }));
}

function query() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    let value = pickers[name] ? pickers[name].value() : form.elements[name].value.trim();
    if (!value) continue;
    if ((name === "from" || name === "to") && !value.endsWith("Z")) value = `${value}Z`;
    params.set(name, value);
  }
  return params;
}

function row(item) {
  const failed = item.success === false;
  const answer = answerText(item.response) ?? item.response;
  const botId = refId(item.bot);
  const userId = refId(item.createdBy);
  return el(
    "tr",
    { "data-id": item.id, class: failed ? "failed" : "" },
    el("td", {}, requestLink(item.id, when(item.createdAt) || item.id)),
    el("td", {}, filterLink("bot", botId, refName(item.bot))),
    el("td", {}, filterLink("createdBy", userId, refName(item.createdBy))),
    el("td", { class: failed ? "no" : "yes", text: failed ? "✗ failed" : "✓" }),
    el("td", { class: "muted", text: usageFacts(item).join(" · ") }),
    el("td", { class: "clip", text: short(userText(item), 80) }),
    el("td", { class: "clip", text: short(answer, 80) }),
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
    // Rows of an earlier search would look like answers to this one.
    rows.replaceChildren();
    more.hidden = true;
    status(`Could not search: ${error.message}`, true);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = query();
  const url = params.toString() ? `/ui?${params}` : "/ui";
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  load(false);
});
more.addEventListener("click", () => load(true));
window.addEventListener("popstate", async () => { await fromUrl(); load(false); });

setupPage();
await fromUrl();
load(false);
