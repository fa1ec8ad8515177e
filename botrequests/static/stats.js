// Counts, success, credits, tokens, cost, latency and feedback per bot, model, user, day,
// tag or session over a chosen range: a chart (Chart.js, served by the service) and a table
// of the same numbers from GET /bot-requests/stats, with the requests behind them exported.
import { api, download, el, filterLink, setupPage, status, when } from "./common.js";

const form = document.getElementById("filters");
const rows = document.querySelector("#stats tbody");
const FIELDS = ["from", "to", "groupBy", "metric"];
const GROUP_NAMES = { bot: "Bot", model: "Model", createdBy: "User", day: "Day (UTC)", tag: "Tag", sessionKey: "Session" };
const FILTER_OF = { bot: "bot", createdBy: "createdBy", model: "model", tag: "tag", sessionKey: "sessionKey" };
let chart = null;

function fromUrl() {
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) {
    const value = params.get(name);
    if (value) form.elements[name].value = value;
  }
}

// The range as the API's filters: whole UTC days, `to` inclusive.
function filters() {
  const params = new URLSearchParams();
  const from = form.elements.from.value;
  const to = form.elements.to.value;
  if (from) params.set("from", `${from}T00:00:00Z`);
  if (to) params.set("to", `${to}T23:59:59.999Z`);
  return params;
}

const groupKey = (item, groupBy) => item[groupBy];

function groupLabel(key) {
  if (key === null || key === undefined) return "(none)";
  if (typeof key === "object") return key.name ?? key.id;
  return String(key);
}

function metricValue(item, metric) {
  if (metric === "feedback") return item.feedback?.averageScore ?? 0;
  return item[metric] ?? 0;
}

function cell(value) {
  return el("td", { class: "num", text: value === null || value === undefined ? "—" : String(value) });
}

function showTable(items, groupBy) {
  document.getElementById("group-name").textContent = GROUP_NAMES[groupBy];
  rows.replaceChildren(...items.map((item) => {
    const key = groupKey(item, groupBy);
    const label = groupLabel(key);
    const id = key && typeof key === "object" ? key.id : key;
    const filter = FILTER_OF[groupBy];
    const name = filter && id ? filterLink(filter, id, label) : document.createTextNode(label);
    return el(
      "tr",
      { "data-group": label },
      el("td", {}, name),
      cell(item.requests),
      cell(`${(item.successRate * 100).toFixed(1)}%`),
      cell(item.failed),
      cell(item.credits),
      cell(item.tokens),
      cell(item.cost),
      cell(item.averageLatencyMs),
      cell(item.latencyP50Ms === null || item.latencyP50Ms === undefined ? null : `${item.latencyP50Ms} / ${item.latencyP95Ms}`),
      cell(item.feedback?.count ? `${item.feedback.averageScore} (${item.feedback.count})` : null),
      el("td", { class: "muted", text: `${when(item.first)} – ${when(item.last)}` }),
    );
  }));
}

function showChart(items, groupBy, metric) {
  const option = form.elements.metric.selectedOptions[0];
  const data = {
    labels: items.map((item) => groupLabel(groupKey(item, groupBy))),
    datasets: [{ label: option.textContent, data: items.map((item) => metricValue(item, metric)), backgroundColor: "#2456c7" }],
  };
  const canvas = document.getElementById("chart");
  if (chart) chart.destroy();
  // Chart.js is the vendored UMD build (a global), loaded before this module.
  chart = new window.Chart(canvas, {
    type: "bar",
    data,
    options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: true } }, scales: { y: { beginAtZero: true } } },
  });
}

async function load() {
  const groupBy = form.elements.groupBy.value;
  const params = filters();
  params.set("groupBy", groupBy);
  status("Loading…");
  try {
    const answer = await api(`/bot-requests/stats?${params}`);
    // Busiest first, so the chart's left shows what matters (days stay in order).
    const items = groupBy === "day" ? answer.items.slice().sort((a, b) => String(a.day).localeCompare(String(b.day))) : answer.items.slice().sort((a, b) => b.requests - a.requests);
    showTable(items, groupBy);
    showChart(items, groupBy, form.elements.metric.value);
    const total = items.reduce((sum, item) => sum + item.requests, 0);
    status(`${total} request${total === 1 ? "" : "s"} in ${items.length} group${items.length === 1 ? "" : "s"}${answer.truncated ? " (only the first groups)" : ""}; times in UTC.`);
  } catch (error) {
    rows.replaceChildren();
    if (chart) { chart.destroy(); chart = null; }
    status(`Could not load the stats: ${error.message}`, true);
  }
}

async function exportAs(format) {
  const params = filters();
  params.set("format", format);
  status(`Exporting (${format.toUpperCase()})…`);
  try {
    const name = await download(`/bot-requests/export?${params}`);
    status(`Saved ${name}.`);
  } catch (error) {
    status(`Could not export: ${error.message}`, true);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const name of FIELDS) if (form.elements[name].value) params.set(name, form.elements[name].value);
  const url = `/ui/stats?${params}`;
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  load();
});
form.elements.metric.addEventListener("change", () => form.requestSubmit());
form.elements.groupBy.addEventListener("change", () => form.requestSubmit());
document.getElementById("export-ndjson").addEventListener("click", () => exportAs("ndjson"));
document.getElementById("export-csv").addEventListener("click", () => exportAs("csv"));
window.addEventListener("popstate", () => { fromUrl(); load(); });

setupPage();
fromUrl();
load();
