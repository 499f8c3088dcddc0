// tympan dashboard: render the server's snapshots (Server-Sent Events, /events).
// Every value comes from Kafka, so text is set with textContent, never as HTML.
"use strict";

const PALETTE = [
  "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#499894", "#b6992d",
  "#b07aa1", "#d37295", "#9c755f", "#8c8c8c", "#7f3c8d", "#a05195",
];

function colorOf(label) {
  let h = 0;
  for (const ch of String(label)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmt(x, digits) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function chip(label, score) {
  if (!label) return el("span", { class: "muted" }, "–");
  return el("span", { class: "chip", style: { background: colorOf(label) } },
    label, score === null || score === undefined ? null : el("small", {}, " " + fmt(score, 2)));
}

// A multi-label model's tags (best first): one chip each, or "no tag" when none
// reached its threshold. Single-label streams have no tags (null).
function tagChips(tags, withShare) {
  const box = el("span", { class: "tags" });
  if (!tags.length) box.append(el("span", { class: "muted" }, "no tag"));
  for (const t of tags) {
    const extra = withShare && t.active_share !== null && t.active_share !== undefined
      ? ` ${fmt(t.score, 2)} · ${Math.round(100 * t.active_share)}%` : ` ${fmt(t.score, 2)}`;
    box.append(el("span", { class: "chip", "data-tag": t.tag, style: { background: colorOf(t.tag) } },
      t.tag, el("small", {}, extra)));
  }
  return box;
}

function timeline(stream) {
  const bar = el("div", { class: "timeline" });
  const segs = stream.segments || [];
  if (!segs.length) return bar;
  const t0 = segs[0].start_s;
  const span = Math.max(segs[segs.length - 1].end_s - t0, 1e-6);
  for (const s of segs) {
    bar.append(el("div", {
      class: "seg",
      "data-label": s.label,
      title: `${s.label}  ${fmt(s.start_s, 1)}–${fmt(s.end_s, 1)} s  (${s.windows} windows)`,
      style: {
        left: `${(100 * (s.start_s - t0)) / span}%`,
        width: `${Math.max((100 * (s.end_s - s.start_s)) / span, 0.3)}%`,
        background: colorOf(s.label),
      },
    }));
  }
  bar.append(el("span", { class: "span-s" }, `${fmt(t0, 0)}–${fmt(t0 + span, 0)} s`));
  return bar;
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderStreams(snap) {
  const labels = new Set();
  const rows = snap.streams.map((s) => {
    for (const seg of s.segments) labels.add(seg.label);
    return el("tr", { "data-stream-id": s.stream_id, class: s.status },
      el("td", { class: "stream-id" }, s.stream_id),
      el("td", { class: "status" }, s.closed_by ? `ended (${s.closed_by})` : s.status),
      el("td", { class: "label", "data-label": s.label || "" },
        Array.isArray(s.tags) ? tagChips(s.tags, false) : chip(s.label, s.score)),
      el("td", { class: "speaker" }, s.speaker || "–"),
      el("td", { class: "wide" }, timeline(s)),
      el("td", { class: "num" }, s.windows),
      el("td", { class: "num" }, `${fmt(s.age_s, 0)} s`));
  });
  replaceRows(document.querySelector("#streams tbody"), rows);
  document.getElementById("no-streams").hidden = rows.length > 0;
  const hidden = snap.stream_count - snap.streams.length;
  document.getElementById("streams-note").textContent =
    (hidden > 0 ? `(newest ${snap.streams.length} of ${snap.stream_count})` : "") +
    (snap.evicted_streams ? ` ${snap.evicted_streams} evicted` : "") +
    (snap.untracked_events ? ` · ${snap.untracked_events} events of untracked streams (limit reached)` : "");
  document.getElementById("legend").replaceChildren(
    ...[...labels].sort().map((l) => el("span", { class: "chip", style: { background: colorOf(l) } }, l)));
}

function renderCards(snap) {
  const r = snap.rates;
  const lat = snap.latency_ms;
  const dead = Object.values(snap.rejected).reduce((a, b) => a + b, 0);
  document.getElementById("live").textContent = snap.live_streams;
  document.getElementById("streams-total").textContent = `${snap.stream_count} tracked`;
  document.getElementById("rate-total").textContent = fmt(r.total, 1);
  document.getElementById("rate-detail").textContent =
    `labels ${fmt(r.labels, 1)} · speakers ${fmt(r.speakers, 1)} · summaries ${fmt(r.summaries, 1)} · rejected ${fmt(r.rejected, 1)}`;
  document.getElementById("latency").textContent =
    `${fmt(lat.p50, 0)} / ${fmt(lat.p95, 0)} / ${fmt(lat.p99, 0)} ms`;
  document.getElementById("latency-detail").textContent = `last frame in → event out, over the last ${lat.samples} events`;
  document.getElementById("dead-total").textContent = dead;
  document.getElementById("dead-rate").textContent = `${fmt(r.rejected, 1)}/s`;
  const up = Math.round(snap.uptime_s);
  document.getElementById("uptime").textContent = `up ${Math.floor(up / 60)} min ${up % 60} s`;
}

function renderSummaries(snap) {
  replaceRows(document.querySelector("#summaries tbody"), snap.summaries.map((s) =>
    el("tr", { "data-stream-id": s.stream_id },
      el("td", {}, s.stream_id),
      el("td", {}, s.closed_by),
      el("td", { class: "num" }, `${fmt(s.duration_s, 1)} s`),
      el("td", { class: "verdict" },
        s.task === "multi" ? tagChips(s.tags || [], true) : chip(s.dominant_label)),
      el("td", {}, s.speaker || "–"),
      el("td", { class: "num" }, s.gaps === null ? "–" : s.gaps))));
}

function renderRejected(snap) {
  replaceRows(document.querySelector("#rejected tbody"), Object.entries(snap.rejected).map(
    ([reason, n]) => el("tr", { "data-reason": reason },
      el("td", {}, reason), el("td", { class: "num count" }, n))));
  document.getElementById("recent-rejected").replaceChildren(...snap.recent_rejected.map((r) =>
    el("li", {}, el("b", {}, r.reason), ` ${r.stream_id || "(no key)"}: ${r.message}`)));
}

function renderKafka(snap) {
  const pill = document.getElementById("kafka");
  const ok = snap.kafka && snap.kafka.connected;
  pill.className = ok ? "pill on" : "pill off";
  pill.textContent = ok ? "kafka connected" : "kafka disconnected";
  pill.title = (snap.kafka && snap.kafka.error) || "";
}

function render(snap) {
  renderKafka(snap);
  renderCards(snap);
  renderStreams(snap);
  renderSummaries(snap);
  renderRejected(snap);
  document.body.dataset.version = snap.version;
}

const source = new EventSource("/events");
source.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
source.onerror = () => {
  const pill = document.getElementById("kafka");
  pill.className = "pill off";
  pill.textContent = "dashboard unreachable";
};
