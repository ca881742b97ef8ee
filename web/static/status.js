// The admin status page: polls /status/data and redraws the tables and the SVG charts.
// Plain JavaScript, no library and no build step; every value goes in as text, never HTML.
"use strict";

(function () {
  const root = document.getElementById("status");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 600, H = 180, PAD_L = 44, PAD_R = 8, PAD_T = 10, PAD_B = 22;
  // Twelve distinct colours: one per queue (six queues and their poison queues).
  const COLOURS = ["#ff4500", "#2563eb", "#16a34a", "#9333ea", "#ca8a04", "#0891b2",
                   "#db2777", "#4b5563", "#7c2d12", "#65a30d", "#1e3a8a", "#be123c"];

  function el(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function ago(ts, now) {
    if (!ts) return "never";
    const s = Math.max(0, now - ts);
    if (s >= 86400) return Math.floor(s / 86400) + " d ago";
    if (s >= 3600) return Math.floor(s / 3600) + " h ago";
    if (s >= 60) return Math.floor(s / 60) + " min ago";
    return Math.floor(s) + " s ago";
  }

  // lines: [{name, values: [number|null]}]; start, step: seconds.
  function drawChart(id, legendId, lines, start, step) {
    const svg = document.getElementById(id);
    const legend = document.getElementById(legendId);
    if (!svg) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    let max = 0, n = 0;
    for (const line of lines) {
      n = Math.max(n, line.values.length);
      for (const v of line.values) if (v !== null && v > max) max = v;
    }
    const top = niceMax(max);
    const x = (i) => PAD_L + (n > 1 ? i * (W - PAD_L - PAD_R) / (n - 1) : 0);
    const y = (v) => PAD_T + (H - PAD_T - PAD_B) * (1 - v / top);
    for (let k = 0; k <= 4; k++) {
      const v = top * k / 4;
      svg.appendChild(el("line", {class: "grid", x1: PAD_L, x2: W - PAD_R, y1: y(v), y2: y(v)}));
      svg.appendChild(el("text", {x: PAD_L - 4, y: y(v) + 4, "text-anchor": "end"},
                         String(Math.round(v * 100) / 100)));
    }
    for (const [i, label] of [[0, "-60 min"], [Math.floor(n / 2), "-30 min"], [n - 1, "now"]]) {
      svg.appendChild(el("text", {x: x(i), y: H - 6, "text-anchor": i === 0 ? "start" : i === n - 1 ? "end" : "middle"}, label));
    }
    if (legend) while (legend.firstChild) legend.removeChild(legend.firstChild);
    lines.forEach((line, li) => {
      const colour = COLOURS[li % COLOURS.length];
      let points = [];
      const flush = () => {
        if (points.length === 1) {
          const [px, py] = points[0].split(",");
          svg.appendChild(el("circle", {cx: px, cy: py, r: 2.5, fill: colour, "data-series": line.name}));
        } else if (points.length > 1) {
          svg.appendChild(el("polyline", {points: points.join(" "), stroke: colour, "data-series": line.name}));
        }
        points = [];
      };
      line.values.forEach((v, i) => {
        if (v === null || v === undefined) { flush(); return; }
        points.push(x(i).toFixed(1) + "," + y(v).toFixed(1));
      });
      flush();
      if (legend) {
        const item = document.createElement("span");
        const swatch = document.createElement("i");
        swatch.style.background = colour;
        item.appendChild(swatch);
        const last = [...line.values].reverse().find((v) => v !== null && v !== undefined);
        item.appendChild(document.createTextNode(line.name + (last !== undefined ? " " + last : "")));
        legend.appendChild(item);
      }
    });
  }

  function rejected(p) {
    if (!p.samples) return ["–", "num rejected"];
    const reasons = Object.entries(p.rejections || {}).map(([r, n]) => r + " " + n).join(", ");
    return [Math.round(p.rejection_rate * 100) + "% of " + p.samples, "num rejected", reasons];
  }

  function fillTable(id, rows, cells, rowAttrs, emptyText, columns) {
    const body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    if (!rows.length && emptyText) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = columns;
      td.textContent = emptyText;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const [k, v] of Object.entries(rowAttrs(row))) tr.setAttribute(k, v);
      for (const [text, cls, title, href] of cells(row)) {
        const td = document.createElement("td");
        if (href) {
          const a = document.createElement("a");
          a.href = href;
          a.textContent = text;
          td.appendChild(a);
        } else {
          td.textContent = text;
        }
        if (cls) td.className = cls;
        if (title) td.title = title;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function render(data) {
    const now = data.now;
    const state = document.getElementById("storage-state");
    state.textContent = data.storage;
    state.className = "state-" + data.storage;
    document.getElementById("updated").textContent = new Date(now * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC";
    fillTable("queues", Object.entries(data.queues), ([q, d]) => [[q], [String(d), "num"]],
              ([q]) => ({"data-queue": q}));
    fillTable("workers", data.workers, (w) => [
      [w.id], [w.host], [w.kind], [w.state], [w.models.join(", ")],
      [String(w.answered), "num"], [String(w.failed), "num"], [String(w.tokens_per_s), "num"],
      [String(w.mean_batch), "num"], [ago(w.seen_at, now)], [w.last_error, "error"],
    ], (w) => ({"data-worker": w.id, class: "state-" + w.state}), "No worker has reported yet.", 11);
    fillTable("personas", data.personas, (p) => [
      [p.name, null, null, "/status/personas/" + encodeURIComponent(p.name)], [p.kind],
      [p.state + (p.reason ? ": " + p.reason : ""), "model", p.reason],
      [String(p.answered), "num"], [String(p.failed), "num"], rejected(p),
      [ago(p.last_answer_at, now)], [p.last_error, "error"],
    ], (p) => ({"data-persona": p.name,
                class: "state-" + p.state.replace(" ", "-") + (p.failing ? " failing" : "")}));
    const s = data.series;
    drawChart("chart-depth", "legend-depth",
              Object.entries(s.depth).map(([name, values]) => ({name, values})), s.start, s.bucket_s);
    drawChart("chart-throughput", "legend-throughput", [
      {name: "tokens/s", values: s.tokens_per_s},
      {name: "answers/min", values: s.answers_per_min},
      {name: "failures/min", values: s.failures_per_min},
    ], s.start, s.bucket_s);
    drawChart("chart-latency", "legend-latency", [{name: "mean s", values: s.latency_s}],
              s.start, s.bucket_s);
    root.dataset.rendered = String(Number(root.dataset.rendered || 0) + 1);
  }

  async function refresh() {
    try {
      const answer = await fetch(root.dataset.url, {headers: {accept: "application/json"}, credentials: "same-origin"});
      if (answer.ok) render(await answer.json());
    } catch (err) {
      // The next round tries again; the page keeps what it showed.
    }
  }

  render(JSON.parse(document.getElementById("status-data").textContent));
  setInterval(refresh, Number(root.dataset.every) || 5000);
})();
