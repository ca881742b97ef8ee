// "Why this reply?" and honest waiting, on the thread page (and the why page).
// - a bot's comment has a <details class="why">: opened, it loads the server-rendered
//   panel (an autoescaped fragment of ours, /r/<room>/t/<id>/why/<comment>?part=1);
// - a "thinking…" placeholder shows where its answer stands (a `waiting` live event, or
//   the page's own question to /api/threads/<id>/waiting), under the placeholder;
// - a declined call's notice, and every <time data-local>, in the viewer's own time.
// live.js hands every live event over as a "playhouse:event" DOM event.
(function () {
  "use strict";
  const body = document.body;
  const room = body.dataset.room;
  const threadId = body.dataset.thread || null;
  const stated = new Set(); // placeholders that have a state shown

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function clock(d) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function inTime(ms) {
    const minutes = Math.max(1, Math.round(ms / 60000));
    if (minutes < 60) return "in " + minutes + " min";
    const h = Math.floor(minutes / 60), m = minutes % 60;
    return "in " + h + " h" + (m ? " " + m + " min" : "");
  }

  function localHour(hourUtc) {
    const d = new Date();
    d.setUTCHours(hourUtc % 24, 0, 0, 0);
    return clock(d);
  }

  function hoursText(spec) {
    const [start, end] = spec.split(",").map(Number);
    if ((end - start) % 24 === 0) return "all day";
    return localHour(start) + "–" + localHour(end) + " your time";
  }

  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach((t) => {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      t.textContent = clock(d) + " your time";
      t.title = d.toString();
    });
    root.querySelectorAll(".hours[data-hours]").forEach((h) => {
      h.title = h.textContent;
      h.textContent = hoursText(h.dataset.hours);
    });
    root.querySelectorAll("p.notice").forEach(renderNotice);
  }

  // A declined call's notice: when the bot wakes or its cap lifts, in the viewer's time.
  function renderNotice(p) {
    const parts = [];
    if (p.dataset.hours) parts.push("Awake " + hoursText(p.dataset.hours));
    const wakes = p.dataset.wakesAt ? new Date(p.dataset.wakesAt) : null;
    if (wakes && !isNaN(wakes.getTime())) parts.push("wakes at " + clock(wakes) + " your time, " + inTime(wakes - Date.now()));
    const next = p.dataset.nextAt ? new Date(p.dataset.nextAt) : null;
    if (next && !isNaN(next.getTime())) parts.push("can answer again at " + clock(next) + " your time, " + inTime(next - Date.now()));
    p.textContent = parts.length ? parts.join("; ") + "." : "";
  }

  // ------------------------------------------------------------------ the disclosure
  async function load(details) {
    const target = details.querySelector(".why-body");
    details.dataset.loaded = "loading";
    try {
      const answer = await fetch(details.dataset.url, { credentials: "same-origin", headers: { accept: "text/html" } });
      if (!answer.ok) {
        target.textContent = answer.status === 403 ? "Only the room's members can see this." : "Could not load the explanation (" + answer.status + ").";
        delete details.dataset.loaded;
        return;
      }
      target.innerHTML = await answer.text(); // our own autoescaped fragment
      details.dataset.loaded = "1";
      localize(target);
    } catch (err) {
      target.textContent = "Could not load the explanation; open it again to retry.";
      delete details.dataset.loaded;
    }
  }

  document.addEventListener("toggle", (e) => {
    const d = e.target;
    if (d instanceof HTMLDetailsElement && d.classList.contains("why") && d.open && !d.dataset.loaded) load(d);
  }, true);

  function disclosureFor(c) {
    const url = "/r/" + encodeURIComponent(room) + "/t/" + c.thread_id + "/why/" + c.id;
    const d = el("details", "why");
    d.dataset.url = url + "?part=1";
    d.appendChild(el("summary", null, "why this reply?"));
    const inner = el("div", "why-body");
    const link = el("a", null, "Open the explanation");
    link.href = url;
    inner.appendChild(link);
    d.appendChild(inner);
    return d;
  }

  // ------------------------------------------------------------------ waiting
  function showWait(id, wait) {
    const node = document.getElementById("c-" + id);
    if (!node || !node.classList.contains("placeholder") || node.classList.contains("hidden")) return;
    const details = node.querySelector(":scope > details");
    const text = details && details.querySelector(":scope > .text");
    if (!text) return;
    let line = details.querySelector(":scope > .wait");
    if (!line) {
      line = el("p", "wait");
      line.setAttribute("role", "status");
      text.after(line);
    }
    line.textContent = wait.text;
    line.dataset.state = wait.state;
    stated.add(id);
  }

  let asking = null;
  function askSoon(delay) {
    if (asking || !threadId) return;
    asking = setTimeout(ask, delay);
  }

  async function ask() {
    asking = null;
    const ids = Array.from(document.querySelectorAll(".comment.placeholder"))
      .map((n) => n.dataset.id).filter((id) => !stated.has(id)).slice(0, 14);
    if (!ids.length) return;
    try {
      const answer = await fetch("/api/threads/" + threadId + "/waiting?ids=" + ids.join(","), { credentials: "same-origin" });
      if (!answer.ok) return;
      const states = await answer.json();
      Object.entries(states).forEach(([id, wait]) => showWait(id, wait));
    } catch (err) {
      // the live events still come
    }
    if (document.querySelector(".comment.placeholder")) askSoon(10000);
  }

  function onComment(c, type) {
    const node = document.getElementById("c-" + c.id);
    if (!node) return;
    const details = node.querySelector(":scope > details");
    if (!details) return;
    const why = details.querySelector(":scope > details.why");
    if (c.gone || c.hidden) {
      // a deleted answer explains nothing; a muted bot's or blocked person's says nothing
      details.querySelectorAll(":scope > details.why, :scope > .wait, :scope > p.notice").forEach((n) => n.remove());
      stated.delete(c.id);
      return;
    }
    if (c.is_bot && !why) {
      const before = details.querySelector(":scope > .actions") || details.querySelector(":scope > .reply-btn") || details.querySelector(":scope > .replies");
      details.insertBefore(disclosureFor(c), before);
    }
    const line = details.querySelector(":scope > .wait");
    if (c.status === "placeholder") {
      askSoon(2500);
    } else {
      if (line) line.remove();
      stated.delete(c.id);
    }
    if (c.status !== "declined") details.querySelectorAll(":scope > p.notice").forEach((n) => n.remove());
    if (c.status === "declined" && c.notice && !details.querySelector(":scope > p.notice")) {
      const p = el("p", "notice");
      p.dataset.state = c.notice.state;
      if (c.notice.wakes_at) p.dataset.wakesAt = c.notice.wakes_at;
      if (c.notice.next_at) p.dataset.nextAt = c.notice.next_at;
      if (c.notice.active_hours) p.dataset.hours = c.notice.active_hours.join(",");
      details.querySelector(":scope > .text").after(p);
      renderNotice(p);
    }
    if (type === "comment_replaced" || type === "comment_changed") reload(details.querySelector(":scope > details.why"));
  }

  function reload(why) {
    if (why && why.dataset.loaded) {
      delete why.dataset.loaded;
      if (why.open) load(why);
    }
  }

  // A moderator acted: a removed answer keeps no disclosure (its explanation says nothing
  // now), a restored one gets it back, and the panels already loaded are loaded again
  // when next opened (what they quote may have been removed, or restored).
  function onModerated(ev) {
    const c = ev.comment;
    if (c) {
      const node = document.getElementById("c-" + c.id);
      const details = node && node.querySelector(":scope > details");
      const why = details && details.querySelector(":scope > details.why");
      if (c.gone) { if (why) why.remove(); } else onComment(c, "moderated");
    } else if (ev.thread && ev.thread.gone) {
      const why = document.querySelector("#post > details.why");
      if (why) why.remove();
    }
    if (ev.action !== "removed" && ev.action !== "restored") return;
    document.querySelectorAll("details.why").forEach((w) => {
      if (!w.dataset.loaded) return;
      delete w.dataset.loaded;
      const target = w.querySelector(".why-body");
      if (target) target.textContent = "";
      if (w.open) load(w);
    });
  }

  // A re-rolled answer: the disclosure explains the answer the page shows (each has its
  // own request, prompt and attempts); live.js says which one that is.
  function onShown(id, answer) {
    const node = document.getElementById("c-" + id);
    const why = node && node.querySelector(":scope > details > details.why");
    if (!why) return;
    const base = why.dataset.url.split("?")[0];
    const url = base + "?part=1&answer=" + answer;
    if (why.dataset.url === url) return;
    why.dataset.url = url;
    const link = why.querySelector(".why-body > a");
    if (link) link.href = base + "?answer=" + answer;
    if (why.dataset.loaded) {
      delete why.dataset.loaded;
      if (why.open) load(why);
      else why.querySelector(".why-body").replaceChildren(link || el("span"));
    }
  }

  document.addEventListener("playhouse:shown", (e) => {
    const d = e.detail || {};
    if (d.id && d.answer) onShown(d.id, d.answer);
  });

  document.addEventListener("playhouse:event", (e) => {
    const ev = e.detail || {};
    switch (ev.type) {
      case "waiting": showWait(ev.comment_id, ev.wait); break;
      case "moderated": onModerated(ev); break;
      case "comment": case "thinking": case "comment_replaced": case "comment_changed": onComment(ev.comment, ev.type); break;
      case "history": (ev.comments || []).forEach((c) => onComment(c, "history")); break;
    }
  });

  localize(document);
  if (document.querySelector(".comment.placeholder")) askSoon(300);
})();
