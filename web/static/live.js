// playhouse live pages: one websocket, reconnect with back-off, resume from the last id.
// No build step. User text is only ever set with textContent, never as HTML.
(function () {
  "use strict";
  const body = document.body;
  const page = body.dataset.page;
  if (!page) return;
  const room = body.dataset.room;
  const threadId = body.dataset.thread || null;
  const me = body.dataset.user || null;
  const looksData = document.getElementById("looks");  // data, not a script (CSP)
  const looks = looksData ? JSON.parse(looksData.textContent) : {};
  let lastId = body.dataset.lastId || null;
  const pending = new Set(JSON.parse(body.dataset.pending || "[]"));
  const seen = new Set();
  document.querySelectorAll("[data-id]").forEach((el) => seen.add(el.dataset.id));
  const waiting = new Map(); // client_id -> {form, timer}
  const presence = new Map(); // instance -> {users, anonymous}
  let socket = null;
  let backoff = 500;
  let counter = 0;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function authorEl(name, isBot) {
    const wrap = el("span");
    const a = el("span", "author " + (isBot ? "bot" : "human"));
    const look = isBot ? looks[name] : null;
    if (look) {
      a.style.color = look.colour;
      a.appendChild(el("span", "avatar", look.avatar));
      a.appendChild(document.createTextNode(" "));
    }
    a.appendChild(document.createTextNode("u/" + name));
    wrap.appendChild(a);
    if (isBot) { wrap.appendChild(document.createTextNode(" ")); wrap.appendChild(el("span", "badge bot", "bot")); }
    return wrap;
  }

  function timeEl(iso) {
    const when = new Date(iso);
    const minutes = Math.floor((Date.now() - when.getTime()) / 60000);
    const t = el("time", null, minutes < 1 ? "just now" : minutes < 60 ? minutes + " min ago" : when.toLocaleString());
    t.setAttribute("datetime", iso);
    t.title = when.toLocaleString();
    return t;
  }

  // ---------------------------------------------------------------- threads (room page)
  function upsertThread(t) {
    if (page !== "room") {
      if (t.id === threadId) { const n = document.getElementById("reply-count"); if (n) n.textContent = t.comment_count; }
      return;
    }
    const list = document.getElementById("threads");
    let row = list.querySelector('li[data-id="' + t.id + '"]');
    if (!row) {
      row = el("li", "thread-row");
      row.dataset.id = t.id;
      const href = "/r/" + encodeURIComponent(t.room) + "/t/" + t.id;
      if (t.image_url) {
        const link = el("a");
        link.href = href;
        const img = el("img", "thumb");
        img.src = t.image_url;
        img.alt = "";
        link.appendChild(img);
        row.appendChild(link);
      }
      const a = el("a", "title", t.title);
      a.href = href;
      row.appendChild(a);
      const meta = el("div", "meta");
      meta.appendChild(authorEl(t.author, t.is_bot));
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(el("span", "count", String(t.comment_count)));
      meta.appendChild(document.createTextNode(" replies · "));
      meta.appendChild(timeEl(t.last_activity));
      row.appendChild(meta);
      list.insertBefore(row, list.firstChild);
      const empty = document.getElementById("no-threads");
      if (empty) empty.remove();
    } else {
      row.querySelector(".count").textContent = String(t.comment_count);
      row.querySelector(".title").textContent = t.title;  // removed, restored
    }
    if (!lastId || t.id > lastId) lastId = t.id;
  }

  // -------------------------------------------------------------- comments (thread page)
  function fillComment(node, c) {
    node.className = "comment" + (c.is_bot ? " bot" : "") + (c.status !== "ok" ? " " + c.status : "") +
      (c.gone ? " gone" : "") + (c.held ? " held" : "");
    const details = node.querySelector("details");
    const who = details.querySelector(":scope > summary > span");
    if (c.gone) {  // a tombstone: its author is hidden too, and there is nothing to report
      if (who && !who.classList.contains("gone")) who.replaceWith(el("span", "author gone", c.author));
      details.querySelectorAll(":scope > .report-btn, :scope > img.generated, :scope > summary > .badge.bot").forEach((n) => n.remove());
    } else if (who && who.classList.contains("gone")) {  // restored by a moderator
      who.replaceWith(authorEl(c.author, c.is_bot));
    }
    const text = details.querySelector(".text");
    text.textContent = c.status === "placeholder" ? "thinking…" : c.text;
    text.classList.toggle("caption", !!c.image_url);  // a picture's caption quotes a person
    let img = details.querySelector(":scope > img.generated");
    if (c.image_url && !img) {
      img = el("img", "generated");
      img.src = c.image_url;
      img.alt = "image by u/" + c.author;
      text.after(img);
    }
    if (me && !closed && c.status === "ok" && !c.held && !details.querySelector(":scope > .reply-btn")) {
      const btn = el("button", "reply-btn link", "reply");
      btn.dataset.parent = c.id;
      details.querySelector(".replies").before(btn);
    }
    if (me && c.status === "ok" && !c.gone && c.author.toLowerCase() !== me.toLowerCase() &&
        !details.querySelector(":scope > .report-btn")) {
      const btn = el("button", "report-btn link", "report");
      btn.dataset.comment = c.id;
      details.querySelector(".replies").before(btn);
    }
  }

  // ------------------------------------------------------------------- moderation
  let closed = !!body.dataset.closed;  // banned, locked or removed: no composer
  function showNotice(text) {
    let n = document.getElementById("live-notice");
    if (!n) {
      n = el("p", "card notice");
      n.id = "live-notice";
      n.setAttribute("role", "alert");
      document.querySelector("main").prepend(n);
    }
    n.textContent = text;
  }
  function closeComposers(text) {
    if (!body.dataset.moderates) closed = true;
    if (!closed) return;
    ["reply-top-card", "new-thread-card"].forEach((id) => { const n = document.getElementById(id); if (n) n.remove(); });
    document.querySelectorAll(".reply-btn, form.inline-reply").forEach((n) => n.remove());
    if (text) showNotice(text);
  }
  function onModerated(ev) {
    if (ev.comment) { upsertComment(ev.comment); return; }
    const t = ev.thread;
    if (!t || t.id !== threadId) return;
    const post = document.getElementById("post");
    if (t.gone && post) {
      post.classList.add("gone");
      post.querySelector("h1").textContent = t.title;
      post.querySelectorAll(":scope > .text, :scope > img.generated, :scope > p > a[rel]").forEach((n) => n.remove());
      const who = post.querySelector(".meta > span");
      if (who) who.replaceWith(el("span", "author gone", t.author));
    }
    if (ev.action === "locked") closeComposers("This thread is locked by a moderator: it takes no new comments.");
    else if (ev.action === "removed") closeComposers("This thread was removed by a moderator: it takes no new comments.");
    else if (ev.action === "unlocked" || ev.action === "restored") showNotice("A moderator reopened this thread: reload the page to reply.");
  }
  function sameRoom(name) { return !name || name.toLowerCase() === room.toLowerCase(); }

  function upsertComment(c) {
    if (c.thread_id !== threadId) return;
    let node = document.getElementById("c-" + c.id);
    if (!node) {
      node = el("div");
      node.id = "c-" + c.id;
      node.dataset.id = c.id;
      const details = el("details");
      details.open = true;
      const summary = el("summary");
      summary.appendChild(authorEl(c.author, c.is_bot));
      summary.appendChild(document.createTextNode(" "));
      summary.appendChild(timeEl(c.created_at));
      details.appendChild(summary);
      details.appendChild(el("div", "text"));
      details.appendChild(el("div", "replies"));
      node.appendChild(details);
      const parent = c.parent_id && document.getElementById("c-" + c.parent_id);
      const home = parent ? parent.querySelector(":scope > details > .replies") : document.getElementById("comments");
      home.appendChild(node);
    }
    fillComment(node, c);
    seen.add(c.id);
    if (c.status === "placeholder") pending.add(c.id); else pending.delete(c.id);
    if (!lastId || c.id > lastId) lastId = c.id;
  }

  function showPresence(p) {
    if (p) presence.set(p.instance, Object.assign({ at: Date.now() }, p));
    const users = new Set();
    let anonymous = 0;
    presence.forEach((v) => { v.users.forEach((u) => users.add(u)); anonymous += v.anonymous; });
    const target = document.getElementById("presence");
    if (!target) return;
    const names = Array.from(users).sort().map((u) => "u/" + u);
    if (anonymous) names.push(anonymous + " anonymous");
    target.textContent = names.length ? "Here now: " + names.join(", ") : "";
  }

  // ---------------------------------------------------------------------- the socket
  function send(obj) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(obj));
    return true;
  }

  function onEvent(ev) {
    handle(ev);
    // Other scripts of the page (why.js) follow the same events.
    document.dispatchEvent(new CustomEvent("playhouse:event", { detail: ev }));
  }

  function handle(ev) {
    switch (ev.type) {
      case "subscribed": backoff = 500; setStatus(null, ""); break;
      case "history":
        (ev.threads || []).slice().reverse().forEach(upsertThread);
        (ev.comments || []).forEach(upsertComment);
        if (ev.more && lastId) send({ type: "history", after: lastId });
        break;
      case "comment": case "thinking": case "comment_replaced": upsertComment(ev.comment); break;
      case "thread": upsertThread(ev.thread); break;
      case "moderated": onModerated(ev); break;
      case "banned":
        if (ev.room === null || ev.room === undefined) closeComposers("You are banned from the site" + (ev.reason ? " (" + ev.reason + ")" : "") + ".");
        else if (sameRoom(ev.room)) closeComposers("You are banned from r/" + ev.room + (ev.reason ? " (" + ev.reason + ")" : "") + ": you can read it, not post.");
        break;
      case "access_ended": if (sameRoom(ev.room)) { closed = true; closeComposers(ev.reason || ("You are no longer a member of r/" + ev.room + ".")); } break;
      case "presence": if (ev.room.toLowerCase() === room.toLowerCase()) showPresence(ev); break;
      case "ack": settle(ev.client_id, null, ev.notice); break;
      case "error":
        if (ev.client_id && waiting.has(ev.client_id)) settle(ev.client_id, ev.reason);
        else showBanner(ev.reason);
        break;
    }
  }

  // Instances republish every 30 s: one silent for 90 s has gone (its viewers with it).
  setInterval(() => {
    const before = presence.size;
    presence.forEach((v, instance) => { if (Date.now() - v.at > 90000) presence.delete(instance); });
    if (presence.size !== before) showPresence(null);
  }, 15000);

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws");
    socket.onopen = () => {
      presence.clear();
      send({ type: "subscribe", room: room, thread_id: threadId, after: lastId || null,
             pending: Array.from(pending).slice(-20) });
    };
    socket.onmessage = (msg) => { try { onEvent(JSON.parse(msg.data)); } catch (e) { console.error(e); } };
    socket.onclose = (ev) => {
      if (ev.code === 4401) { location.reload(); return; }  // logged out (maybe in another tab)
      if (ev.code === 4403) {  // banned from the site: this page stays as it is, closed
        waiting.forEach((_, cid) => settle(cid, "not sent: you are banned from the site"));
        closeComposers(null);
        showBanner("Disconnected: you are banned from the site.");
        return;
      }
      waiting.forEach((_, cid) => settle(cid, "connection lost before the server confirmed; your text is kept, send it again"));
      // 1008: too many messages or sockets; the error just shown says why. Wait longer.
      if (ev.code === 1008) backoff = Math.max(backoff, 10000);
      const delay = backoff + Math.random() * backoff * 0.3;
      backoff = Math.min(backoff * 2, 15000);
      if (ev.code !== 1008) showBanner("reconnecting…");
      setTimeout(connect, delay);
    };
  }

  // ---------------------------------------------------------------------- posting
  function showBanner(text) {
    let b = document.getElementById("banner");
    if (!b) { b = el("div", "banner"); b.id = "banner"; b.setAttribute("role", "status"); document.body.appendChild(b); }
    b.textContent = text;
    b.hidden = !text;
  }
  function setStatus(form, text, isError) {
    if (!form) { showBanner(text); return; }
    const s = form.querySelector(".status");
    s.textContent = text;
    s.classList.toggle("error", !!isError);
  }

  // notice: the post is stored, but something about it needs saying (bots not called).
  function settle(clientId, error, notice) {
    const w = waiting.get(clientId);
    if (!w) return;
    waiting.delete(clientId);
    clearTimeout(w.timer);
    w.form.querySelector("button[type=submit]").disabled = false;
    if (error) { setStatus(w.form, error, true); return; }
    setStatus(w.form, notice || "");
    w.form.reset();
    if (w.form.classList.contains("inline-reply")) {
      w.form.remove();
      if (notice) showBanner(notice);
    }
  }

  function submit(form, fields) {
    const clientId = "c" + Date.now().toString(36) + (counter++);
    const msg = Object.assign({ type: "post", room: room, client_id: clientId }, fields);
    if (!send(msg)) { setStatus(form, "not connected; your text is kept, try again in a moment", true); return; }
    form.querySelector("button[type=submit]").disabled = true;
    setStatus(form, "sending…");
    waiting.set(clientId, { form: form, timer: setTimeout(() => settle(clientId, "no answer from the server; your text is kept, try again"), 15000) });
  }

  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (form.id === "new-thread") {
      e.preventDefault();
      submit(form, { title: form.elements.namedItem("title").value, text: form.elements.namedItem("text").value });
    } else if (form.id === "reply-top") {
      e.preventDefault();
      submit(form, { thread_id: threadId, parent_id: null, text: form.elements.namedItem("text").value });
    } else if (form.classList.contains("inline-reply")) {
      e.preventDefault();
      submit(form, { thread_id: threadId, parent_id: form.dataset.parent, text: form.elements.namedItem("text").value });
    }
  });

  document.addEventListener("click", (e) => {
    const t = e.target;
    if (t.classList.contains("reply-btn")) {
      e.preventDefault();
      const details = t.closest("details");
      if (details.querySelector(":scope > form.inline-reply")) return;
      const form = document.getElementById("reply-form").content.firstElementChild.cloneNode(true);
      form.dataset.parent = t.dataset.parent;
      t.after(form);
      form.elements.namedItem("text").focus();
    } else if (t.classList.contains("report-btn")) {
      e.preventDefault();
      const holder = t.parentElement;
      if (holder.querySelector(":scope > form.report-form")) return;
      const tpl = document.getElementById("report-form");
      if (!tpl) return;
      const form = tpl.content.firstElementChild.cloneNode(true);
      form.elements.namedItem("comment_id").value = t.dataset.comment || "";
      t.after(form);
      form.elements.namedItem("reason").focus();
    } else if (t.classList.contains("cancel")) {
      t.closest("form").remove();
    }
  });

  // For people debugging a page (and the browser test): drop the socket to see it resume.
  window.playhouse = { drop: () => { if (socket) socket.close(); } };
  connect();
})();
