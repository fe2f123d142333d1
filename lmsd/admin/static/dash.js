// lmsd's dashboard: polls /status (with the models view), /sessions and /upstreams and
// follows /events live.
// No framework and no innerHTML: every value from the daemon is set as text.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  // A token given as ?token= is kept for this tab only and taken off the address bar.
  let token = params.get("token") || sessionStorage.getItem("lmsd-token") || "";
  if (params.has("token")) {
    sessionStorage.setItem("lmsd-token", token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  const MAX_EVENTS = 300, MAX_TURNS = 40, MAX_MODEL_EVENTS = 8;
  // The most recent sessions first, a page at a time: 3000 cards redrawn every 2 s froze it.
  const PAGE = 100, MAX_SHOWN = 1000;  // MAX_SHOWN: the admin API's largest page
  let shownSessions = PAGE, sessionQuery = "";
  const turns = new Map();  // session -> [{ttft, prefilled}], from request.end events
  let status = {}, paused = false, filter = { session: "", types: [] };

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid !== undefined && kid !== null) el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }
  const num = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  const ago = (ts) => {
    if (!ts) return "never";
    const s = Math.max(0, Date.now() / 1000 - ts);
    return s < 60 ? Math.round(s) + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago"
      : Math.round(s / 3600) + " h ago";
  };
  const show = (v) => (v === null || v === undefined ? "–" : typeof v === "object"
    ? JSON.stringify(v) : String(v));
  function kv(pairs) {
    return h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined)
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v instanceof Node ? v : show(v))]));
  }

  async function api(method, path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const res = await fetch(path, { method, headers, cache: "no-store" });
    if (!res.ok) throw new Error(method + " " + path + ": HTTP " + res.status);
    return res.json();
  }

  // -- charts: one inline SVG polyline per series ---------------------------------------
  function spark(values, cls, label) {
    const w = 120, hgt = 30, vals = values.filter((v) => typeof v === "number");
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    if (vals.length) {
      const max = Math.max(...vals, 1), step = vals.length > 1 ? w / (vals.length - 1) : 0;
      const pts = vals.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`);
      if (vals.length === 1) pts.push(`${w},${pts[0].split(",")[1]}`);
      const line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("class", cls);
      svg.append(line);
    }
    return svg;
  }
  function chart(caption, values, cls, unit) {
    const vals = values.filter((v) => typeof v === "number");
    const last = vals.length ? num(vals[vals.length - 1]) + unit : "no data";
    return h("figure", {}, spark(vals, cls, caption), h("figcaption", {}, `${caption}: ${last}`));
  }

  // -- sessions -------------------------------------------------------------------------
  function recording() {
    const rec = status.recording;  // present only where lmsd can record
    return rec && rec.available !== false ? rec : null;
  }
  function sessionCard(s) {
    const rec = recording();
    const recorded = rec && Array.isArray(rec.sessions) && rec.sessions.includes(s.session);
    const act = (method, path) => () => api(method, path).then(refresh).catch(report);
    const sid = encodeURIComponent(s.session);
    const head = h("div", { class: "card-head" }, h("strong", {}, s.session),
      h("span", { class: "muted" }, (s.fronts || []).join(", ")),
      h("span", { class: "muted" }, "used " + ago(s.last_used)),
      rec ? h("button", { type: "button", class: "record",
        on: { click: act(recorded ? "DELETE" : "PUT", `/sessions/${sid}/record`) } },
        recorded ? "Stop recording" : "Record") : null,
      h("button", { type: "button", class: "danger reset", title: "forget this session's chain",
        on: { click: act("DELETE", `/sessions/${sid}`) } }, "Reset"));
    const rows = (s.agents || []).map((a) => {
      const misses = Object.entries(a.misses || {}).map(([k, v]) => `${k} ×${v}`).join(", ");
      const saved = a.tokens_full ? Math.round(100 * (1 - a.tokens_sent / a.tokens_full)) : null;
      // A stateless upstream (chat, messages) has nothing to chain: its turns are neither
      // hits nor misses, and its prefix cache is what saves the prefill.
      const unchained = a.unchained_turns || 0;
      const chain = unchained && unchained >= a.turns && !a.chain_hits
        ? [["Chaining", "none: a stateless upstream, each turn sent whole"]]
        : [["Chain hits", num(a.chain_hits) + (unchained ? ` (+${num(unchained)} unchained)` : "")],
          ["Misses", misses || "none"]];
      return h("div", { class: "agent" }, kv([
        ["Agent", a.agent], ["Model", a.model], ["Turns", num(a.turns)], ...chain,
        ["Cached", typeof a.cached_percent === "number"
          ? `${a.cached_percent}% of the prompt tokens` : "unknown: the engine does not say what it prefilled"],
        ["Tokens sent", `${num(a.tokens_sent)} of ${num(a.tokens_full)} full resend` +
          (saved !== null ? ` (${saved}% saved)` : "")],
        ["Prefilled", `${num(a.prefilled_tokens)} (cached ${num(a.cached_tokens)})`],
        ["Upstream", a.upstream],
      ]));
    });
    const t = turns.get(s.session) || [];
    const charts = h("div", { class: "charts" },
      chart("TTFT per turn", t.map((x) => x.ttft), "ttft", " ms"),
      chart("Prefilled tokens per turn", t.map((x) => x.prefilled), "prefill", ""));
    return h("article", { class: "card session", "data-session": s.session }, head, rows, charts);
  }
  function renderSessions(list, total) {
    $("session-count").textContent = total ? `(${total})` : "";
    $("no-sessions").hidden = total > 0 || sessionQuery !== "";
    $("session-tools").hidden = total === 0 && sessionQuery === "";
    $("session-range").textContent = sessionQuery && !total ? "no session matches"
      : list.length < total ? `showing the ${list.length} most recent of ${total}` +
        (shownSessions >= MAX_SHOWN ? "; filter to find the others" : "") : "";
    $("more-sessions").hidden = list.length >= total || shownSessions >= MAX_SHOWN;
    $("sessions").replaceChildren(h("div", { class: "cards" }, list.map(sessionCard)));
  }
  function sessionsPath() {
    return "/sessions?" + new URLSearchParams({ limit: String(shownSessions), q: sessionQuery });
  }

  // -- upstreams and the watcher --------------------------------------------------------
  function upstreamCard(u) {
    const health = u.health || {};
    const healthy = u.reachable !== false && health.state !== "open";
    const cache = u.cache && typeof u.cache === "object" ? Object.entries(u.cache) : [];
    return h("article", { class: "card upstream" },
      h("div", { class: "card-head" }, h("strong", {}, u.name || u.url),
        h("span", { class: "pill " + (healthy ? "ok" : "bad") }, healthy ? "healthy" : "unhealthy"),
        h("span", { class: "muted" }, u.kind)),
      kv([["URL", u.url], ["Dialect", u.api ? `${u.api} (${u.api_why || ""})` : "undecided"],
        ["Breaker", `${health.state || "–"}, ${num(health.consecutive_failures)} failures`],
        ["Load", `${num(u.in_flight)} in flight` + (u.max_concurrent ? ` of ${u.max_concurrent}` : "") +
          `, ${num(u.served)} served`],
        ["In rotation", u.in_rotation ? "yes" : "no"],
        // The conversations placed here that were active within the window (with several
        // upstreams, pinned here): the session cards' "Upstream" names the same one.
        ["Active sessions", `${num(u.active_sessions)}` +
          (u.active_window_s ? ` in the last ${Math.round(u.active_window_s / 60)} min` : "") +
          ((u.sessions || []).length ? ": " + u.sessions.map((p) =>
            p.agent === "main" ? p.session : `${p.session}/${p.agent}`).join(", ") : "")],
        ["Models", (u.models || []).join(", ") || "none"]]),
      cache.length ? [h("h3", {}, "Cache"), kv(cache)] : null);
  }
  // -- the models each upstream can serve (/status "served", as GET /models answers) ------
  const bytes = (n) => {
    if (typeof n !== "number" || n <= 0) return "–";
    for (const [unit, scale] of [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 1024]]) {
      if (n >= scale) return (n / scale).toFixed(1) + " " + unit;
    }
    return n + " B";
  };
  const idle = (s) => {
    if (typeof s !== "number") return "never used";
    const t = Math.floor(Math.max(0, s)), d = Math.floor(t / 86400), hr = Math.floor(t / 3600),
      m = Math.floor(t / 60);
    return d ? `${d}d ${hr % 24}h` : hr ? `${hr}h ${m % 60}m` : m ? `${m}m ${t % 60}s` : `${t}s`;
  };
  const STATE_CLASS = { loaded: "ok", loading: "warn", unloading: "warn", failed: "bad" };
  function servedRow(m) {
    const notes = [m.pinned ? "pinned" : null, m.group ? "group " + m.group : null,
      m.ttl_s && !m.pinned ? "ttl " + idle(m.ttl_s) : null,
      m.started ? `started (pid ${m.pid ?? "?"})` : m.by_lmsd ? "loaded by lmsd" : null]
      .filter(Boolean).join(", ");
    return h("tr", { "data-model": m.name, "data-state": m.state },
      h("td", { class: "name" }, m.name), h("td", {}, m.upstream),
      h("td", { class: "state " + (STATE_CLASS[m.state] || "muted") }, m.state),
      h("td", {}, bytes(m.memory_bytes)), h("td", {}, num(m.context_length)),
      h("td", {}, idle(m.idle_s)), h("td", {}, num(m.in_flight)), h("td", {}, notes || "–"));
  }
  function renderServed(view) {
    const rows = (view && view.models) || [];
    $("served-count").textContent = rows.length ? `(${rows.filter((m) => m.loaded).length} of ${rows.length} loaded)` : "";
    $("served").tBodies[0].replaceChildren(...(rows.length ? rows.map(servedRow)
      : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no upstream lists a model"))]));
    $("budgets").replaceChildren(...((view && view.budgets) || []).map((b) =>
      h("li", {}, `Budget ${b.upstream}: ${b.used_bytes ? bytes(b.used_bytes) : "0 B"} of ${bytes(b.budget_bytes)}`)));
  }

  function renderStatus() {
    $("version").textContent = status.version ? `v${status.version} · up ${Math.round(status.uptime_s)} s` : "";
    const r = status.requests || {};
    $("summary").textContent = `${num(r.requests)} requests · ${num(r.active_streams)} streaming`;
    const w = status.watcher || {};
    $("watcher").replaceWith(Object.assign(kv([
      ["Source", w.source], ["Reachable", w.reachable], ["Enforcing", w.enforcing],
      ["Min context", num(w.min_context)], ["Polls", num(w.polls)],
      ["Reloading", (w.reloading || []).join(", ") || "none"],
      ["Backing off", (w.backing_off || []).join(", ") || "none"],
      ["Last error", w.last_error || "none"]]), { id: "watcher" }));
    const models = (status.models || []).map((m) => h("tr", {},
      h("td", {}, m.key + (m.upstream ? ` @ ${m.upstream}` : "")),
      h("td", {}, `${num(m.context_length)} / ${num(m.max_context_length)}`),
      h("td", { class: m.state === "loaded" ? "ok" : "warn" }, m.state)));
    $("models").tBodies[0].replaceChildren(...(models.length ? models
      : [h("tr", {}, h("td", { colspan: 3, class: "muted" }, "no model loaded"))]));
    renderServed(status.served);
  }

  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const [st, ss, us] = await Promise.all([api("GET", "/status"), api("GET", sessionsPath()),
        api("GET", "/upstreams")]);
      status = st;
      renderStatus();
      const listed = ss.sessions || [];
      renderSessions(listed, typeof ss.total === "number" ? ss.total : listed.length);
      $("upstreams").replaceChildren(h("div", { class: "cards" }, (us.upstreams || []).map(upstreamCard)));
    } catch (err) { report(err); } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  function report(err) { $("conn").textContent = String(err.message || err); $("conn").className = "pill bad"; }

  // -- the event tail (filtered as `lmsd tail --session --type` filters) -----------------
  function wanted(ev) {
    if (filter.session && ev.session !== filter.session) return false;
    const kind = String(ev.type || "");
    return !filter.types.length || filter.types.some((t) => kind === t || kind.startsWith(t + "."));
  }
  function eventLine(ev) {
    const ts = typeof ev.ts === "number" ? new Date(ev.ts * 1000) : new Date();
    const rest = Object.entries(ev).filter(([k, v]) => !["ts", "type", "level"].includes(k) && v !== null)
      .map(([k, v]) => `${k}=${typeof v === "string" && !/[\s"=]/.test(v) && v ? v : JSON.stringify(v)}`);
    const level = String(ev.level || "info");
    return h("li", { class: "lvl-" + level, "data-type": ev.type || "" },
      h("span", { class: "t" }, ts.toTimeString().slice(0, 8)), h("span", { class: "k" }, ev.type || "?"),
      (level !== "info" && level !== "debug" ? `level=${level} ` : "") + rest.join(" "));
  }
  const seen = [];
  function onEvent(ev) {
    if (ev.type === "subscribed") return;
    seen.push(ev);
    if (seen.length > MAX_EVENTS) seen.shift();
    if (ev.type === "request.end" && ev.session) {
      const list = turns.get(ev.session) || [];
      list.push({ ttft: ev.ttft_ms, prefilled: ev.prefilled_tokens });
      if (list.length > MAX_TURNS) list.shift();
      turns.set(ev.session, list);
    }
    if (ev.type === "session.reset") {
      if (ev.session === "*") turns.clear(); else turns.delete(ev.session);
    }
    if (/^(request\.end|session\.|model\.|upstream\.)/.test(ev.type || "")) soon();
    if (/^model\./.test(ev.type || "")) {
      const box = $("model-events");
      if (box.querySelector(".muted")) box.replaceChildren();
      box.prepend(eventLine(ev));
      while (box.children.length > MAX_MODEL_EVENTS) box.lastChild.remove();
    }
    if (!paused && wanted(ev)) {
      const box = $("events");
      box.prepend(eventLine(ev));
      while (box.children.length > MAX_EVENTS) box.lastChild.remove();
    }
  }
  function redrawEvents() { $("events").replaceChildren(...seen.filter(wanted).reverse().map(eventLine)); }
  let timer = null;
  function soon() { if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 150); }

  let delay = 500;
  function connect() {
    const q = new URLSearchParams({ replay: "500" });
    if (token) q.set("token", token);
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/events?${q}`);
    ws.onopen = () => {
      delay = 500;
      seen.length = 0;  // the replay brings the recent events again
      turns.clear();
      $("events").replaceChildren();
      $("model-events").replaceChildren(h("li", { class: "muted" }, "none yet"));
      $("conn").textContent = "live";
      $("conn").className = "pill ok";
    };
    ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (err) { report(err); } };
    ws.onclose = () => {
      $("conn").textContent = "reconnecting"; $("conn").className = "pill bad";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 5000);
    };
  }

  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    filter = { session: $("f-session").value.trim(),
      types: $("f-types").value.split(",").map((t) => t.trim()).filter(Boolean) };
    redrawEvents();
  });
  $("s-filter").addEventListener("input", () => {
    sessionQuery = $("s-filter").value.trim();
    shownSessions = PAGE;
    soon();
  });
  $("more-sessions").addEventListener("click", () => {
    shownSessions = Math.min(shownSessions + PAGE, MAX_SHOWN);
    refresh();
  });
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    if (!paused) redrawEvents();
  });
  refresh();
  setInterval(refresh, 2000);
  connect();
})();
