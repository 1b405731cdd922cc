// Alpha Panda dashboard: polls /api/overview at most once a second and redraws.
// Every value goes into the page as text (never as HTML).
"use strict";

const POLL_MS = 1000;
const money = new Intl.NumberFormat("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
const count = new Intl.NumberFormat("en-US");

function fmtMoney(value) { return value === null || value === undefined ? "–" : money.format(value); }
function fmtCount(value) { return value === null || value === undefined ? "–" : count.format(value); }
function fmtTime(value) {
  // Every time shows in UTC, to the second (events may carry an exchange offset such as +05:30).
  if (!value) { return ""; }
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime())) { return String(value); }
  return parsed.toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
}

function cell(text, opts) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (opts && opts.num) { td.className = "num"; }
  if (opts && opts.sign !== undefined && opts.sign !== null) {
    td.classList.add(opts.sign >= 0 ? "pos" : "neg");
  }
  if (opts && opts.field) { td.dataset.field = opts.field; }
  return td;
}

function fill(tableId, rows, render) {
  const table = document.getElementById(tableId);
  const body = table.querySelector("tbody");
  const fresh = document.createElement("tbody");
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell("none yet");
    td.colSpan = table.querySelectorAll("thead th").length;
    td.className = "muted";
    tr.className = "empty";
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const td of render(row, tr)) { tr.appendChild(td); }
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
}

function renderAccounts(accounts) {
  fill("accounts", accounts, (a, tr) => {
    tr.dataset.account = `${a.broker}:${a.strategy_id}`;
    return [
      cell(a.broker, {field: "broker"}),
      cell(a.strategy_id, {field: "strategy_id"}),
      cell(fmtMoney(a.cash), {num: true, field: "cash"}),
      cell(fmtCount(a.open_positions), {num: true, field: "open_positions"}),
      cell(fmtMoney(a.realized_pnl), {num: true, field: "realized_pnl", sign: a.realized_pnl}),
      cell(fmtMoney(a.unrealized_pnl), {num: true, field: "unrealized_pnl", sign: a.unrealized_pnl}),
      cell(fmtMoney(a.fees_paid), {num: true, field: "fees_paid"}),
      cell(fmtMoney(a.total_pnl), {num: true, field: "total_pnl", sign: a.total_pnl}),
      cell(fmtMoney(a.total_value), {num: true, field: "total_value"}),
      cell(fmtCount(a.orders), {num: true, field: "orders"}),
      cell(fmtCount(a.fills), {num: true, field: "fills"}),
      cell(fmtTime(a.timestamp), {field: "timestamp"}),
    ];
  });
}

function renderEquity(equity) {
  const traces = [];
  for (const broker of Object.keys(equity).sort()) {
    for (const strategy of Object.keys(equity[broker]).sort()) {
      const points = equity[broker][strategy];
      traces.push({
        name: `${broker}:${strategy}`, type: "scatter", mode: "lines+markers", marker: {size: 4},
        x: points.map((p) => p.timestamp), y: points.map((p) => p.total_value),
      });
    }
  }
  const layout = {
    margin: {l: 80, r: 20, t: 10, b: 40}, paper_bgcolor: "#0f1720", plot_bgcolor: "#17212b",
    font: {color: "#e6edf3"}, xaxis: {gridcolor: "#22303c"}, yaxis: {gridcolor: "#22303c", tickformat: ",.0f"},
    legend: {orientation: "h"}, uirevision: "keep",
  };
  // Plotly.react reuses the plot: zoom and legend clicks survive each refresh.
  window.Plotly.react("equity-chart", traces, layout, {displaylogo: false, responsive: true});
}

function renderLists(data) {
  fill("signals", data.signals, (s) => [
    cell(fmtTime(s.timestamp)), cell(s.broker), cell(s.strategy_id), cell(s.instrument_token),
    cell(s.signal_type), cell(fmtCount(s.quantity), {num: true}), cell(fmtMoney(s.price), {num: true}),
  ]);
  fill("rejections", data.rejections, (r) => [
    cell(fmtTime(r.timestamp)), cell(r.broker), cell(r.strategy_id), cell(r.signal_type),
    cell(fmtCount(r.quantity), {num: true}), cell(r.rejection_reason, {field: "rejection_reason"}),
  ]);
  fill("orders", data.orders, (o) => [
    cell(fmtTime(o.order_ts)), cell(o.broker), cell(o.strategy_id), cell(o.instrument_token), cell(o.side),
    cell(fmtCount(o.quantity), {num: true}), cell(fmtMoney(o.price), {num: true}), cell(o.status),
  ]);
  fill("fills", data.fills, (f, tr) => {
    tr.dataset.order = `${f.broker}:${f.order_id}`;
    return [
      cell(fmtTime(f.filled_at)), cell(f.broker), cell(f.strategy_id), cell(f.instrument_token), cell(f.side),
      cell(fmtCount(f.quantity), {num: true}), cell(fmtMoney(f.fill_price), {num: true, field: "fill_price"}),
      cell(fmtMoney(f.fees), {num: true, field: "fees"}),
    ];
  });
  const dlq = Object.entries(data.dlq || {}).filter(([, n]) => n > 0).sort();
  fill("dlq", dlq, ([topic, n], tr) => { tr.dataset.topic = topic; return [cell(topic), cell(fmtCount(n), {num: true})]; });
}

function renderHealth(health) {
  const pills = document.getElementById("servers");
  pills.replaceChildren();
  if (!health) { return; }
  for (const server of health.servers) {
    const pill = document.createElement("span");
    pill.className = server.up ? "up" : "down";
    pill.dataset.server = server.name;
    pill.textContent = `${server.name} ${server.up ? "up" : "down"}`;
    pill.title = server.up ? `${server.url}: ${server.latency_ms} ms` : `${server.url}: ${server.error}`;
    pills.appendChild(pill);
  }
  fill("flows", health.flows, (f) => [cell(f.name), cell(f.pid), cell(f.alive ? "yes" : "no")]);
  fill("lag", health.lag, (l) => [
    cell(l.dataflow), cell(l.topic), cell(l.partition, {num: true}), cell(fmtCount(l.lag), {num: true}),
  ]);
}

function renderErrors(errors) {
  const box = document.getElementById("errors");
  box.hidden = errors.length === 0;
  box.replaceChildren(...errors.map((e) => { const p = document.createElement("div"); p.textContent = e; return p; }));
}

async function poll() {
  const started = Date.now();
  try {
    const response = await fetch("/api/overview", {credentials: "same-origin", cache: "no-store"});
    if (response.status === 401) { window.location.reload(); return; }
    const data = await response.json();
    renderAccounts(data.accounts);
    renderEquity(data.equity);
    renderLists(data);
    renderHealth(data.health);
    renderErrors(data.errors);
    const updated = document.getElementById("updated");
    updated.textContent = `updated ${fmtTime(data.generated_at)}`;
    updated.dataset.generatedAt = data.generated_at;
  } catch (err) {
    document.getElementById("updated").textContent = `update failed: ${err}`;
  }
  setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
}

poll();
