import {
  answerText, api, cost, el, factSpans, feedbackText, filterLink, highlighted, isId, picker, refId, refName,
  setupPage, snippet, status, timeEl, usageFacts, userText,
} from "./common.js";

const FILTERS = ["q", "bot", "createdBy", "sessionKey", "success", "tag", "model", "from", "to", "organization"];
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
  form.elements.metadata.value = [...params]
    .filter(([name]) => name.startsWith("metadata."))
    .map(([name, value]) => `${name.slice("metadata.".length)}=${value}`)
    .join(", ");
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
  // "tier=pro, retries=2": each pair a `metadata.<key>=<value>` filter.
  for (const pair of form.elements.metadata.value.split(",")) {
    const at = pair.indexOf("=");
    const key = pair.slice(0, at).trim();
    if (at > 0 && key) params.set(`metadata.${key}`, pair.slice(at + 1).trim());
  }
  return params;
}

// Each cell says what it is (shown as a label when rows become cards on a phone).
const cell = (label, attributes, ...children) => el("td", { "data-label": label, ...attributes }, ...children);

function tagLinks(tags) {
  const list = el("span", { class: "tags" });
  for (const tag of tags ?? []) list.append(filterLink("tag", tag), " ");
  return list;
}

function row(item, words, feedback) {
  const failed = item.success === false;
  const answer = answerText(item.response) ?? item.response;
  const botId = refId(item.bot);
  const userId = refId(item.createdBy);
  const usage = item.usage ?? {};
  // The request page highlights the same words.
  const href = `/ui/requests/${item.id}${words.length ? `?${new URLSearchParams({ q: words.join(" ") })}` : ""}`;
  const facts = usageFacts(item);
  return el(
    "tr",
    { "data-id": item.id, class: failed ? "failed" : "" },
    cell("Time", { class: "time" }, el("a", { href }, timeEl(item.createdAt, null))),
    cell("Bot", {}, filterLink("bot", botId, refName(item.bot))),
    cell("User", {}, filterLink("createdBy", userId, refName(item.createdBy))),
    cell("Status", { class: failed ? "no" : "yes", text: failed ? "✗ failed" : "✓" }),
    cell("Model", {}, usage.model ? filterLink("model", usage.model) : ""),
    cell("Usage", { class: "muted facts-inline" }, ...factSpans(facts)),
    cell("Cost", { class: "num", text: cost(usage.cost) }),
    cell("Tags", {}, tagLinks(item.tags)),
    cell("Feedback", { class: "num facts-inline" }, ...factSpans(feedbackText(feedback).split(" · ").filter(Boolean))),
    cell("Input", { class: "clip" }, highlighted(snippet(userText(item), words), words)),
    cell("Answer", { class: "clip" }, highlighted(snippet(answer, words), words)),
  );
}

async function load(append) {
  const params = query();
  params.set("limit", "50");
  params.set("feedback", "true");
  if (append && next) params.set("cursor", next);
  status("Loading…");
  try {
    const page = await api(`/bot-requests?${params}`);
    if (!append) rows.replaceChildren();
    const words = page.search?.words ?? [];
    rows.append(...page.items.map((item) => row(item, words, page.feedback?.[item.id])));
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
