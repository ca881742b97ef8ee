// playhouse live pages: one websocket, reconnect with back-off, resume from the last id.
// No build step. User text is only ever set with textContent; posts and comments are shown
// as the HTML the server rendered from them (its safe Markdown), never turned into HTML here.
(function () {
  "use strict";
  const body = document.body;
  const page = body.dataset.page || null;  // null: a page without a room (the badge only)
  const badge = document.getElementById("inbox-badge");
  if (!page && !badge) return;
  const room = body.dataset.room;
  const threadId = body.dataset.thread || null;
  const threadAuthor = body.dataset.threadAuthor || "";
  const meLink = document.querySelector("header .me");
  const me = body.dataset.user || (meLink ? meLink.textContent.replace(/^u\//, "") : null);
  const sort = body.dataset.sort || "";
  const firstPage = body.dataset.firstPage !== "false";
  const loadedAt = Number(body.dataset.loadedAt || 0);
  let unread = badge ? parseInt(badge.dataset.count || "0", 10) || 0 : 0;
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

  // What a person or a bot wrote: the server's safe HTML of it (never made here), the
  // raw text kept beside it for the edit box.
  function showText(node, text, html) {
    if (html) node.innerHTML = html; else node.textContent = text || "";
    node.dataset.raw = text || "";
  }

  function rawOf(node) {
    if (!node) return "";
    return node.dataset.raw !== undefined ? node.dataset.raw : node.textContent;
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
      const title = row.querySelector("a.title");
      if (t.title_html) title.innerHTML = t.title_html; else title.textContent = t.title;
    }
    if (!lastId || t.id > lastId) lastId = t.id;
  }

  // -------------------------------------------------------------- comments (thread page)
  function same(a, b) { return !!a && !!b && a.toLowerCase() === b.toLowerCase(); }

  // Who may ask a bot's comment again, and choose its answer: the person it answers (the
  // author of its parent comment, or of the post for a top-level reply) or the post's.
  function mayChoose(node, c) {
    if (!me || !c.is_bot || c.gone) return false;
    if (same(me, threadAuthor)) return true;
    if (!c.parent_id) return false;
    const parent = document.getElementById("c-" + c.parent_id);
    return !!parent && !parent.classList.contains("bot") && !parent.classList.contains("gone")
      && same(parent.dataset.author, me);
  }

  function child(details, cls, tag, before) {
    let found = details.querySelector(":scope > ." + cls.split(" ")[0]);
    if (!found) { found = el(tag || "div", cls); details.insertBefore(found, before || details.querySelector(":scope > .replies")); }
    return found;
  }

  function actionForm(action, label, cls) {
    const form = el("form", "inline " + cls);
    form.method = "post";
    form.action = action;
    const token = document.querySelector("input[name=_csrf_token]");
    if (token) form.appendChild(token.cloneNode());
    const back = el("input");
    back.type = "hidden"; back.name = "next"; back.value = location.pathname;
    form.appendChild(back);
    form.appendChild(el("button", "link quiet", label));
    return form;
  }

  function fillActions(node, c, details) {
    const old = details.querySelector(":scope > .actions");
    if (old) old.remove();
    if (!me || !["ok", "declined", "failed"].includes(c.status) || c.gone || c.hidden) return;
    const actions = el("span", "actions");
    const btn = (cls, label) => { const b = el("button", cls + " link", label); b.type = "button"; actions.appendChild(b); actions.appendChild(document.createTextNode(" ")); return b; };
    if (c.status === "ok" && !closed && !c.held) btn("reply-btn", "reply").dataset.parent = c.id;
    const mine = !c.is_bot && same(c.author, me);
    if (mine) { btn("edit-btn", "edit"); btn("delete-btn", "delete"); }
    if (c.is_bot && same(me, threadAuthor)) btn("delete-btn", "delete");
    if (mayChoose(node, c)) btn("again-btn", c.status === "ok" ? "another answer" : "ask again").title = "ask u/" + c.author + " for another answer";
    if (c.is_bot && c.persona) actions.appendChild(actionForm("/bots/" + encodeURIComponent(c.persona) + "/mute", "mute u/" + c.persona, "mute-form"));
    else if (!c.is_bot && !mine) actions.appendChild(actionForm("/u/" + encodeURIComponent(c.author) + "/block", "block u/" + c.author, "block-form"));
    if (c.status === "ok" && !same(c.author, me)) btn("report-btn", "report").dataset.comment = c.id;
    details.insertBefore(actions, details.querySelector(":scope > .replies"));
  }

  // The answer a page shows of a re-rolled comment: the one chosen, or one stepped to.
  function showAlternative(node, index) {
    const alternatives = JSON.parse(node.dataset.alternatives || "[]");
    if (!alternatives.length) return;
    const i = Math.max(0, Math.min(alternatives.length - 1, index));
    node.dataset.view = String(i);
    const details = node.querySelector("details");
    showText(details.querySelector(":scope > .text"), alternatives[i].text, alternatives[i].html);
    const img = details.querySelector(":scope > img.generated");
    if (img && alternatives[i].image_url) img.src = alternatives[i].image_url;
    const which = details.querySelector(":scope > .swipe .which");
    if (which) which.textContent = (i + 1) + "/" + alternatives.length;
    // why.js: "why this reply?" explains the answer shown here
    document.dispatchEvent(new CustomEvent("playhouse:shown", { detail: { id: node.dataset.id, answer: i + 1 } }));
  }

  function fillComment(node, c) {
    node.className = "comment" + (c.is_bot ? " bot" : "") + (c.status !== "ok" ? " " + c.status : "")
      + (c.gone ? " gone" : "") + (c.held ? " held" : "") + (c.hidden ? " hidden" : "");
    node.dataset.author = c.author;
    node.dataset.rerolls = String(c.rerolls || 0);
    const details = node.querySelector("details");
    const summary = details.querySelector(":scope > summary");
    summary.textContent = "";
    if (c.hidden) {
      summary.appendChild(el("span", "hidden-note", c.hidden === "muted"
        ? "a reply by u/" + c.author + ", whom you muted" : "a comment by u/" + c.author + ", whom you blocked"));
      details.querySelectorAll(":scope > :not(summary):not(.replies)").forEach((n) => n.remove());
      return;
    }
    summary.appendChild(c.gone ? el("span", "author gone", c.author) : authorEl(c.author, c.is_bot));
    summary.appendChild(document.createTextNode(" "));
    summary.appendChild(timeEl(c.created_at));
    if (c.edited_at && !c.gone) {
      const edited = el("span", "edited", "edited " + timeEl(c.edited_at).textContent);
      edited.title = "edited " + new Date(c.edited_at).toLocaleString();
      summary.appendChild(document.createTextNode(" "));
      summary.appendChild(edited);
    }
    if (c.held) { summary.appendChild(document.createTextNode(" ")); summary.appendChild(el("span", "badge held", "waiting for a moderator")); }
    const text = child(details, "text md");
    if (c.status === "placeholder") { text.textContent = "thinking…"; delete text.dataset.raw; }
    else showText(text, c.text, c.html);
    text.classList.toggle("caption", !!c.image_url);  // a picture's caption quotes a person
    if (c.status === "ok" && !details.querySelector(":scope > form.vote")) {
      details.insertBefore(voteEl(c.thread_id, c.id, true), text);
    }
    let img = details.querySelector(":scope > img.generated");
    if (c.image_url && !img) {
      img = el("img", "generated");
      text.after(img);
    }
    if (img && c.image_url) { img.src = c.image_url; img.alt = "image by u/" + c.author; }
    if (img && !c.image_url) img.remove();
    const swipe = details.querySelector(":scope > .swipe");
    if (c.alternatives && c.alternatives.length > 1 && c.status === "ok") {
      node.dataset.alternatives = JSON.stringify(c.alternatives);
      node.dataset.shown = String(c.shown);
      const bar = swipe || child(details, "swipe", "span", details.querySelector(":scope > .wait, :scope > p.notice, :scope > details.why, :scope > .actions") || details.querySelector(":scope > .replies"));
      if (!bar.firstChild) {
        const prev = el("button", "link prev-answer", "‹"); prev.type = "button"; prev.title = "the answer before";
        const next = el("button", "link next-answer", "›"); next.type = "button"; next.title = "the answer after";
        bar.append(prev, " ", el("span", "which"), " ", next);
      }
      showAlternative(node, c.shown);
    } else if (swipe) {
      swipe.remove();
      delete node.dataset.alternatives;
    }
    if (mayChoose(node, c)) node.dataset.mayChoose = "1"; else delete node.dataset.mayChoose;
    fillActions(node, c, details);
  }

  // ------------------------------------------------------------------ the post (thread page)
  function fillPost(t) {
    const post = document.getElementById("post");
    if (!post || t.id !== threadId) return;
    post.classList.toggle("gone", !!t.gone);
    showText(post.querySelector("h1"), t.title, t.title_html);
    const bodyEl = post.querySelector(".post-body");
    if (bodyEl) { showText(bodyEl, t.body, t.body_html); bodyEl.hidden = !t.body; }
    const edited = post.querySelector(".meta .edited");
    if (edited) { edited.hidden = !t.edited_at || !!t.gone; if (t.edited_at) edited.textContent = "· edited " + timeEl(t.edited_at).textContent; }
    if (t.gone) {
      const author = post.querySelector(".meta .author");
      if (author) { const wrap = author.parentElement.classList.contains("meta") ? author : author.parentElement; wrap.replaceWith(el("span", "author gone", t.author)); }
      const actions = post.querySelector(".post-actions");
      if (actions) actions.remove();
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
      fillPost(t);  // the tombstone, as an author's deletion shows it
      post.querySelectorAll(":scope > img.generated, :scope > p > a[rel], :scope > .post-head form.vote").forEach((n) => n.remove());
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
      details.appendChild(el("summary"));
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

  // ---------------------------------------------------------------------- the inbox badge
  function showUnread(n) {
    if (!badge) return;
    unread = Math.max(0, n);
    badge.textContent = unread >= 100 ? "99+" : String(unread);
    badge.dataset.count = String(unread);
    badge.hidden = unread === 0;
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
      case "comment": case "thinking": case "comment_replaced": case "comment_changed": upsertComment(ev.comment); break;
      case "thread": upsertThread(ev.thread); break;
      case "moderated": onModerated(ev); break;
      case "banned":
        if (ev.room === null || ev.room === undefined) closeComposers("You are banned from the site" + (ev.reason ? " (" + ev.reason + ")" : "") + ".");
        else if (sameRoom(ev.room)) closeComposers("You are banned from r/" + ev.room + (ev.reason ? " (" + ev.reason + ")" : "") + ": you can read it, not post.");
        break;
      case "access_ended": if (sameRoom(ev.room)) { closed = true; closeComposers(ev.reason || ("You are no longer a member of r/" + ev.room + ".")); } break;
      case "score": showScore(ev.item_id, ev.score, ev.version); break;
      case "voted":
        votes.delete(ev.client_id);
        showMine(ev.item_id, ev.value);
        showScore(ev.item_id, ev.score, ev.version);
        break;
      case "thread_changed": if (page === "thread") fillPost(ev.thread); else if (page === "room") upsertThread(ev.thread); break;
      case "inbox": showUnread(ev.unread === null || ev.unread === undefined ? unread + (ev.added || 0) : ev.unread); break;
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
      if (page) send({ type: "subscribe", room: room, thread_id: threadId, after: lastId || null,
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
      (t.closest(".actions") || t).after(form);
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
      const form = t.closest("form");
      const hiddenText = form.previousElementSibling;
      if (form.classList.contains("edit-form") && hiddenText && hiddenText.classList.contains("text")
          && !hiddenText.classList.contains("post-body")) hiddenText.hidden = false;
      form.remove();
    } else if (t.classList.contains("edit-btn")) {
      startEdit(t.closest(".comment"));
    } else if (t.classList.contains("edit-post-btn")) {
      startEditPost();
    } else if (t.classList.contains("delete-btn") || t.classList.contains("delete-post-btn")) {
      // Asked twice instead of a dialog: the first click arms it, the second deletes.
      if (!t.dataset.armed) { t.dataset.armed = "1"; t.textContent = "really delete?"; return; }
      const node = t.closest(".comment");
      const path = node ? "/t/" + threadId + "/c/" + node.dataset.id + "/delete" : "/t/" + threadId + "/delete";
      act(path, {}, t);
    } else if (t.classList.contains("again-btn")) {
      act("/t/" + threadId + "/c/" + t.closest(".comment").dataset.id + "/again", {}, t);
    } else if (t.classList.contains("prev-answer") || t.classList.contains("next-answer")) {
      const node = t.closest(".comment");
      const step = t.classList.contains("prev-answer") ? -1 : 1;
      const index = parseInt(node.dataset.view || node.dataset.shown || "0", 10) + step;
      const count = JSON.parse(node.dataset.alternatives || "[]").length;
      if (index < 0 || index >= count) return;
      if (node.dataset.mayChoose) act("/t/" + threadId + "/c/" + node.dataset.id + "/show", { answer: index + 1 }, t);
      else showAlternative(node, index);  // only this page steps through them
    }
  });

  // --------------------------------------------------------- edit, delete, ask again
  function csrfToken() {
    const input = document.querySelector("input[name=_csrf_token]");
    return input ? input.value : "";
  }

  async function call(path, fields) {
    const answer = await fetch(path, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(fields || {}),
      headers: { "content-type": "application/json", "accept": "application/json", "x-csrftoken": csrfToken() },
    });
    let data = null;
    try { data = await answer.json(); } catch (e) { data = null; }
    if (!answer.ok) throw new Error((data && data.detail) || "the server answered " + answer.status);
    return data;
  }

  function shown(data) {
    if (data && data.comment) upsertComment(data.comment);
    if (data && data.thread) fillPost(data.thread);
  }

  async function act(path, fields, button) {
    if (button) button.disabled = true;
    try { shown(await call(path, fields)); }
    catch (e) { showBanner(e.message); }
    finally { if (button) { button.disabled = false; delete button.dataset.armed; } }
  }

  function editForm(fields, onSave) {
    const form = el("form", "composer edit-form");
    fields.forEach((f) => form.appendChild(f));
    const row = el("div", "row");
    const save = el("button", null, "Save"); save.type = "submit";
    const cancel = el("button", "cancel link", "cancel"); cancel.type = "button";
    const status = el("span", "status"); status.setAttribute("role", "status");
    row.append(save, cancel, status);
    form.appendChild(row);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      save.disabled = true;
      status.textContent = "saving…";
      status.classList.remove("error");
      try { shown(await onSave()); form.remove(); }
      catch (err) { status.textContent = err.message; status.classList.add("error"); }
      finally { save.disabled = false; }
    });
    return form;
  }

  function startEdit(node) {
    const details = node.querySelector("details");
    if (details.querySelector(":scope > form.edit-form")) return;
    const text = details.querySelector(":scope > .text");
    const box = el("textarea"); box.name = "text"; box.rows = 3; box.maxLength = 10000; box.value = rawOf(text);
    const form = editForm([box], async () => {
      const data = await call("/t/" + threadId + "/c/" + node.dataset.id + "/edit", { text: box.value });
      text.hidden = false;
      return data;
    });
    text.hidden = true;
    text.after(form);
    box.focus();
  }

  function startEditPost() {
    const post = document.getElementById("post");
    if (post.querySelector("form.edit-form")) return;
    const title = el("input"); title.name = "title"; title.maxLength = 300; title.value = rawOf(post.querySelector("h1"));
    const box = el("textarea"); box.name = "text"; box.rows = 4; box.maxLength = 10000; box.value = rawOf(post.querySelector(".post-body"));
    const form = editForm([title, box], () => call("/t/" + threadId + "/edit", { title: title.value, text: box.value }));
    post.querySelector(".post-actions").before(form);
    title.focus();
  }

  // For people debugging a page (and the browser test): drop the socket to see it resume.
  window.playhouse = { drop: () => { if (socket) socket.close(); } };
  connect();
})();
