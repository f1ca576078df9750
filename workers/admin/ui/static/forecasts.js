// The Forecasts tab: the monthly Service Request variance report (SEC H3.24) from
// GET /v1/reports/sr-variance, per User with expandable per-SRV rows, and its CSV
// (fetched with the Authorization header and offered through a Blob URL, so the token is
// never in a URL). A User token gets its own row only: the API decides (docs/forecasts.md).
import { ApiError, call, fetchBlob, withQuery } from "./api.js";
import { clear, el, pill, text } from "./views.js";

const MONTH_RE = /^\d{4}-(0[1-9]|1[0-2])$/;
const OUTCOMES = ["accepted", "rejected", "throttled", "quarantined"];
let latest = 0; // the newest load: an older answer arriving after it is dropped
const FLAG_WORDS = {
  no_forecast: "no forecast",
  exceptional_demand: "exceptional demand (>150%)",
  well_below_forecast: "well below forecast (<50%)",
};

// YYYY-MM of the calendar month `offset` months from now, in UTC (as the API counts).
export function monthFromNow(offset, now = new Date()) {
  const date = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
  return `${date.getUTCFullYear()}-${String(date.getUTCMonth() + 1).padStart(2, "0")}`;
}

function count(value) {
  return typeof value === "number" && Number.isFinite(value) ? value.toLocaleString("en-GB") : "–";
}

function signed(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value > 0 ? `+${count(value)}` : count(value);
}

function percent(ratio) {
  return typeof ratio === "number" && Number.isFinite(ratio) ? `${(ratio * 100).toFixed(1)}%` : "–";
}

function flags(list) {
  const words = Array.isArray(list) ? list.filter((f) => typeof f === "string") : [];
  if (!words.length) return el("span", { class: "note" }, "–");
  return el("span", { class: "flags" }, words.map((f) => el("span", { class: `pill flag ${f.replace(/[^a-z_]/g, "")}`, title: FLAG_WORDS[f] || f }, FLAG_WORDS[f] || f)));
}

function outcomes(byOutcome) {
  const doc = byOutcome && typeof byOutcome === "object" ? byOutcome : {};
  return OUTCOMES.filter((o) => doc[o]).map((o) => `${o} ${count(doc[o])}`).join(", ") || "–";
}

function numbers(row, forecast, actual) {
  return [
    el("td", { class: "num", dataset: { col: "actual" } }, count(actual)),
    el("td", { class: "num", dataset: { col: "forecast" } }, forecast === null || forecast === undefined ? "none" : count(forecast)),
    el("td", { class: "num", dataset: { col: "variance" } }, signed(row.variance)),
    el("td", { class: "num" }, percent(row.variance_ratio)),
    el("td", { class: "reason" }, outcomes(row.by_outcome)),
    el("td", { dataset: { col: "flags" } }, flags(row.flags)),
  ];
}

function userRows(user) {
  const services = Array.isArray(user.services) ? user.services : [];
  const rows = [];
  const toggle = el("button", { type: "button", class: "small plain expand", "aria-expanded": "false", dataset: { user: user.user_id } },
    `▸ ${services.length} SRV${services.length === 1 ? "" : "s"}`);
  const main = el("tr", { class: `user-row${(user.flags || []).length ? " flagged" : ""}`, dataset: { user: user.user_id } },
    el("td", {}, services.length ? toggle : ""),
    el("td", { class: "mono" }, text(user.user_id)),
    el("td", {}, text(user.name)),
    ...numbers(user, user.forecast_total, user.actual_total));
  rows.push(main);
  const subs = services.map((s) => el("tr", { class: `srv-row${(s.flags || []).length ? " flagged" : ""}`, hidden: true, dataset: { user: user.user_id, srv: s.srv } },
    el("td", {}),
    el("td", { class: "srv", colspan: "2" }, `SRV ${text(s.srv)}`),
    ...numbers(s, s.forecast, s.actual)));
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = `${open ? "▾" : "▸"} ${services.length} SRV${services.length === 1 ? "" : "s"}`;
    for (const sub of subs) sub.hidden = !open;
  });
  return rows.concat(subs);
}

function summaryText(doc, operator) {
  const s = doc.summary || {};
  const state = doc.complete ? "the whole month" : "month to date (the month is not over: \"well below forecast\" is not judged yet)";
  const who = operator ? `${count(s.users)} User${s.users === 1 ? "" : "s"}` : "your User";
  const users = Array.isArray(doc.users) ? doc.users : [];
  const against = users.some((u) => u.has_forecast) ? `against ${count(s.forecast_total)} forecast` : "with no forecast";
  return `${doc.month}, ${state}: ${who}, ${count(s.actual_total)} request${s.actual_total === 1 ? "" : "s"} sent ${against}.`;
}

// Show the report for the month in #f-month into #f-result. Only the newest of loads
// that overlap (a tab click, then "This month" at once) is shown.
export async function loadForecasts(operator) {
  const mine = ++latest;
  const out = document.getElementById("f-result");
  const month = document.getElementById("f-month").value;
  document.getElementById("f-csv").disabled = true;
  if (!MONTH_RE.test(month)) {
    clear(out).append(el("p", { class: "error" }, "Choose a month (YYYY-MM)."));
    return;
  }
  let doc;
  try {
    doc = await call("GET", withQuery("/v1/reports/sr-variance", { month }));
  } catch (err) {
    if (mine !== latest) return;
    clear(out);
    if (err instanceof ApiError && (err.status === 422 || err.status === 503)) {
      out.append(el("p", { class: "error" }, err.message));
      return;
    }
    throw err;
  }
  if (mine !== latest) return;
  clear(out);
  document.getElementById("f-csv").disabled = false;
  out.append(el("p", { class: "note", id: "f-summary" }, summaryText(doc, operator)));
  const users = Array.isArray(doc.users) ? doc.users : [];
  if (!users.length) {
    out.append(el("p", { class: "note" }, `No requests and no forecast for ${doc.month}.`));
    return;
  }
  const body = el("tbody");
  for (const user of users) body.append(...userRows(user));
  out.append(el("div", { class: "scroll" }, el("table", { id: "f-table" },
    el("thead", {}, el("tr", {}, ["", "User", "Name", "Actual", "Forecast", "Variance", "Actual / forecast", "By outcome", "Flags"].map((h) => el("th", {}, h)))),
    body)));
}

// Fetch the CSV with the token in the Authorization header and save it from a Blob URL.
export async function downloadCsv() {
  const month = document.getElementById("f-month").value;
  if (!MONTH_RE.test(month)) return null;
  const blob = await fetchBlob(withQuery("/v1/reports/sr-variance", { month, format: "csv" }), "text/csv");
  const url = URL.createObjectURL(new Blob([blob], { type: "text/csv" }));
  const link = el("a", { href: url, download: `sr-variance-${month}.csv`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return `sr-variance-${month}.csv`;
}
