import { api, el, isId, refName, requestLink, setupForgetKey, short, status, when } from "./common.js";

const id = decodeURIComponent(location.pathname.split("/").pop() || "");
const pretty = (value) => (value === undefined ? "" : JSON.stringify(value, null, 2));

function fact(list, name, value) {
  list.append(el("dt", { text: name }), el("dd", {}, value instanceof Node ? value : document.createTextNode(value ?? "")));
}

function showRequest(item) {
  document.title = `botrequests — ${item.id}`;
  document.getElementById("title").textContent = `Request ${item.id}`;
  const facts = document.getElementById("facts");
  const bot = item.bot && typeof item.bot === "object" ? `${item.bot.name} (${item.bot.slug})` : item.bot;
  fact(facts, "Bot", bot);
  fact(facts, "User", refName(item.createdBy));
  fact(facts, "Organization", refName(item.organization));
  fact(facts, "Success", item.success ? "yes" : "no");
  fact(facts, "Credits", item.credits ?? "");
  fact(facts, "Session", item.sessionKey ?? "");
  fact(facts, "IP", item.ip ?? "");
  fact(facts, "Created", when(item.createdAt));
  fact(facts, "Updated", when(item.updatedAt));
  if (item.originalRequest) fact(facts, "Follows up", requestLink(item.originalRequest, item.originalRequest));
  document.getElementById("inputs").textContent = pretty(item.inputs ?? {});
  document.getElementById("prompt").textContent = item.prompt ?? "(no prompt recorded)";
  document.getElementById("response").textContent = pretty(item.response);
  const images = document.getElementById("images");
  for (const image of item.images ?? []) {
    images.append(el("li", { text: typeof image === "object" ? `${image.fileName} (${image.s3Key})` : image }));
  }
  if (!images.children.length) images.append(el("li", { class: "muted", text: "none" }));
  document.getElementById("request").hidden = false;
}

// A thread comes a page at a time (THREAD_MAX_MEMBERS per answer): follow `next`, up to
// MAX_THREAD_PAGES pages, and draw it whole.
const MAX_THREAD_PAGES = 20;

async function loadThread(id) {
  const base = `/bot-requests/${id}/thread?populate=bot`;
  let page = await api(base);
  const thread = { ...page, requests: [...page.requests] };
  for (let pages = 1; page.next && pages < MAX_THREAD_PAGES; pages++) {
    page = await api(`${base}&cursor=${encodeURIComponent(page.next)}`);
    thread.requests.push(...page.requests);
  }
  thread.truncated = page.truncated;
  thread.more = Boolean(page.next);
  return thread;
}

// The thread as an indented tree, drawn as a flat list (no deep nesting in the DOM).
// Only rows under expanded nodes are drawn, so a thread of thousands stays responsive:
// the path from the root to this request starts expanded, every other branch collapsed.
function showThread(thread) {
  const requests = thread.requests;
  const byId = new Map(requests.map((r) => [r.id, r]));
  const children = new Map();
  for (const r of requests) {
    const parent = r.depth === 0 ? null : r.originalRequest;
    if (parent && byId.has(parent)) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(r);
    }
  }
  const expanded = new Set();
  for (let node = byId.get(id); node; node = node.depth > 0 ? byId.get(node.originalRequest) : null) {
    expanded.add(node.id);
    if (node.depth === 0) break;
  }

  const totals = document.getElementById("totals");
  const failures = requests.filter((r) => r.success === false).length;
  const credits = requests.reduce((sum, r) => sum + (r.credits ?? 0), 0);
  const times = requests.map((r) => r.createdAt).filter(Boolean).sort();
  fact(totals, "Requests", String(requests.length));
  fact(totals, "Failures", String(failures));
  fact(totals, "Credits", String(credits));
  fact(totals, "First", when(times[0]));
  fact(totals, "Last", when(times[times.length - 1]));

  const notes = [];
  if (thread.more) notes.push(`Truncated: only the first ${thread.requests.length} requests of this thread are shown.`);
  else if (thread.truncated) notes.push("Truncated: the thread is deeper than the service follows; not every request is shown.");
  if (thread.cycle) notes.push("Cycle: these requests follow each other in a loop; the oldest is shown as the root.");
  const notice = document.getElementById("thread-notes");
  notice.textContent = notes.join(" ");
  notice.hidden = notes.length === 0;

  const tree = document.getElementById("tree");
  const root = byId.get(thread.root);
  function draw() {
    const rows = [];
    const stack = root ? [root] : [];
    const seen = new Set();
    while (stack.length) {
      const node = stack.pop();
      if (seen.has(node.id)) continue;
      seen.add(node.id);
      rows.push(line(node));
      if (expanded.has(node.id)) stack.push(...(children.get(node.id) ?? []).slice().reverse());
    }
    tree.replaceChildren(...rows);
  }
  function line(node) {
    const kids = children.get(node.id) ?? [];
    const item = el("li", { "data-id": node.id, "data-depth": String(node.depth) });
    item.style.paddingLeft = `${Math.min(node.depth, 40) * 1.2 + 0.5}em`;
    if (node.id === id) { item.classList.add("current"); item.setAttribute("aria-current", "true"); }
    if (kids.length) {
      const open = expanded.has(node.id);
      const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": String(open), title: `${kids.length} follow-up(s)`, text: open ? "−" : "+" });
      toggle.addEventListener("click", () => { if (open) expanded.delete(node.id); else expanded.add(node.id); draw(); });
      item.append(toggle);
    } else {
      item.append(el("span", { class: "spacer" }));
    }
    const mark = node.success === false ? "✗" : "✓";
    item.append(
      el("span", { class: "depth", text: `#${node.depth}` }),
      requestLink(node.id, when(node.createdAt) || node.id),
      el("span", { class: node.success === false ? "no" : "yes", text: mark }),
      el("span", { class: "text", text: short(node.prompt ?? node.response, 100) }),
    );
    return item;
  }
  draw();
  document.getElementById("thread").hidden = false;
}

async function main() {
  setupForgetKey();
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
  try {
    showThread(await loadThread(id));
  } catch (error) {
    status(`Could not load the thread: ${error.message}`, true);
  }
}

main();
