// The gateway console: polls /api/units, streams /api/frames. Read-only; no outside resources.
"use strict";

const POLL_MS = 1000;
const MAX_FRAMES = 300;
const frames = [];
const cards = new Map();
let registerTables = {};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function row(cells, props = {}) {
  return el("tr", props, ...cells.map((c) => (c instanceof Node ? c : el("td", {}, c))));
}

function clock(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function age(seconds) {
  return seconds === null || seconds === undefined ? "-" : `${seconds.toFixed(1)} s`;
}

function table(headers, tbodyId, cls = "") {
  const tbody = el("tbody");
  if (tbodyId) tbody.id = tbodyId;
  const t = el("table", { class: cls }, el("thead", {}, row(headers.map((h) => el("th", {}, h)))), tbody);
  return [t, tbody];
}

function makeCard(unit) {
  const badge = el("span", { class: "badge" });
  const facts = el("div", { class: "facts" });
  const [dpTable, dpBody] = table(["dp", "name", "type", "value", "age", "reports"], `dps-${unit.unit}`, "dps");
  const [writeTable, writeBody] = table(["time", "client", "points", "values", "result", "took"], `writes-${unit.unit}`, "writes");
  const columns = (registerTables[unit.unit] || { columns: [] }).columns.concat(["value", "registers"]);
  const [regTable, regBody] = table(columns, `registers-${unit.unit}`, "registers");
  const card = el("section", { class: "card unit", id: `unit-${unit.unit}` },
    el("h2", {}, `Unit ${unit.unit}`, el("span", { class: "muted" }, unit.device), badge),
    facts,
    el("div", { class: "columns" },
      el("div", {}, el("h3", {}, "Datapoints"), dpTable),
      el("div", {}, el("h3", {}, "Last writes"), writeTable)));
  document.getElementById("units").append(card);
  document.getElementById("register-tables").append(
    el("details", { open: true }, el("summary", {}, `Unit ${unit.unit}: ${unit.map}`), regTable));
  const state = { badge, facts, dpBody, writeBody, regBody, updates: new Map() };
  fillRegisters(unit, state);
  return state;
}

function fillRegisters(unit, state) {
  const rows = (registerTables[unit.unit] || { rows: [] }).rows;
  state.regCells = new Map();
  for (const cells of rows) {
    const value = el("td", { class: "num" });
    const words = el("td", { class: "muted" });
    state.regCells.set(`${cells[0]}:${cells[3]}`, [value, words]);
    state.regBody.append(row(cells.map((c) => el("td", {}, c)).concat([value, words])));
  }
}

function renderFacts(unit, state) {
  const s = unit.stats;
  const key = unit.product_key ?? "?";
  const mismatch = unit.expected_product_key && unit.product_key && unit.expected_product_key !== unit.product_key;
  state.facts.replaceChildren(
    el("span", {}, "link ", el("b", {}, unit.link.url)),
    el("span", {}, "product key ", el("b", {}, mismatch ? `${key} (map expects ${unit.expected_product_key})` : key)),
    el("span", {}, "frames rx/tx ", el("b", { "data-stat": "frames" }, `${s.frames_received} / ${s.frames_sent}`)),
    el("span", {}, "checksum errors ", el("b", {}, s.checksum_errors)),
    el("span", {}, "MCU reboots ", el("b", {}, s.mcu_reboots)),
    el("span", {}, "heartbeat ", el("b", {}, s.heartbeat_rtt_ms === null ? "-" : `${s.heartbeat_rtt_ms.toFixed(1)} ms`)));
}

function renderDps(unit, state) {
  const rows = unit.dps.map((dp) => {
    const fresh = state.updates.has(dp.dp) && state.updates.get(dp.dp) !== dp.updates;
    state.updates.set(dp.dp, dp.updates);
    return row([dp.dp, dp.name, dp.type, el("td", { class: "dp-value" }, dp.text),
      el("td", { class: "num" }, age(dp.age_s)), el("td", { class: "num" }, dp.updates)],
    { class: fresh ? "fresh" : "", "data-dp": dp.dp });
  });
  state.dpBody.replaceChildren(...rows);
}

function renderWrites(unit, state) {
  const rows = unit.writes.slice().reverse().map((w) => {
    const result = w.exception === null ? "confirmed" : `exception 0x${w.exception.toString(16).padStart(2, "0").toUpperCase()}`;
    return row([clock(w.at), w.client, w.points.join(", ") || `${w.table} ${w.address}`,
      w.values.join(" "), result, `${(w.seconds * 1000).toFixed(0)} ms`],
    { class: w.exception === null ? "" : "failed" });
  });
  if (!rows.length) rows.push(row([el("td", { class: "muted", colSpan: 6 }, "no writes yet")]));
  state.writeBody.replaceChildren(...rows);
}

function renderPoints(unit, state) {
  for (const p of unit.points) {
    const cells = state.regCells.get(`${p.table}:${p.name}`);
    if (!cells) continue;
    const shown = p.value === null ? "-" : typeof p.value === "number" ? +p.value.toFixed(4) : p.value;
    cells[0].textContent = p.stale ? `${shown} (stale)` : shown;
    cells[1].textContent = p.registers === null ? `exception 0x${p.exception.toString(16).toUpperCase()}` : p.registers.join(" ");
  }
}

function renderUnit(unit) {
  if (!cards.has(unit.unit)) cards.set(unit.unit, makeCard(unit));
  const state = cards.get(unit.unit);
  state.badge.textContent = unit.link.state;
  state.badge.className = `badge ${unit.link.state}`;
  renderFacts(unit, state);
  renderDps(unit, state);
  renderWrites(unit, state);
  renderPoints(unit, state);
}

async function poll() {
  const health = document.getElementById("health");
  try {
    const response = await fetch("/api/units", { cache: "no-store" });
    const units = (await response.json()).units;
    units.forEach(renderUnit);
    const ok = units.every((u) => u.link.state === "READY");
    health.textContent = ok ? "all links READY" : "not every link is READY";
    health.className = `badge ${ok ? "ok" : "unavailable"}`;
    document.getElementById("updated").textContent = `updated ${clock(Date.now() / 1000)}`;
  } catch (err) {
    health.textContent = "gateway unreachable";
    health.className = "badge unavailable";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function frameMatches(frame) {
  const dir = document.getElementById("filter-dir").value;
  if (dir && frame.dir !== dir) return false;
  const wanted = document.getElementById("filter-dp").value.trim().toLowerCase();
  if (!wanted) return true;
  return (frame.dps || []).some((dp) => String(dp.dp) === wanted || (dp.name || "").toLowerCase().includes(wanted));
}

function frameRow(frame) {
  const content = frame.dps ? frame.dps.map((dp) => `dp${dp.dp} ${dp.name ?? ""} ${dp.text}`).join(" | ") : frame.text;
  return row([clock(frame.at), frame.unit, el("td", { class: `dir-${frame.dir}` }, frame.dir),
    `${frame.command} v${frame.version}`, el("td", { title: frame.hex }, content)],
  { class: "frame", "data-command": frame.command, "data-dir": frame.dir });
}

function renderFrames() {
  if (document.getElementById("filter-pause").checked) return;
  const shown = frames.filter(frameMatches).slice(-MAX_FRAMES).reverse();
  document.getElementById("frames").replaceChildren(...shown.map(frameRow));
  document.getElementById("frame-count").textContent = `${shown.length} of ${frames.length} frames`;
}

function streamFrames() {
  const badge = document.getElementById("stream-state");
  const source = new EventSource("/api/frames");
  source.onopen = () => { badge.textContent = "live"; badge.className = "badge ok"; };
  source.onerror = () => { badge.textContent = "reconnecting"; badge.className = "badge unavailable"; };
  source.onmessage = (message) => {
    frames.push(JSON.parse(message.data));
    if (frames.length > MAX_FRAMES) frames.splice(0, frames.length - MAX_FRAMES);
    renderFrames();
  };
}

async function start() {
  try {
    registerTables = await (await fetch("/api/registers", { cache: "no-store" })).json();
  } catch (err) {
    registerTables = {};
  }
  for (const id of ["filter-dir", "filter-dp", "filter-pause"]) {
    document.getElementById(id).addEventListener("input", renderFrames);
  }
  document.getElementById("frame-filter").addEventListener("submit", (e) => e.preventDefault());
  poll();
  streamFrames();
}

start();
