import {
  answerText, api, cost, el, factSpans, failureText, feedbackText, filterLink, highlighted, isId, pageWords,
  refId, refName, requestLink, score, setupPage, short, status, timeEl, usageFacts, userText, when,
} from "./common.js";

const id = decodeURIComponent(location.pathname.split("/").pop() || "");
// Opened from a search: its words are highlighted wherever the request's text is shown.
const words = pageWords();
const marked = (text) => highlighted(text, words);
const pretty = (value) => (value === undefined ? "" : JSON.stringify(value, null, 2));
const FOLD_CHARS = 1200; // longer answers start folded
const FOLD_LINES = 24; // JSON answers longer than this start folded

function fact(list, name, value) {
  list.append(el("dt", { text: name }), el("dd", {}, value instanceof Node ? value : document.createTextNode(value ?? "")));
}

function showRequest(item) {
  document.title = `botrequests — ${short(userText(item), 40) || item.id}`;
  const failed = item.success === false;
  document.getElementById("title").textContent = `${refName(item.bot) || "Request"} · ${when(item.createdAt)} UTC`;
  document.getElementById("failed").hidden = !failed;
  const failure = failed ? failureText(item) : "";
  document.getElementById("failure").textContent = failure ? `: ${short(failure, 300)}` : " (success: false).";
  if (words.length) {
    const note = document.getElementById("words-note");
    note.append(`Highlighted: ${words.join(", ")} · `, el("a", { href: location.pathname, text: "clear" }));
    note.hidden = false;
  }
  const summary = document.getElementById("summary");
  summary.append(
    el("span", { class: failed ? "no" : "yes", text: failed ? "✗ failed" : "✓ succeeded" }),
    " · ", filterLink("bot", refId(item.bot), refName(item.bot)),
    " · ", item.createdBy ? filterLink("createdBy", refId(item.createdBy), refName(item.createdBy)) : "no user",
    ...(item.sessionKey ? [" · session ", filterLink("sessionKey", item.sessionKey)] : []),
    ...usageFacts(item).map((f) => ` · ${f}`),
  );
  document.getElementById("request").hidden = false;

  const facts = document.getElementById("facts");
  const bot = item.bot && typeof item.bot === "object" ? `${item.bot.name} (${item.bot.slug})` : item.bot;
  fact(facts, "Bot", filterLink("bot", refId(item.bot), bot));
  fact(facts, "User", filterLink("createdBy", refId(item.createdBy), refName(item.createdBy)));
  fact(facts, "Organization", filterLink("organization", refId(item.organization), refName(item.organization)));
  fact(facts, "Status", failed ? "failed" : "succeeded");
  fact(facts, "Credits", item.credits ?? "");
  const usage = item.usage ?? {};
  if (Object.keys(usage).length) {
    fact(facts, "Model", usage.model ?? "");
    fact(facts, "Tokens", `${usage.totalTokens ?? "?"} (prompt ${usage.promptTokens ?? "?"}, completion ${usage.completionTokens ?? "?"})`);
    fact(facts, "Latency", usage.latencyMs !== undefined ? `${usage.latencyMs} ms` : "");
    fact(facts, "Cost", cost(usage.cost));
  }
  if (item.tags?.length) {
    const tags = el("span");
    for (const tag of item.tags) tags.append(filterLink("tag", tag), " ");
    fact(facts, "Tags", tags);
  }
  if (item.metadata && Object.keys(item.metadata).length) fact(facts, "Metadata", Object.entries(item.metadata).map(([k, v]) => `${k}=${v}`).join(", "));
  fact(facts, "Invoice", invoiceText(item.invoice));
  fact(facts, "Session", item.sessionKey ? filterLink("sessionKey", item.sessionKey) : "");
  fact(facts, "IP", item.ip ?? "");
  fact(facts, "Created", timeEl(item.createdAt));
  fact(facts, "Updated", timeEl(item.updatedAt));
  fact(facts, "Id", item.id);
  if (item.originalRequest) fact(facts, "Follows up", requestLink(item.originalRequest, item.originalRequest));
  document.getElementById("inputs").replaceChildren(marked(pretty(item.inputs ?? {})));
  document.getElementById("prompt").replaceChildren(marked(item.prompt ?? "(no prompt recorded)"));
  document.getElementById("response").replaceChildren(marked(pretty(item.response)));
  const images = document.getElementById("images");
  for (const image of item.images ?? []) {
    images.append(el("li", { text: typeof image === "object" ? `${image.fileName} (${image.s3Key})` : image }));
  }
  if (!images.children.length) images.append(el("li", { class: "muted", text: "none" }));
  document.getElementById("details").hidden = false;
}

function invoiceText(invoice) {
  if (!invoice) return "none";
  if (typeof invoice !== "object") return invoice;
  return [`${invoice.credits ?? "?"} credits`, invoice.status, invoice.reference, invoice.id].filter(Boolean).join(" · ");
}

// A thread comes a page at a time (THREAD_MAX_MEMBERS per answer): follow `next`, up to
// MAX_THREAD_PAGES pages, and draw it whole.
const MAX_THREAD_PAGES = 20;

async function loadThread(id) {
  const base = `/bot-requests/${id}/thread?populate=bot,createdBy`;
  let page = await api(base);
  const thread = { ...page, items: [...page.items] };
  for (let pages = 1; page.next && pages < MAX_THREAD_PAGES; pages++) {
    page = await api(`${base}&cursor=${encodeURIComponent(page.next)}`);
    thread.items.push(...page.items);
  }
  thread.truncated = page.truncated;
  thread.more = Boolean(page.next);
  return thread;
}

// A node is a thread item: the record in `request`, and beside it what the service
// computed (`depth`, `feedback`), never mixed into the record's own fields.
function index(thread) {
  const byId = new Map(thread.items.map((node) => [node.request.id, node]));
  const children = new Map();
  for (const node of thread.items) {
    const parent = node.depth === 0 ? null : node.request.originalRequest;
    if (parent && byId.has(parent)) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(node);
    }
  }
  // root → this request, along originalRequest
  const path = [];
  for (let node = byId.get(id); node && path.length <= thread.items.length; node = node.depth > 0 ? byId.get(node.request.originalRequest) : null) {
    path.unshift(node);
    if (node.depth === 0) break;
  }
  return { byId, children, path };
}

// --- the conversation: the path to this request read as turns ---------------------------

function folded(text, className) {
  const body = el("div", { class: className }, marked(text));
  if (text.length <= FOLD_CHARS) return body;
  body.replaceChildren(marked(`${text.slice(0, FOLD_CHARS)}…`));
  const toggle = el("button", { type: "button", class: "link fold", text: `Show all (${text.length} characters)` });
  let open = false;
  toggle.addEventListener("click", () => {
    open = !open;
    body.replaceChildren(marked(open ? text : `${text.slice(0, FOLD_CHARS)}…`));
    toggle.textContent = open ? "Show less" : `Show all (${text.length} characters)`;
  });
  return el("div", {}, body, toggle);
}

function answerBlock(response) {
  const text = answerText(response);
  if (text !== null) return folded(text, "text");
  const empty = response === null || response === undefined || (typeof response === "object" && Object.keys(response).length === 0);
  if (empty) return el("div", { class: "muted", text: "(no answer recorded)" });
  const json = pretty(response);
  const lines = json.split("\n").length;
  const details = el("details", { class: "json" }, el("summary", { text: `JSON answer (${lines} line${lines === 1 ? "" : "s"})` }), el("pre", {}, marked(json)));
  if (lines <= FOLD_LINES) details.open = true;
  return details;
}

function branchSwitch(node, siblings) {
  const at = siblings.findIndex((s) => s.request.id === node.request.id);
  const nav = el("span", { class: "branches" });
  const step = (to, label) => (to ? el("a", { href: `/ui/requests/${to.request.id}`, text: label, title: short(userText(to.request), 60) }) : el("span", { class: "muted", text: label }));
  nav.append(step(siblings[at - 1], "‹"), ` branch ${at + 1} of ${siblings.length} `, step(siblings[at + 1], "›"));
  return nav;
}

function showConversation(thread, { children, path }) {
  const turns = document.getElementById("turns");
  for (const node of path) {
    const r = node.request;
    const parentKids = node.depth > 0 ? children.get(r.originalRequest) ?? [] : [];
    const failed = r.success === false;
    const user = el(
      "li",
      { class: "turn user", "data-id": r.id },
      el("div", { class: "who" }, el("strong", { text: refName(r.createdBy) || "User" }), " · ", timeEl(r.createdAt), " UTC ", parentKids.length > 1 ? branchSwitch(node, parentKids) : null),
      folded(userText(r) || "(no input recorded)", "text"),
    );
    if (r.prompt && userText(r) !== r.prompt) {
      user.append(el("details", { class: "prompt" }, el("summary", { text: "Prompt sent to the model" }), el("pre", {}, marked(r.prompt))));
    }
    const bot = el(
      "li",
      { class: `turn bot${failed ? " failed" : ""}${r.id === id ? " current" : ""}`, "data-id": r.id },
      el("div", { class: "who" },
        el("strong", { text: refName(r.bot) || "Bot" }),
        el("span", { class: failed ? "no" : "yes", text: failed ? " ✗ failed" : " ✓" }),
        ` · ${usageFacts(r, node.feedback).join(" · ")} · `,
        r.id === id ? el("span", { class: "muted", text: "this request" }) : requestLink(r.id, "open")),
      answerBlock(r.response),
    );
    turns.append(user, bot);
  }
  document.getElementById("conversation-note").textContent = path.length > 1 ? `(${path.length} turns from the start of the thread)` : "";
  const kids = children.get(id) ?? [];
  const followups = document.getElementById("followups");
  if (kids.length) {
    followups.append(el("span", { class: "muted", text: `Continues in ${kids.length} follow-up${kids.length === 1 ? "" : "s"}: ` }));
    // Each link says which one it is: its number, its time (to the millisecond when two
    // share a second) and what was said, so that two alike read apart.
    const seconds = kids.map((kid) => when(kid.request.createdAt));
    kids.slice(0, 20).forEach((kid, at) => {
      const r = kid.request;
      const moment = seconds.filter((s) => s === seconds[at]).length > 1 ? (r.createdAt ?? "").slice(11, 23) : seconds[at].slice(11);
      const said = short(userText(r), 40) || short(answerText(r.response) ?? r.response, 40);
      const link = requestLink(r.id, `${at + 1}. ${moment}${said ? ` · ${said}` : ""}`);
      link.title = `${r.createdAt ?? ""} · ${r.success === false ? "failed" : "succeeded"}`;
      followups.append(link);
    });
    followups.hidden = false;
  }
  document.getElementById("conversation").hidden = false;
}

// --- the tree ---------------------------------------------------------------------------

// A row is labelled by what tells it apart from its siblings: the user's input (not the
// template every row shares), then the start of the answer.
function rowLabel(record) {
  const input = short(userText(record), 60);
  const answer = short(answerText(record.response) ?? record.response, 60);
  return input ? `${input} → ${answer}` : answer;
}

function showThread(thread, { byId, children, path }) {
  const requests = thread.items.map((node) => node.request);
  const expanded = new Set(path.map((node) => node.request.id)); // the path starts open

  const totals = document.getElementById("totals");
  const sums = thread.totals ?? {};
  const failures = requests.filter((r) => r.success === false).length;
  const credits = requests.reduce((sum, r) => sum + (r.credits ?? 0), 0);
  const times = requests.map((r) => r.createdAt).filter(Boolean).sort();
  fact(totals, "Requests", String(requests.length));
  fact(totals, "Failures", String(failures));
  fact(totals, "Credits", String(credits));
  if (sums.totalTokens) fact(totals, "Tokens", String(sums.totalTokens));
  if (sums.cost) fact(totals, "Cost", cost(sums.cost));
  if (sums.feedback?.count) fact(totals, "Feedback", feedbackText(sums.feedback));
  fact(totals, "First (UTC)", timeEl(times[0]));
  fact(totals, "Last (UTC)", timeEl(times[times.length - 1]));

  const notes = [];
  if (thread.more) notes.push(`Truncated: only the first ${requests.length} requests of this thread are shown.`);
  else if (thread.truncated) notes.push("Truncated: the thread is deeper than the service follows; not every request is shown.");
  if (thread.cycle) notes.push("Cycle: these requests follow each other in a loop; the oldest is shown as the root.");
  const notice = document.getElementById("thread-notes");
  notice.textContent = notes.join(" ");
  notice.hidden = notes.length === 0;

  const tree = document.getElementById("tree");
  const root = byId.get(thread.root);
  // Only rows under expanded nodes are drawn, so a thread of thousands stays responsive.
  function draw() {
    const rows = [];
    const stack = root ? [root] : [];
    const seen = new Set();
    while (stack.length) {
      const node = stack.pop();
      const key = node.request.id;
      if (seen.has(key)) continue;
      seen.add(key);
      rows.push(line(node));
      if (expanded.has(key)) stack.push(...(children.get(key) ?? []).slice().reverse());
    }
    tree.replaceChildren(...rows);
  }
  function line(node) {
    const r = node.request;
    const kids = children.get(r.id) ?? [];
    const failed = r.success === false;
    const item = el("li", { "data-id": r.id, "data-depth": String(node.depth), class: failed ? "failed" : "" });
    // Indentation is capped at a third of the row, so that deep rows keep room to read.
    item.style.paddingLeft = `min(${Math.min(node.depth, 40) * 1.1 + 0.4}em, 33%)`;
    if (r.id === id) { item.classList.add("current"); item.setAttribute("aria-current", "true"); }
    if (kids.length) {
      const open = expanded.has(r.id);
      const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": String(open), title: `${kids.length} follow-up(s)`, text: open ? "−" : "+" });
      toggle.addEventListener("click", () => { if (open) expanded.delete(r.id); else expanded.add(r.id); draw(); });
      item.append(toggle);
    } else {
      item.append(el("span", { class: "spacer" }));
    }
    item.append(
      el("span", { class: failed ? "no" : "yes", text: failed ? "✗" : "✓" }),
      requestLink(r.id, rowLabel(r) || r.id),
      // Each fact whole (no break inside); the facts wrap between them when narrow.
      el("span", { class: "meta" }, el("span", {}, timeEl(r.createdAt, when(r.createdAt).slice(5, 16))), " · ", ...factSpans(usageFacts(r, node.feedback))),
    );
    return item;
  }
  draw();
  document.getElementById("thread").hidden = false;
}

// Feedback on this request: score, who gave it, when, and the comment (as text).
async function showFeedback() {
  const { items } = await api(`/bot-requests/${id}/feedback`);
  if (!items.length) return;
  const people = new Map();
  await Promise.all([...new Set(items.map((f) => f.by).filter(isId))].map(async (user) => {
    try {
      people.set(user, (await api(`/users/${user}`)).name ?? user);
    } catch {
      people.set(user, user); // gone, or another organization's: its id
    }
  }));
  const list = document.getElementById("feedback-items");
  for (const given of items) {
    list.append(el(
      "li",
      { "data-id": given.id },
      el("span", { class: "score", text: score(given.score) || "0" }),
      " · ", given.by ? filterLink("createdBy", given.by, people.get(given.by)) : el("span", { class: "muted", text: "anonymous" }),
      " · ", timeEl(given.createdAt), " UTC",
      given.comment ? el("div", { class: "comment" }, marked(given.comment)) : null,
    ));
  }
  const total = items.reduce((sum, f) => sum + f.score, 0);
  document.getElementById("feedback-note").textContent = `(${feedbackText({ count: items.length, averageScore: total / items.length })})`;
  document.getElementById("feedback").hidden = false;
}

async function main() {
  setupPage();
  if (!isId(id)) {
    status(`"${id}" is not a request id (24 hexadecimal digits).`, true);
    return;
  }
  try {
    showRequest(await api(`/bot-requests/${id}`));
  } catch (error) {
    status(error.status === 404 ? `No request with id ${id}.` : `Could not load the request: ${error.message}`, true);
    return;
  }
  showFeedback().catch((error) => status(`Could not load the feedback: ${error.message}`, true));
  try {
    const thread = await loadThread(id);
    const indexed = index(thread);
    showConversation(thread, indexed);
    showThread(thread, indexed);
  } catch (error) {
    status(`Could not load the thread: ${error.message}`, true);
  }
}

main();
