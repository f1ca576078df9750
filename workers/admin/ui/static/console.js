// dccgate console: sign in with a token, then the quarantine queue, decision lookup,
// configuration in force, forecasts and actuals and audit log, through the admin API (docs/console.md).
import { ApiError, call, forgetToken, segment, setToken, token, withQuery } from "./api.js";
import { downloadCsv, loadForecasts, monthFromNow } from "./forecasts.js";
import { clear, el, fields, isoFromMs, isoFromS, pill, table, text } from "./views.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["signin", "quarantine", "decisions", "config", "forecasts", "audit"];
const LIST_LIMIT = 1000;
const COUNT_LIMIT = 10000;
const BULK_LIMIT = 1000;
const BULK_ROUNDS_MAX = 50;
let me = null; // {role, user_id, token_id}

// --- status line and confirmation -------------------------------------------------

function say(message, bad = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("bad", bad);
  status.hidden = !message;
}

function failed(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut("Your token is no longer accepted (revoked or mistyped): sign in again.");
    return;
  }
  say(err instanceof ApiError ? err.message : String(err), true);
}

// Ask before a decision: resolves true on Confirm, false on Cancel or Escape.
function confirmDecision(title, message, items) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = message;
  const list = clear($("confirm-list"));
  for (const item of items) list.append(el("li", { class: "mono" }, item));
  list.hidden = items.length === 0;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").removeEventListener("click", ok);
      $("confirm-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const ok = () => done(true);
    const cancel = (event) => {
      if (event) event.preventDefault();
      done(false);
    };
    $("confirm-ok").addEventListener("click", ok);
    $("confirm-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// --- sign in and navigation -----------------------------------------------------------

function show(view) {
  if (view === "audit" && !isOperator()) view = "quarantine";
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.view === view);
  }
  const load = { quarantine: loadQuarantine, config: loadConfig, forecasts: showForecasts, audit: loadAudit }[view];
  if (load) load().catch(failed);
}

function isOperator() {
  return me !== null && me.role === "operator";
}

async function signIn(secret) {
  setToken(secret);
  try {
    me = await call("GET", "/v1/whoami");
  } catch (err) {
    forgetToken();
    me = null;
    throw err;
  }
  document.body.classList.toggle("as-user", !isOperator());
  $("who").textContent = isOperator()
    ? `operator (token ${me.token_id})`
    : `User ${me.user_id} (token ${me.token_id})`;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  say("");
  show("quarantine");
}

function signOut(message = "") {
  forgetToken();
  me = null;
  document.body.classList.remove("as-user");
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("token").value = "";
  for (const body of document.querySelectorAll("tbody")) clear(body);
  clear($("d-result"));
  clear($("c-result"));
  clear($("f-result"));
  $("f-month").value = "";
  show("signin");
  say(message, Boolean(message));
}

// --- quarantine -------------------------------------------------------------------------

// The filters the API applies (the same for the listing, the count and a bulk decision).
function apiFilters(untilIso) {
  const filters = {
    user_id: isOperator() ? $("q-user").value.trim().toUpperCase() : me.user_id,
    kind: $("q-kind").value,
    rule: $("q-rule").value.trim(),
  };
  if (untilIso) filters.to = untilIso;
  return Object.fromEntries(Object.entries(filters).filter(([, v]) => v));
}

function ageCutoff() {
  const age = Number($("q-age").value);
  return age > 0 ? new Date(Date.now() - age * 1000).toISOString() : null;
}

function srvFilter() {
  return $("q-srv").value.trim();
}

function describeFilters(filters) {
  const words = [];
  if (filters.user_id) words.push(`User ${filters.user_id}`);
  if (filters.kind) words.push(`reason ${filters.kind}`);
  if (filters.rule) words.push(`rule ${filters.rule}`);
  if (filters.to) words.push(`quarantined before ${filters.to.replace(/\.\d{3}Z$/, "Z")}`);
  // As the audit trail records a bulk decision's filters: times in epoch seconds.
  if (typeof filters.from_s === "number") words.push(`quarantined from ${isoFromS(filters.from_s)}`);
  if (typeof filters.until_s === "number") words.push(`quarantined before ${isoFromS(filters.until_s)}`);
  return words.join(", ");
}

function updateBulk() {
  let why = "";
  if (srvFilter()) why = "Bulk decisions select by User, reason, rule and age: clear the SRV filter to decide in bulk.";
  else if (Object.keys(apiFilters(ageCutoff())).length === 0) why = "Choose at least one filter (User, reason, rule or age) to decide in bulk.";
  $("q-bulk-release").disabled = Boolean(why);
  $("q-bulk-delete").disabled = Boolean(why);
  $("q-bulk-note").textContent = why;
}

async function loadQuarantine() {
  const query = { ...apiFilters(ageCutoff()), state: $("q-state").value, limit: LIST_LIMIT };
  const doc = await call("GET", withQuery("/v1/quarantine", query));
  const srv = srvFilter();
  const items = (doc.items || []).filter((e) => !srv || e.srv === srv);
  const body = clear($("q-table").querySelector("tbody"));
  for (const e of items) body.append(quarantineRow(e));
  const more = doc.more ? ` (the first ${LIST_LIMIT}; narrow the filters to see the rest)` : "";
  $("q-summary").textContent = items.length
    ? `${items.length} request${items.length === 1 ? "" : "s"}${more}, oldest first.`
    : "Nothing matches these filters.";
  updateBulk();
}

function quarantineRow(e) {
  const lookup = el("button", { type: "button", class: "link mono", onclick: () => lookupDecision(e.id) }, e.id);
  const decide = el("td", { class: "actions" });
  if (e.state === "pending") {
    decide.append(
      el("button", { type: "button", class: "small", dataset: { decide: "release", id: e.id }, onclick: () => decideOne(e, "release") }, "Release"),
      el("button", { type: "button", class: "small danger", dataset: { decide: "delete", id: e.id }, onclick: () => decideOne(e, "delete") }, "Delete"),
    );
  } else {
    decide.append(el("span", { class: "note" }, e.decided_by ? `by ${e.decided_by}` : ""));
  }
  const reason = el("div", {}, pill(e.kind), el("div", { class: "reason" }, e.reason || ""));
  const row = el("tr", { dataset: { id: e.id } });
  row.append(
    el("td", {}, lookup),
    el("td", { class: "mono" }, text(e.user_id)),
    el("td", {}, text(e.srv)),
    el("td", {}, reason),
    el("td", { class: "mono" }, text(e.rule)),
    el("td", { class: "num" }, text(e.observed)),
    el("td", { class: "num" }, text(e.limit)),
    el("td", { class: "time" }, isoFromS(e.at_s)),
    el("td", {}, pill(e.state)),
    decide,
  );
  return row;
}

async function decideOne(entry, decision) {
  const what = decision === "release" ? "forwarded to the device once, and the User answered Q4" : "not processed, and the User answered Q5";
  const sure = await confirmDecision(
    `${decision === "release" ? "Release" : "Delete"} 1 request?`,
    `This ${decision}s 1 quarantined request (${entry.srv}, rule ${entry.rule}): it is ${what}. A decision is final.`,
    [entry.id],
  );
  if (!sure) return;
  try {
    await call("POST", `/v1/quarantine/${segment(entry.id)}/${decision}`);
    say(`${decision === "release" ? "Released" : "Deleted"} ${entry.id}.`);
  } catch (err) {
    failed(err);
  }
  await loadQuarantine().catch(failed);
}

async function decideBulk(decision) {
  const filters = apiFilters(ageCutoff());
  let count;
  let sample;
  try {
    const doc = await call("GET", withQuery("/v1/quarantine", { ...filters, state: "pending", limit: COUNT_LIMIT }));
    count = doc.more ? `more than ${COUNT_LIMIT.toLocaleString("en-GB")}` : String(doc.items.length);
    sample = doc.items.slice(0, 10).map((e) => e.id);
    if (!doc.more && doc.items.length > 10) sample.push(`… and ${doc.items.length - 10} more`);
    if (!doc.more && doc.items.length === 0) {
      say(`No pending request matches ${describeFilters(filters)}: nothing to ${decision}.`);
      return;
    }
  } catch (err) {
    failed(err);
    return;
  }
  const verb = decision === "release" ? "Release" : "Delete";
  const sure = await confirmDecision(
    `${verb} ${count} pending request${count === "1" ? "" : "s"}?`,
    `This ${decision}s every pending request matching ${describeFilters(filters)}: ${count} request${count === "1" ? "" : "s"} now. A decision is final; requests already decided are skipped.`,
    sample,
  );
  if (!sure) return;
  let decided = 0;
  let skipped = 0;
  try {
    for (let round = 0; round < BULK_ROUNDS_MAX; round += 1) {
      const doc = await call("POST", `/v1/quarantine/${decision}`, { ...filters, limit: BULK_LIMIT });
      decided += doc.decided.length;
      skipped += doc.skipped.length;
      if (!doc.more) break;
    }
    say(`${verb}d ${decided} request${decided === 1 ? "" : "s"}${skipped ? `, skipped ${skipped} already decided` : ""}.`);
  } catch (err) {
    failed(err);
  }
  await loadQuarantine().catch(failed);
}

// --- decision lookup ----------------------------------------------------------------

function lookupDecision(requestId) {
  $("d-id").value = requestId;
  show("decisions");
  runLookup().catch(failed);
}

async function runLookup() {
  const id = $("d-id").value.trim();
  const out = clear($("d-result"));
  if (!id) return;
  let doc;
  try {
    doc = await call("GET", `/v1/decisions/${segment(id)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      out.append(el("p", { class: "error" }, err.message));
      return;
    }
    throw err;
  }
  out.append(el("h2", {}, "Answers, oldest first"));
  out.append(table(
    ["Time (UTC)", "Outcome", "Code", "Rule", "Observed", "Limit", "Retry after ms", "Reason"],
    doc.answers.map((a) => [
      { node: a.at, class: "time" }, pill(a.outcome), a.response_code, a.rule,
      { node: text(a.observed), class: "num" }, { node: text(a.limit), class: "num" },
      { node: text(a.retry_after_ms), class: "num" }, el("span", { class: "reason" }, a.reason),
    ]),
    "No answer kept for this request (answers are kept for a limited time, below).",
  ));
  if (doc.answers_omitted) {
    out.append(el("p", { class: "note" }, `${doc.answers_omitted} answers between the first and the latest are not kept.`));
  }
  const q = doc.quarantine;
  if (q) {
    out.append(el("h2", {}, "Quarantine"));
    out.append(fields([
      ["State", pill(q.state)], ["Reason", q.kind], ["SRV", q.srv], ["Rule", q.rule],
      ["Observed", q.observed], ["Limit", q.limit], ["Quarantined", q.quarantined_at],
      ["Decided", q.decided_at], ["By", q.decided_by], ["Why", q.reason],
    ]));
    out.append(el("h3", {}, "History"));
    out.append(table(
      ["Time (UTC)", "Event", "By", "How", "Note"],
      q.history.map((h) => [{ node: h.at, class: "time" }, pill(h.event), h.by, h.bulk ? `bulk (${describeFilters(h.bulk)})` : "", h.note]),
      "No history.",
    ));
  }
  const r = doc.retention;
  out.append(el("p", { class: "note" },
    `Answers are kept up to ${r.max_age_s / 3600} h after a request's latest answer, at most ${r.max_answers.toLocaleString("en-GB")} in all (${r.answers_kept.toLocaleString("en-GB")} now${r.oldest_at ? `, the oldest from ${r.oldest_at}` : ""}).` +
    (r.caught_up ? "" : " The admin process is still reading past answers: some may be missing.")));
}

// --- configuration in force -----------------------------------------------------------

const OPERATOR_ITEMS = [
  ["Traffic policy", "/v1/traffic"],
  ["DCC-wide ADT values", "/v1/adt/dcc"],
  ["Alert exclusions", "/v1/alerts/exclusions"],
  ["Alert-storm policy", "/v1/alerts/storm-policy"],
  ["Regional capacity", "/v1/alerts/regional-capacity"],
];

function valueText(value) {
  const shown = { ...value };
  for (const key of ["version", "source"]) delete shown[key];
  return el("pre", { class: "value" }, JSON.stringify(shown).replaceAll(',"', ', "'));
}

async function getOrMissing(path) {
  try {
    return await call("GET", path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { missing: err.message };
    throw err;
  }
}

async function loadConfig() {
  const out = clear($("c-result"));
  if (isOperator()) {
    const all = await getOrMissing("/v1/config");
    if (!all.missing) {
      out.append(table(
        ["Item", "Source", "Version", "Set by", "When (UTC)", "Value"],
        all.items.map((i) => [el("span", { class: "mono" }, i.key), pill(i.source), i.version, i.by, { node: isoFromMs(i.at_ms), class: "time" }, valueText(i.value || {})]),
        "Nothing configured.",
      ));
      return;
    }
    const rows = [];
    for (const [name, path] of OPERATOR_ITEMS) rows.push(await configRow(name, path));
    const lists = [["Allocations", "/v1/allocations"], ["Users' ADT values", "/v1/adt/users"]];
    for (const [name, path] of lists) {
      const doc = await call("GET", path);
      for (const [user, value] of Object.entries(doc.items || {})) rows.push([`${name}: ${user}`, pill(value.source), value.version, valueText(value)]);
    }
    out.append(table(["Item", "Source", "Version", "Value"], rows, "Nothing configured."));
    return;
  }
  const rows = [];
  for (const [name, path] of [
    ["Your User", `/v1/users/${me.user_id}`],
    ["Your allocation (SECMP0067)", `/v1/allocations/${me.user_id}`],
    ["Your ADT values (SEC G6)", `/v1/adt/users/${me.user_id}`],
  ]) rows.push(await configRow(name, path));
  out.append(table(["Item", "Source", "Version", "Value"], rows, "Nothing configured."));
}

async function configRow(name, path) {
  const doc = await getOrMissing(path);
  if (doc.missing) return [name, "–", "–", el("span", { class: "note" }, doc.missing)];
  return [name, doc.source ? pill(doc.source) : "–", doc.version, valueText(doc)];
}

// --- forecasts and actuals (forecasts.js) --------------------------------------------

function showForecasts() {
  const thisMonth = monthFromNow(0);
  $("f-month").max = thisMonth;
  if (!$("f-month").value) $("f-month").value = monthFromNow(-1);
  return loadForecasts(isOperator());
}

function forecastsFor(offset) {
  $("f-month").value = monthFromNow(offset);
  loadForecasts(isOperator()).catch(failed);
}

async function saveCsv() {
  const name = await downloadCsv();
  if (name) say(`Saved ${name}.`);
}

// --- audit log ----------------------------------------------------------------------

async function loadAudit() {
  if (!isOperator()) return;
  const query = { key_prefix: $("a-key").value.trim(), by: $("a-by").value.trim(), limit: $("a-limit").value };
  const doc = await call("GET", withQuery("/v1/audit", query));
  const body = clear($("a-table").querySelector("tbody"));
  for (const r of doc.records || []) {
    const change = `${JSON.stringify(r.old)} → ${JSON.stringify(r.new)}`;
    const row = el("tr");
    row.append(
      el("td", { class: "time" }, isoFromMs(r.at_ms)),
      el("td", { class: "mono" }, text(r.by)),
      el("td", {}, text(r.action)),
      el("td", { class: "mono" }, text(r.key)),
      el("td", { class: "num" }, text(r.version)),
      el("td", {}, el("pre", { class: "value" }, change)),
    );
    body.append(row);
  }
  if (!(doc.records || []).length) body.append(el("tr", {}, el("td", { colspan: "6", class: "note" }, "No audit records match.")));
}

// --- wiring ---------------------------------------------------------------------------

function submit(id, action) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    action().catch(failed);
  });
}

function start() {
  submit("signin-form", async () => {
    $("signin-error").hidden = true;
    const secret = $("token").value.trim();
    $("token").value = "";
    try {
      await signIn(secret);
    } catch (err) {
      $("signin-error").textContent = err instanceof ApiError ? err.message : String(err);
      $("signin-error").hidden = false;
    }
  });
  submit("q-filters", loadQuarantine);
  submit("d-form", runLookup);
  submit("a-filters", loadAudit);
  submit("f-form", () => loadForecasts(isOperator()));
  $("f-last").addEventListener("click", () => forecastsFor(-1));
  $("f-this").addEventListener("click", () => forecastsFor(0));
  $("f-csv").addEventListener("click", () => saveCsv().catch(failed));
  for (const id of ["q-user", "q-srv", "q-rule"]) $(id).addEventListener("input", updateBulk);
  for (const id of ["q-kind", "q-age"]) $(id).addEventListener("change", updateBulk);
  $("q-bulk-release").addEventListener("click", () => decideBulk("release"));
  $("q-bulk-delete").addEventListener("click", () => decideBulk("delete"));
  $("sign-out").addEventListener("click", () => signOut());
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      say("");
      show(tab.dataset.view);
    });
  }
  const saved = token();
  if (saved) signIn(saved).catch(() => signOut("Sign in again: the saved token was not accepted."));
  else show("signin");
}

start();
