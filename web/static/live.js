// playhouse live pages: one websocket, reconnect with back-off, resume from the last id.
// No build step. User text is only ever set with textContent; posts and comments are shown
// as the HTML the server rendered from them (its safe Markdown), never turned into HTML here.
(function () {
  "use strict";
  const body = document.body;
  const page = body.dataset.page;
  if (!page) return;
  const room = body.dataset.room;
  const threadId = body.dataset.thread || null;
  const me = body.dataset.user || null;
  const sort = body.dataset.sort || "";
  const firstPage = body.dataset.firstPage !== "false";
  const loadedAt = Number(body.dataset.loadedAt || 0);
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
    const a = el("a", "author " + (isBot ? "bot" : "human"));
    a.href = "/u/" + encodeURIComponent(name);
    const look = isBot ? looks[name] : null;
    if (look) {
      a.style.setProperty("--name", look.colour);
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

  // ------------------------------------------------------------------------- votes
  const scores = new Map(); // item id -> newest version shown

  function voteEl(threadId, itemId, isComment) {
    const form = el("form", "vote");
    form.dataset.thread = threadId;
    form.dataset.item = itemId;
    if (isComment) form.dataset.comment = itemId;
    const up = el("button", "up", "▲");
    up.type = "submit"; up.value = "1"; up.title = "up-vote"; up.setAttribute("aria-label", "up-vote");
    const score = el("span", "score", "0");
    score.dataset.scoreFor = itemId;
    score.dataset.version = "0";
    const down = el("button", "down", "▼");
    down.type = "submit"; down.value = "-1"; down.title = "down-vote"; down.setAttribute("aria-label", "down-vote");
    [up, down].forEach((b) => { b.setAttribute("aria-pressed", "false"); b.disabled = !me; });
    form.append(up, score, down);
    return form;
  }

  function showScore(itemId, score, version) {
    if ((scores.get(itemId) || 0) >= version) return;
    scores.set(itemId, version);
    document.querySelectorAll('[data-score-for="' + itemId + '"]').forEach((node) => {
      node.textContent = String(score);
      node.dataset.version = String(version);
    });
  }

  function showMine(itemId, value) {
    document.querySelectorAll('form.vote[data-item="' + itemId + '"]').forEach((form) => {
      form.classList.toggle("up", value === 1);
      form.classList.toggle("down", value === -1);
      const up = form.querySelector("button.up"), down = form.querySelector("button.down");
      up.value = value === 1 ? "0" : "1";
      down.value = value === -1 ? "0" : "-1";
      up.setAttribute("aria-pressed", String(value === 1));
      down.setAttribute("aria-pressed", String(value === -1));
    });
  }

  function vote(form, value) {
    const clientId = "v" + Date.now().toString(36) + (counter++);
    const msg = { type: "vote", room: room, thread_id: form.dataset.thread,
                  comment_id: form.dataset.comment || null, value: value, client_id: clientId };
    if (!send(msg)) { showBanner("not connected; your vote was not sent"); return; }
    votes.set(clientId, form.dataset.item);
  }
  const votes = new Map(); // client_id -> item id

  // ---------------------------------------------------------------- threads (room page)
  const newestAtLoad = body.dataset.lastId || "";
  // A thread the page does not show is added on top only where a new thread belongs:
  // the first page of new (newer than what it showed) or of hot and active (made since
  // the page was loaded). Top lists by votes: a new thread is not a top one yet.
  function shouldInsert(t) {
    if (!firstPage || sort === "top") return false;
    if (sort === "new") return t.id > newestAtLoad;
    return Date.parse(t.created_at) / 1000 >= loadedAt - 1;
  }

  function upsertThread(t) {
    if (page !== "room") {
      if (t.id === threadId) { const n = document.getElementById("reply-count"); if (n) n.textContent = t.comment_count; }
      return;
    }
    const list = document.getElementById("threads");
    let row = list.querySelector('li[data-id="' + t.id + '"]');
    if (!row) {
      if (!shouldInsert(t)) return;
      row = el("li", "thread-row");
      row.dataset.id = t.id;
      row.appendChild(voteEl(t.id, t.id, false));
      const rowBody = el("div", "row-body");
      row.appendChild(rowBody);
      const href = "/r/" + encodeURIComponent(t.room) + "/t/" + t.id;
      if (t.image_url) {
        const link = el("a");
        link.href = href;
        const img = el("img", "thumb");
        img.src = t.image_url;
        img.alt = "";
        link.appendChild(img);
        rowBody.appendChild(link);
      }
      const a = el("a", "title");
      if (t.title_html) a.innerHTML = t.title_html; else a.textContent = t.title;  // server-rendered
      a.href = href;
      rowBody.appendChild(a);
      const meta = el("div", "meta");
      meta.appendChild(authorEl(t.author, t.is_bot));
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(el("span", "count", String(t.comment_count)));
      meta.appendChild(document.createTextNode(" replies · "));
      meta.appendChild(timeEl(t.last_activity));
      rowBody.appendChild(meta);
      list.insertBefore(row, list.firstChild);
      const empty = document.getElementById("no-threads");
      if (empty) empty.remove();
    } else {
      row.querySelector(".count").textContent = String(t.comment_count);
    }
    if (!lastId || t.id > lastId) lastId = t.id;
  }

  // -------------------------------------------------------------- comments (thread page)
  function fillComment(node, c) {
    node.className = "comment" + (c.is_bot ? " bot" : "") + (c.status !== "ok" ? " " + c.status : "");
    const details = node.querySelector("details");
    const text = details.querySelector(".text");
    if (c.status === "placeholder") text.textContent = "thinking…";
    else if (c.html) text.innerHTML = c.html;  // the server's safe rendering of c.text
    else text.textContent = c.text;
    text.classList.toggle("caption", !!c.image_url);  // a picture's caption quotes a person
    if (c.status === "ok" && !details.querySelector(":scope > form.vote")) {
      details.insertBefore(voteEl(c.thread_id, c.id, true), text);
    }
    let img = details.querySelector(":scope > img.generated");
    if (c.image_url && !img) {
      img = el("img", "generated");
      img.src = c.image_url;
      img.alt = "image by u/" + c.author;
      text.after(img);
    }
    if (me && c.status === "ok" && !details.querySelector(":scope > .reply-btn")) {
      const btn = el("button", "reply-btn link", "reply");
      btn.dataset.parent = c.id;
      details.querySelector(".replies").before(btn);
    }
  }

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
      details.appendChild(el("div", "text md"));
      details.appendChild(el("div", "replies"));
      node.appendChild(details);
      const parent = c.parent_id && document.getElementById("c-" + c.parent_id);
      const home = parent ? parent.querySelector(":scope > details > .replies") : document.getElementById("comments");
      if (sort === "new") home.insertBefore(node, home.firstChild); else home.appendChild(node);
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
      case "score": showScore(ev.item_id, ev.score, ev.version); break;
      case "voted":
        votes.delete(ev.client_id);
        showMine(ev.item_id, ev.value);
        showScore(ev.item_id, ev.score, ev.version);
        break;
      case "presence": if (ev.room.toLowerCase() === room.toLowerCase()) showPresence(ev); break;
      case "ack": settle(ev.client_id, null, ev.notice); break;
      case "error":
        if (ev.client_id && waiting.has(ev.client_id)) settle(ev.client_id, ev.reason);
        else { votes.delete(ev.client_id); showBanner(ev.reason); }
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
    if (form.classList.contains("vote")) {
      e.preventDefault();
      const button = e.submitter;
      if (button && me) vote(form, Number(button.value));
    } else if (form.id === "new-thread") {
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
    } else if (t.classList.contains("cancel")) {
      t.closest("form").remove();
    }
  });

  // For people debugging a page (and the browser test): drop the socket to see it resume.
  window.playhouse = { drop: () => { if (socket) socket.close(); } };
  connect();
})();
