// mandi dashboard: REST for history, one WebSocket (/ws) for live updates.
// Units from the API: rupees, `t` = Unix seconds UTC (shifted to IST for the chart axis).
"use strict";

(() => {
  const IST_OFFSET = 19800; // seconds: the chart shows exchange (IST) clock times
  const COLORS = ["#f0b429", "#4f8ff7", "#ab47bc", "#26c6da", "#ff7043", "#9ccc65", "#ec407a", "#8d6e63"];
  const OVERLAY_RX = /^(SMA|EMA|WMA|VWAP|BBANDS|SUPERTREND|ST)/i;
  const PANE_RX = /^RSI/i;
  const $ = (id) => document.getElementById(id);

  const state = {
    csrf: "", scope: "", ws: null, wsRetry: 0, underlyings: [], u: null, expiry: "",
    tf: 60, token: null, exchange: "NSE", chart: null, candles: null, series: {}, lastT: 0,
    enabled: new Set(["SMA_9", "EMA_21", "RSI_14"]), known: new Set(), chainChannels: [], chartChannels: [],
    positions: new Map(), chainSymbols: new Map(), timeframes: [60, 120, 180, 300],
    lastChain: null, vixToken: null, mode: "",
  };

  // ---- helpers -------------------------------------------------------------------------------
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x)) ? "–"
    : Number(x).toLocaleString("en-IN", { minimumFractionDigits: d, maximumFractionDigits: d });
  const inr = (x) => (x === null || x === undefined) ? "–" : "₹" + fmt(x, 2);
  const signed = (x, d = 2) => (x === null || x === undefined) ? "–" : (x > 0 ? "+" : "") + fmt(x, d);
  const cls = (x) => (x > 0 ? "pos" : x < 0 ? "neg" : "");
  const compact = (x) => {
    if (x === null || x === undefined) return "–";
    const a = Math.abs(x);
    if (a >= 1e7) return (x / 1e7).toFixed(2) + "Cr";
    if (a >= 1e5) return (x / 1e5).toFixed(2) + "L";
    if (a >= 1e3) return (x / 1e3).toFixed(1) + "K";
    return fmt(x, 0);
  };

  async function api(path, opts = {}) {
    const headers = { "Accept": "application/json", ...(opts.headers || {}) };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (opts.method && opts.method !== "GET") headers["X-CSRF-Token"] = state.csrf;
    const res = await fetch(path, { credentials: "same-origin", ...opts, headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    return { ok: res.ok, status: res.status, data };
  }

  function toast(title, text, kind = "") {
    const el = document.createElement("div");
    el.className = "toast " + kind;
    el.innerHTML = `<b>${esc(title)}</b><span>${esc(text)}</span>`;
    $("toasts").appendChild(el);
    setTimeout(() => el.remove(), 7000);
  }

  // ---- login ---------------------------------------------------------------------------------
  async function boot() {
    // a one-time login link that was used already (or expired) redirects here with this mark
    const badLink = location.hash === "#login-link-invalid";
    if (badLink) history.replaceState(null, "", "/");
    const r = await api("/api/v1/auth/session");
    if (!r.ok || !r.data.authenticated) {
      showLogin(badLink ? "That login link was used already or has expired: run `mandi token link` for a new one, or paste a token." : "");
      return;
    }
    state.csrf = r.data.csrf_token || "";
    state.scope = r.data.scope;
    start();
  }

  function showLogin(msg = "") {
    $("login").hidden = false;
    $("login-msg").textContent = msg;
    $("login-token").focus();
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("/api/v1/auth/login", { method: "POST", body: { token: $("login-token").value.trim() } });
    if (!r.ok) { $("login-msg").className = "msg err"; $("login-msg").textContent = (r.data && r.data.message) || "login failed"; return; }
    $("login-token").value = "";
    state.csrf = r.data.csrf_token; state.scope = r.data.scope;
    $("login").hidden = true;
    start();
  });

  $("logout").addEventListener("click", async () => {
    await api("/api/v1/auth/logout", { method: "POST" });
    location.reload();
  });

  // ---- start ---------------------------------------------------------------------------------
  async function start() {
    $("who").textContent = state.scope === "trade" ? "trade" : "read-only";
    $("logout").hidden = false;
    const canTrade = state.scope === "trade";
    for (const id of ["of-buy", "of-sell"]) $(id).disabled = !canTrade;
    $("halt-controls").hidden = !canTrade;
    if (!canTrade) $("of-msg").textContent = "This token is read-only: orders need a trade token.";
    const u = await api("/api/v1/underlyings");
    state.underlyings = (u.ok && u.data) || [];
    const sel = $("underlying");
    sel.innerHTML = state.underlyings.map((x) => `<option value="${esc(x.symbol)}">${esc(x.symbol)} (${esc(x.exchange)})</option>`).join("");
    initChart();
    connect();
    const first = state.underlyings[0];
    if (first) selectUnderlying(first.symbol);
    refreshPositions();
    refreshOrders();
    loadBacktests();
  }

  // ---- WebSocket -----------------------------------------------------------------------------
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    state.ws = ws;
    ws.onopen = () => { state.wsRetry = 0; setConn(true); };
    ws.onclose = (ev) => {
      setConn(false);
      if (ev.code === 4401) { showLogin("session expired: log in again"); return; }
      const wait = Math.min(10000, 500 * 2 ** state.wsRetry++);
      setTimeout(connect, wait);
    };
    ws.onerror = () => {};
    ws.onmessage = (ev) => {
      for (const line of ev.data.split("\n")) {
        if (!line) continue;
        let m;
        try { m = JSON.parse(line); } catch (_) { continue; }
        try { handle(m); } catch (e) { console.warn("update failed", m.channel || m.type, e); }
      }
    };
  }

  function setConn(on) {
    const el = $("conn");
    el.textContent = on ? "live" : "offline";
    el.className = "conn " + (on ? "conn-on" : "conn-off");
  }

  function send(obj) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
  }

  function resubscribe() {
    const chans = [...state.chainChannels, ...state.chartChannels, ...(state.positionTicks || []),
      "signal:>", "position:>", "position_closed", "risk:>", "order:>"];
    send({ op: "subscribe", channels: chans });
  }

  function handle(m) {
    if (m.type) {
      switch (m.type) {
        case "hello":
          state.timeframes = m.data.timeframes || state.timeframes;
          renderTimeframes();
          resubscribe();
          return;
        case "snapshot": return onSnapshot(m.data);
        case "metrics": renderSystem(m.data); return refreshAlpha();
        case "error":
          if (m.error === "not_authenticated") { showLogin(); return; }
          console.warn("server:", m.error, m.message);
          return;
        default: return;
      }
    }
    const ch = m.channel || "";
    if (ch.startsWith("chain:") || ch.startsWith("data_update_")) return renderChain(m.data);
    if (ch.startsWith("tick:")) return onTick(m.data);
    if (ch.startsWith("pub:candle:") || ch.startsWith("candle:")) return onCandle(m.data);
    if (ch.startsWith("pub:ind:") || ch.startsWith("ind:")) return onIndicator(m.data);
    if (ch.startsWith("signal:")) return renderAlpha(m.data);
    if (ch === "position_closed") return onClosed(m.data);
    if (ch.startsWith("position:")) return onPosition(ch, m.data);
    if (ch === "risk:denied") return toast("Risk denied", `${m.data.rule}: ${m.data.reason}`, "err");
    if (ch === "risk:halted") { toast("Trading halted", m.data.reason || "", "warn"); return; }
    if (ch === "risk:resumed") { toast("Trading resumed", m.data.reason || "", "ok"); return; }
    if (ch.startsWith("order:")) {
      scheduleOrders();
      if (ch === "order:rejected") toast("Order rejected", `${m.data.order.symbol}: ${m.data.reason}`, "err");
    }
  }

  function onSnapshot(d) {
    if (d.status) renderSystem(d.status);
    if (d.alpha) renderAlpha(d.alpha);
    if (d.positions) { state.positions.clear(); for (const p of d.positions) state.positions.set(p.position_id, p); renderPositions(); }
    if (d.overview && state.u && d.overview[state.u]) renderInfo(d.overview[state.u]);
  }

  // ---- underlying / expiry -------------------------------------------------------------------
  $("underlying").addEventListener("change", (e) => selectUnderlying(e.target.value));
  $("expiry").addEventListener("change", (e) => { state.expiry = e.target.value; subscribeChain(); });
  $("oi-window").addEventListener("change", () => state.lastChain && renderChain(state.lastChain));

  function selectUnderlying(sym) {
    const u = state.underlyings.find((x) => x.symbol === sym);
    if (!u) return;
    state.u = sym; state.token = u.token; state.exchange = u.exchange;
    $("underlying").value = sym;
    $("expiry").innerHTML = `<option value="">nearest</option>` + u.expiries.map((e) => `<option>${esc(e)}</option>`).join("");
    state.expiry = "";
    $("ib-name").textContent = sym;
    subscribeChain();
    loadChart();
  }

  function subscribeChain() {
    if (state.chainChannels.length) send({ op: "unsubscribe", channels: state.chainChannels });
    const ch = state.expiry ? `chain:${state.u}:${state.expiry}` : `chain:${state.u}`;
    state.chainChannels = [ch, `tick:${state.exchange}:${state.token}`];
    const vix = state.underlyings.length && 264969;
    if (vix) state.chainChannels.push(`tick:NSE:${vix}`);
    state.lastChain = null;
    $("chain").tBodies[0].innerHTML = `<tr class="empty"><td colspan="21">Waiting for the chain…</td></tr>`;
    send({ op: "subscribe", channels: state.chainChannels });
  }

  // ---- info bar ------------------------------------------------------------------------------
  function renderInfo(o) {
    if (!o) return;
    $("ib-price").textContent = fmt(o.price);
    const ch = $("ib-change");
    ch.textContent = o.change === null || o.change === undefined ? "–" : `${signed(o.change)} (${signed(o.change_pct)}%)`;
    ch.className = "v " + cls(o.change);
    ch.title = o.change_basis === "open" ? "vs today's open (no previous close stored)" : "vs previous close";
    $("ib-pcr").textContent = fmt(o.pcr, 2);
    if (o.vix !== null && o.vix !== undefined) $("ib-vix").textContent = fmt(o.vix, 2);
    $("ib-itm").textContent = `${fmt(o.itm_ce_delta_pct, 1)} / ${fmt(o.itm_pe_delta_pct, 1)}`;
    $("ib-maxpain").textContent = fmt(o.max_pain, 0);
    $("ib-atm").textContent = `${fmt(o.atm_strike, 0)} · ${o.atm_iv ? (o.atm_iv * 100).toFixed(1) + "%" : "–"}`;
    if (o.time) $("exchange-time").textContent = o.time.slice(0, 19).replace("T", " ") + " IST";
  }

  function onTick(t) {
    markPositions(t);
    if (t.token === state.token) {
      $("ib-price").textContent = fmt(t.price);
      if (state.lastChain && state.lastChain.summary && state.lastChain.summary.previous_close) {
        const prev = state.lastChain.summary.previous_close;
        const ch = $("ib-change");
        ch.textContent = `${signed(t.price - prev)} (${signed((100 * (t.price - prev)) / prev)}%)`;
        ch.className = "v " + cls(t.price - prev);
      }
      $("exchange-time").textContent = t.time.slice(0, 19).replace("T", " ") + " IST";
    } else if (t.token === 264969) {
      $("ib-vix").textContent = fmt(t.price, 2);
    }
  }

  // ---- chart ---------------------------------------------------------------------------------
  function initChart() {
    const el = $("chart");
    if (!window.LightweightCharts) { $("chart-note").textContent = "Chart library not installed (run `make ui`)."; return; }
    const LC = window.LightweightCharts;
    state.chart = LC.createChart(el, {
      autoSize: true,
      layout: { background: { type: LC.ColorType.Solid, color: "#171d25" }, textColor: "#8595a8", panes: { separatorColor: "#263040" } },
      grid: { vertLines: { color: "#1e2631" }, horzLines: { color: "#1e2631" } },
      timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#263040" },
      rightPriceScale: { borderColor: "#263040" },
      crosshair: { mode: 0 },
    });
    state.candles = state.chart.addSeries(LC.CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", borderVisible: false, wickUpColor: "#26a69a", wickDownColor: "#ef5350",
    });
  }

  function renderTimeframes() {
    const box = $("timeframes");
    box.innerHTML = state.timeframes.map((tf) => `<button type="button" data-tf="${tf}" class="${tf === state.tf ? "active" : ""}">${tf >= 60 ? tf / 60 + "m" : tf + "s"}</button>`).join("");
    for (const b of box.querySelectorAll("button")) b.addEventListener("click", () => { state.tf = Number(b.dataset.tf); renderTimeframes(); loadChart(); });
  }

  async function loadChart() {
    if (!state.token) return;
    $("chart-title").textContent = `${state.u} · ${state.tf >= 60 ? state.tf / 60 + " min" : state.tf + " s"}`;
    if (state.chartChannels.length) send({ op: "unsubscribe", channels: state.chartChannels });
    const key = `${state.tf}s:${state.exchange}:${state.token}`;
    state.chartChannels = [`candle:${key}`, `pub:candle:${key}`, `ind:*:${key}`, `pub:ind:*:${key}`];
    const [c, ind] = await Promise.all([
      api(`/api/v1/candles?token=${state.token}&timeframe=${state.tf}&limit=500`),
      api(`/api/v1/indicators?token=${state.token}&timeframe=${state.tf}&limit=500`),
    ]);
    if (state.chart) {
      for (const s of Object.values(state.series)) state.chart.removeSeries(s);
      state.series = {};
      const bars = (c.ok ? c.data.candles : []).map(bar);
      state.candles.setData(bars);
      state.lastT = bars.length ? bars[bars.length - 1].time : 0;
      const avail = ind.ok ? ind.data.available.filter((n) => OVERLAY_RX.test(n) || PANE_RX.test(n)).sort() : [];
      renderOverlays(avail);
      for (const name of avail) {
        if (!state.enabled.has(name)) continue;
        const s = ensureSeries(name);
        if (s) s.setData((ind.data.series[name] || []).filter((p) => p.value !== null).map((p) => ({ time: p.t + IST_OFFSET, value: p.value })));
      }
      state.chart.timeScale().scrollToRealTime();
      $("chart-note").textContent = bars.length ? "" : "No confirmed candles yet: the forming bar shows as it builds.";
    }
    send({ op: "subscribe", channels: state.chartChannels });
  }

  function renderOverlays(names) {
    state.known = new Set(names);
    const box = $("overlays");
    box.innerHTML = names.map((n, i) => `<label><input type="checkbox" data-name="${esc(n)}" ${state.enabled.has(n) ? "checked" : ""}><span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span>${esc(n)}</label>`).join("");
    state.colors = Object.fromEntries(names.map((n, i) => [n, COLORS[i % COLORS.length]]));
    for (const cb of box.querySelectorAll("input")) cb.addEventListener("change", () => {
      if (cb.checked) state.enabled.add(cb.dataset.name); else state.enabled.delete(cb.dataset.name);
      loadChart();
    });
  }

  function ensureSeries(name) {
    if (!state.chart) return null;
    if (state.series[name]) return state.series[name];
    const LC = window.LightweightCharts;
    const pane = PANE_RX.test(name) ? 1 : 0;
    state.series[name] = state.chart.addSeries(LC.LineSeries, {
      color: (state.colors && state.colors[name]) || "#f0b429", lineWidth: pane ? 1 : 2,
      priceLineVisible: false, lastValueVisible: pane === 1, title: name,
    }, pane);
    return state.series[name];
  }

  const bar = (c) => ({ time: c.t + IST_OFFSET, open: c.open, high: c.high, low: c.low, close: c.close });

  function onCandle(c) {
    if (!state.candles || c.token !== state.token || c.timeframe !== state.tf) return;
    const b = bar(c);
    if (b.time < state.lastT) return; // never rewrite history out of order
    state.candles.update(b);
    state.lastT = b.time;
    $("chart-note").textContent = "";
  }

  function onIndicator(v) {
    if (v.token !== state.token || v.timeframe !== state.tf || v.value === null) return;
    if (!state.known.has(v.name) && (OVERLAY_RX.test(v.name) || PANE_RX.test(v.name))) {
      state.known.add(v.name); // an indicator that warmed up after the chart loaded
      renderOverlays([...state.known].sort());
    }
    if (!state.enabled.has(v.name) || !(OVERLAY_RX.test(v.name) || PANE_RX.test(v.name))) return;
    const s = ensureSeries(v.name);
    const t = v.t + IST_OFFSET;
    if (!s) return;
    const data = s.data();
    if (data.length && t < data[data.length - 1].time) return;
    s.update({ time: t, value: v.value });
  }

  // ---- option chain --------------------------------------------------------------------------
  function heat(pct) {
    if (pct === null || pct === undefined) return "";
    const a = Math.min(Math.abs(pct) / 20, 1) * 0.55 + 0.05;
    return pct >= 0 ? `background: rgba(38,166,154,${a.toFixed(2)})` : `background: rgba(239,83,80,${a.toFixed(2)})`;
  }

  function renderChain(d) {
    if (!d || !d.rows) return;
    state.lastChain = d;
    if (d.summary) renderInfo(d.summary);
    $("chain-title").textContent = `Option chain · ${d.underlying} ${d.expiry}${d.live === false ? " (stored)" : ""}`;
    const w = $("oi-window").value;
    const atm = d.atm_strike;
    const list = $("of-symbols");
    const rows = [];
    state.chainSymbols.clear();
    for (const r of d.rows) {
      const ce = r.ce || {}, pe = r.pe || {};
      const ceItm = atm !== null && r.strike < atm, peItm = atm !== null && r.strike > atm;
      const hl = (s) => (s.highlight > 0 ? " rich" : s.highlight < 0 ? " cheap" : "");
      const pc = (s) => (s.oi_change_pct ? s.oi_change_pct[w] : null);
      const title = (s) => `title="LTP − theo = ${s.price_diff === null || s.price_diff === undefined ? "–" : signed(s.price_diff)} (thresholds +${d.thresholds ? d.thresholds.diff_pos : "?"} / −${d.thresholds ? d.thresholds.diff_neg : "?"})"`;
      const sym = (side) => symbolFor(d, r.strike, side);
      const ic = ceItm ? " itm" : "", ip = peItm ? " itm" : "";
      rows.push(`<tr class="${r.atm ? "atm" : ""}${r.max_pain ? " mp" : ""}">` +
        `<td class="${ic}">${compact(ce.oi)}</td><td class="${cls(ce.oi_change)}${ic}">${compact(ce.oi_change)}</td>` +
        `<td class="${ic}" style="${heat(pc(ce))}">${pc(ce) === null || pc(ce) === undefined ? "–" : signed(pc(ce), 1) + "%"}</td>` +
        `<td class="${ic}">${ce.iv ? (ce.iv * 100).toFixed(1) : "–"}</td><td class="${ic}">${fmt(ce.delta, 2)}</td><td class="${ic}">${fmt(ce.gamma, 4)}</td>` +
        `<td class="${ic}">${fmt(ce.theta, 1)}</td><td class="${ic}">${fmt(ce.vega, 1)}</td><td class="${ic}">${fmt(ce.theoretical)}</td>` +
        `<td class="ltp${hl(ce)}${ic}" data-symbol="${esc(sym("CE"))}" ${title(ce)}>${fmt(ce.ltp)}</td>` +
        `<td class="strike">${fmt(r.strike, 0)}</td>` +
        `<td class="ltp${hl(pe)}${ip}" data-symbol="${esc(sym("PE"))}" ${title(pe)}>${fmt(pe.ltp)}</td>` +
        `<td class="${ip}">${fmt(pe.theoretical)}</td><td class="${ip}">${fmt(pe.vega, 1)}</td><td class="${ip}">${fmt(pe.theta, 1)}</td>` +
        `<td class="${ip}">${fmt(pe.gamma, 4)}</td><td class="${ip}">${fmt(pe.delta, 2)}</td><td class="${ip}">${pe.iv ? (pe.iv * 100).toFixed(1) : "–"}</td>` +
        `<td class="${ip}" style="${heat(pc(pe))}">${pc(pe) === null || pc(pe) === undefined ? "–" : signed(pc(pe), 1) + "%"}</td>` +
        `<td class="${cls(pe.oi_change)}${ip}">${compact(pe.oi_change)}</td><td class="${ip}">${compact(pe.oi)}</td></tr>`);
    }
    $("chain").tBodies[0].innerHTML = rows.join("") || `<tr class="empty"><td colspan="21">No strikes.</td></tr>`;
    list.innerHTML = [...state.chainSymbols.keys()].map((s) => `<option value="${esc(s)}">`).join("");
  }

  function symbolFor(d, strike, side) {
    // resolved lazily from the instruments API, cached per underlying/expiry
    const key = `${d.underlying}|${d.expiry}`;
    if (state.symKey !== key) { state.symKey = key; state.symMap = null; loadSymbols(d.underlying, d.expiry); }
    const s = state.symMap && state.symMap.get(`${strike}|${side}`);
    if (s) state.chainSymbols.set(s, true);
    return s || "";
  }

  async function loadSymbols(u, expiry) {
    const r = await api(`/api/v1/instruments?kind=option&underlying=${encodeURIComponent(u)}&expiry=${encodeURIComponent(expiry)}&limit=5000`);
    if (!r.ok) return;
    const m = new Map();
    for (const i of r.data.instruments) m.set(`${i.strike}|${i.option_type}`, i.symbol);
    if (state.symKey === `${u}|${expiry}`) { state.symMap = m; if (state.lastChain) renderChain(state.lastChain); }
  }

  $("chain").addEventListener("click", (ev) => {
    const td = ev.target.closest("td.ltp");
    if (td && td.dataset.symbol) { $("of-symbol").value = td.dataset.symbol; $("of-msg").textContent = ""; }
  });

  // ---- alpha card ----------------------------------------------------------------------------
  let alphaAsked = 0;
  async function refreshAlpha() {  // an ML strategy's prediction changes every bar, signal or not
    if (Date.now() - alphaAsked < 10000) return;
    alphaAsked = Date.now();
    const r = await api("/api/v1/alpha");
    if (r.ok && r.data) renderAlpha(r.data);
  }
  function renderAlpha(s) {
    if (!s || !s.alpha_signal) return;
    const probs = s.alpha_probabilities || {};
    $("alpha-time").textContent = s.time ? s.time.slice(11, 19) + " IST" : "";
    $("alpha-body").className = "alpha-body";
    $("alpha-body").innerHTML =
      `<div class="sig ${esc(s.alpha_signal)}">${esc(s.alpha_signal)} <span class="small muted">${esc(s.action || "")} ${esc(s.symbol || "")}</span></div>` +
      `<div class="small">confidence <b>${fmt((s.alpha_confidence || 0) * 100, 1)}%</b> · ${esc(s.strategy || "")}</div>` +
      (s.alpha_model ? `<div class="small muted" id="alpha-model">model ${esc(s.alpha_model)} · ${esc(s.alpha_model_date || "")}</div>` : "") +
      Object.entries(probs).map(([k, v]) => `<div class="prob"><span>${esc(k)}</span><span class="bar"><span style="width:${Math.round((v || 0) * 100)}%"></span></span><span>${fmt((v || 0) * 100, 1)}%</span></div>`).join("");
    $("ib-alpha").textContent = `${s.alpha_signal} ${fmt((s.alpha_confidence || 0) * 100, 0)}%`;
    $("ib-alpha").className = "v " + (s.alpha_signal === "Bullish" ? "pos" : s.alpha_signal === "Bearish" ? "neg" : "");
  }

  // ---- positions -----------------------------------------------------------------------------
  async function refreshPositions() {
    const r = await api("/api/v1/positions?status=open");
    if (!r.ok) return;
    state.positions.clear();
    for (const p of r.data) state.positions.set(p.position_id, p);
    renderPositions();
  }

  function onPosition(ch, d) {
    const p = d.position;
    if (!p) return;
    if (p.status === "OPEN") state.positions.set(p.position_id, p); else state.positions.delete(p.position_id);
    if (ch === "position:opened") toast("Position opened", `${p.symbol} ${p.side} ${p.quantity} @ ${inr(p.entry_premium)}`, "ok");
    renderPositions();
  }

  function onClosed(d) {
    const p = d.position || {};
    state.positions.delete(p.position_id);
    renderPositions();
    const pnl = p.realized_pnl;
    const shown = pnl === undefined || pnl === null ? "–" : (pnl >= 0 ? "+" : "−") + inr(Math.abs(pnl));
    toast("Position closed", `${p.symbol} · ${d.reason || p.exit_reason || "closed"} · P&L ${shown}`, pnl >= 0 ? "ok" : "err");
  }

  // live MTM: the ticks of every open position's contract (the kernel's own MTM arrives with
  // position:updated every monitor interval and replaces this estimate)
  function syncPositionTicks(ps) {
    const want = new Set(ps.map((p) => `tick:${p.exchange}:${p.token}`));
    const have = state.positionTicks || new Set();
    const add = [...want].filter((c) => !have.has(c) && !state.chainChannels.includes(c));
    const drop = [...have].filter((c) => !want.has(c) && !state.chainChannels.includes(c));
    if (add.length) send({ op: "subscribe", channels: add });
    if (drop.length) send({ op: "unsubscribe", channels: drop });
    state.positionTicks = want;
  }

  function markPositions(t) {
    let changed = false;
    for (const p of state.positions.values()) {
      if (p.token !== t.token || p.entry_premium === null || p.entry_premium === undefined) continue;
      p.current_premium = t.price;
      p.mtm = Math.round((t.price - p.entry_premium) * p.net_quantity * 100) / 100;
      p.pnl_pct = p.entry_premium ? (100 * (t.price - p.entry_premium) * Math.sign(p.net_quantity)) / p.entry_premium : null;
      changed = true;
    }
    if (changed) renderPositions();
  }

  function renderPositions() {
    const tb = $("positions").tBodies[0];
    const ps = [...state.positions.values()];
    syncPositionTicks(ps);
    let mtm = 0;
    tb.innerHTML = ps.length ? ps.map((p) => {
      mtm += p.mtm || 0;
      return `<tr data-id="${esc(p.position_id)}"><td title="${esc(p.strategy)}">${esc(p.symbol)}</td><td>${p.net_quantity}</td><td>${fmt(p.entry_premium)}</td>` +
        `<td>${fmt(p.current_premium)}</td><td class="${cls(p.mtm)}">${signed(p.mtm)}<br><span class="small">${p.pnl_pct === null ? "" : signed(p.pnl_pct) + "%"}</span></td>` +
        `<td class="small">${fmt(p.stop_loss_premium)} / ${fmt(p.target_premium)}</td>` +
        `<td>${state.scope === "trade" ? `<button class="btn btn-small btn-ghost" data-close="${esc(p.symbol)}" data-qty="${p.quantity}" data-side="${p.side}">Close</button>` : ""}</td></tr>`;
    }).join("") : `<tr class="empty"><td colspan="7">No open positions.</td></tr>`;
    const day = state.dayPnl === undefined || state.dayPnl === null ? "" : ` · day P&L ${signed(state.dayPnl)}`;
    $("pnl").textContent = (ps.length ? `MTM ${signed(mtm)}` : "") + (ps.length || state.dayPnl ? day : "");
    $("pnl").className = "small " + cls(ps.length ? mtm : state.dayPnl);
  }

  $("positions").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-close]");
    if (!b) return;
    b.disabled = true;
    await placeOrder({ symbol: b.dataset.close, side: b.dataset.side === "LONG" ? "SELL" : "BUY", quantity: Number(b.dataset.qty) });
  });

  // ---- the orders card: the newest orders, refreshed (at most 3×/s) on every order event -------
  let ordersTimer = null;
  function scheduleOrders() {
    if (ordersTimer === null) ordersTimer = setTimeout(() => { ordersTimer = null; refreshOrders(); }, 300);
  }

  async function refreshOrders() {
    const r = await api("/api/v1/orders?limit=8");
    if (!r.ok) return;
    state.orders = r.data;
    const tb = $("orders").tBodies[0];
    tb.innerHTML = r.data.length ? r.data.map((o) => {
      const st = String(o.status || "");
      const kind = st === "FILLED" ? "pos" : (st === "REJECTED" || st === "CANCELLED") ? "neg" : "";
      return `<tr data-id="${esc(o.order_id)}"><td title="${esc(o.strategy_name || o.strategy || "")}">${esc(o.side)} ${esc(o.quantity)} ${esc(o.symbol)}</td>` +
        `<td class="small">${esc(String(o.timestamp || o.created_ns || o.time || "").slice(11, 19))}</td><td class="${kind}">${esc(st)}</td>` +
        `<td>${o.avg_price ? fmt(o.avg_price) : "–"}</td></tr>`;
    }).join("") : `<tr class="empty"><td colspan="4">No orders yet.</td></tr>`;
    $("orders-note").textContent = r.data.length ? `${state.mode ? state.mode.toLowerCase() + " · " : ""}newest first` : "";
  }

  // ---- saved backtests: list, then one run's statistics, equity curve and trades --------------
  async function loadBacktests() {
    const r = await api("/api/v1/backtests?limit=50");
    if (!r.ok) return;
    const runs = r.data.runs || [];
    const pct = (x) => (x === null || x === undefined ? "–" : signed(x * 100) + "%");
    $("backtests").tBodies[0].innerHTML = runs.length ? runs.map((b) =>
      `<tr data-run="${esc(b.run_id)}"><td>${esc(b.run_id.slice(0, 8))}</td><td class="small">${esc(String(b.created_at || "").slice(0, 16).replace("T", " "))}</td>` +
      `<td>${esc(b.strategy)}</td><td>${esc((b.symbols || []).join(", "))}</td><td class="${cls(b.total_return)}">${pct(b.total_return)}</td>` +
      `<td>${fmt(b.sharpe)}</td><td class="neg">${pct(b.max_drawdown === null ? null : -Math.abs(b.max_drawdown))}</td><td>${esc(b.trades)}</td></tr>`
    ).join("") : `<tr class="empty"><td colspan="8">No saved backtests: <code>mandi backtest --data … --save mandi.db</code> adds one.</td></tr>`;
  }

  $("backtests").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-run]");
    if (tr) showBacktest(tr.dataset.run);
  });
  $("bt-close").addEventListener("click", () => { $("bt-detail").hidden = true; state.backtest = null; });

  async function showBacktest(runId) {
    const r = await api(`/api/v1/backtests/${encodeURIComponent(runId)}`);
    if (!r.ok) { toast("Backtest", (r.data && r.data.message) || "not found", "err"); return; }
    const b = r.data;
    state.backtest = b;
    for (const tr of $("backtests").tBodies[0].rows) tr.classList.toggle("sel", tr.dataset.run === runId);
    $("bt-detail").hidden = false;
    $("bt-title").textContent = `${b.strategy} ${JSON.stringify(b.params || {})} on ${(b.symbols || []).join(", ")} · ${String(b.data_start || "").slice(0, 10)} → ${String(b.data_end || "").slice(0, 10)}`;
    const s = b.stats || {};
    const pct = (x) => (x === null || x === undefined ? "–" : fmt(x * 100) + "%");
    const items = [
      ["initial ₹", fmt(b.initial_value)], ["final ₹", fmt(b.final_value)], ["total return", pct(s.total_return ?? b.total_return)],
      ["annualized", pct(s.annualized_return)], ["Sharpe", fmt(s.sharpe ?? b.sharpe)], ["Sortino", fmt(s.sortino)],
      ["max drawdown", pct(s.max_drawdown ?? b.max_drawdown)], ["win rate", pct(s.win_rate)], ["profit factor", fmt(s.profit_factor)],
      ["trades", b.trades], ["exposure", pct(s.exposure)], ["engine", b.engine],
    ];
    $("bt-stats").innerHTML = items.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v ?? "–")}</dd></div>`).join("");
    const LC = window.LightweightCharts;
    if (LC) {
      if (state.btChart) state.btChart.remove();
      state.btChart = LC.createChart($("bt-equity"), {
        autoSize: true,
        layout: { background: { type: LC.ColorType.Solid, color: "#171d25" }, textColor: "#8595a8" },
        grid: { vertLines: { color: "#1e2631" }, horzLines: { color: "#1e2631" } },
        timeScale: { timeVisible: true, borderColor: "#263040" }, rightPriceScale: { borderColor: "#263040" },
      });
      const line = state.btChart.addSeries(LC.AreaSeries, { lineColor: "#4f8ff7", topColor: "rgba(79,143,247,.3)", bottomColor: "rgba(79,143,247,0)", lineWidth: 2 });
      const seen = new Set();
      line.setData((b.equity || []).filter((p) => !seen.has(p.t) && seen.add(p.t)).map((p) => ({ time: p.t + IST_OFFSET, value: p.value })));
      state.btChart.timeScale().fitContent();
    }
    const trades = b.trade_list || [];
    $("bt-trades").tBodies[0].innerHTML = trades.map((t) =>
      `<tr><td>${esc(t.seq)}</td><td>${esc(t.symbol)}</td><td>${esc(t.side)}</td><td>${esc(t.quantity)}</td>` +
      `<td class="small">${esc(String(t.entry_time || "").slice(0, 16).replace("T", " "))}</td><td class="small">${esc(String(t.exit_time || "").slice(0, 16).replace("T", " "))}</td>` +
      `<td>${fmt(t.entry_price)}</td><td>${fmt(t.exit_price)}</td><td>${fmt(t.charges)}</td><td class="${cls(t.pnl)}">${signed(t.pnl)}</td><td>${esc(t.exit_reason)}</td></tr>`
    ).join("") || `<tr class="empty"><td colspan="11">No trades.</td></tr>`;
  }

  // ---- orders --------------------------------------------------------------------------------
  let submitter = "BUY";
  for (const id of ["of-buy", "of-sell"]) $(id).addEventListener("click", (e) => { submitter = e.currentTarget.dataset.side; });
  $("order-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const price = $("of-price").value;
    await placeOrder({ symbol: $("of-symbol").value.trim(), side: submitter, lots: Number($("of-lots").value), price: price ? Number(price) : undefined });
  });

  async function placeOrder(body) {
    const msg = $("of-msg");
    msg.className = "msg"; msg.textContent = "sending…";
    const r = await api("/api/v1/orders", { method: "POST", body });
    if (r.ok) {
      msg.className = "msg ok";
      msg.textContent = r.data.status === "LOGGED" ? "logged (logging-only mode): no order placed" : `accepted: ${r.data.side} ${r.data.quantity} ${r.data.symbol}`;
      toast("Order accepted", `${r.data.side} ${r.data.quantity} ${r.data.symbol} (${r.data.order_type})`, "ok");
    } else {
      const d = r.data || {};
      msg.className = "msg err";
      msg.textContent = d.error === "risk_denied" ? `Denied (${d.rule}): ${d.reason}` : (d.message || `error ${r.status}`);
      toast(d.error === "risk_denied" ? "Order denied" : "Order failed", msg.textContent, "err");
    }
  }

  // ---- system --------------------------------------------------------------------------------
  function renderSystem(s) {
    if (!s) return;
    const r = s.risk || {};
    const t = s.trading || {};
    const w = s.web || {};
    state.mode = s.mode || state.mode;
    if (t.day_pnl !== undefined && t.day_pnl !== state.dayPnl) { state.dayPnl = t.day_pnl; renderPositions(); }
    $("mode").textContent = (s.mode || "").toUpperCase();
    const rs = $("risk-state");
    if (r.trading) { rs.textContent = r.halted ? `HALTED: ${r.halt_reason}` : "risk OK"; rs.className = "badge " + (r.halted ? "halted" : "ok"); }
    else { rs.textContent = "trading off"; rs.className = "badge"; }
    const items = [
      ["broker", s.broker || "–"], ["feed", `${s.feed || "–"} · ${s.feed_state || "ok"}`],
      ["ticks/s", fmt(s.ticks_per_s, 0)], ["ticks", fmt(s.ticks_in, 0)],
      ["tick queue", s.tick_queue], ["writer pending", fmt(s.writer_pending_rows, 0)],
      ["last flush", fmt(s.last_flush_ms, 1) + " ms"],
      ["drops", (s.dropped_queue_ticks || 0) + (s.dropped_writer_rows || 0)],
      ["rejected ticks", Object.values(s.rejected_ticks || {}).reduce((a, b) => a + b, 0)],
      ["handler errors", s.handler_errors],
      ["feed lag", s.lags && s.lags.exchange_time_behind_wall_s !== null && s.lags.exchange_time_behind_wall_s !== undefined ? fmt(s.lags.exchange_time_behind_wall_s, 2) + " s" : `sim ×${s.speed}`],
      ["day P&L", t.day_pnl === undefined ? "–" : signed(t.day_pnl)],
      ["orders / fills", `${t.orders_sent ?? "–"} / ${t.fills ?? "–"}`],
      ["denials", Object.values(r.denials || {}).reduce((a, b) => a + b, 0)],
      ["WS clients", w.clients], ["WS msgs", fmt(w.messages_sent, 0)], ["WS skipped", fmt(w.skipped, 0)],
    ];
    $("system").innerHTML = items.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v ?? "–")}</dd></div>`).join("");
    if (s.exchange_time && s.exchange_time !== "-") $("exchange-time").textContent = s.exchange_time + " IST";
    if (r.last_denial && r.last_denial.reason) $("risk-state").title = `last denial: ${r.last_denial.rule}: ${r.last_denial.reason}`;
  }

  $("halt").addEventListener("click", async () => {
    const r = await api("/api/v1/trading/halt", { method: "POST", body: { reason: "halted from the dashboard" } });
    toast(r.ok ? "Halted" : "Halt failed", r.ok ? "no new entries" : (r.data && r.data.message) || "", r.ok ? "warn" : "err");
  });
  $("resume").addEventListener("click", async () => {
    const r = await api("/api/v1/trading/resume", { method: "POST", body: { reason: "resumed from the dashboard" } });
    toast(r.ok ? "Resumed" : "Resume failed", r.ok ? "trading resumed" : (r.data && r.data.message) || "", r.ok ? "ok" : "err");
  });

  window.mandi = state; // for the browser tests and curious users
  boot();
})();
