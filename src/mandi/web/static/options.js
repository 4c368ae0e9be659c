// mandi dashboard, options card: basket builder with an interactive payoff chart (before placing
// a basket, and for the open positions), the volatility views (IV smile, ATM IV term structure,
// IV rank, ATM straddle through the day) and the OI views (OI and change in OI by strike, PCR and
// max pain through the day, OI history of a strike). Plain SVG charts drawn here; data from the
// REST API (rupees; `t` = Unix seconds). Runs beside app.js and reads its state (window.mandi).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const NS = "http://www.w3.org/2000/svg";
  const IST = 19800;
  const S = {
    templates: [], legs: [], last: null, source: "basket", tab: "builder", u: null,
    pending: 0, seq: 0, refresh: 0, views: {},
  };
  window.mandiOptions = S; // for the browser tests and curious users

  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x)) ? "–"
    : Number(x).toLocaleString("en-IN", { minimumFractionDigits: d, maximumFractionDigits: d });
  const inr = (x) => (x === null || x === undefined) ? "unlimited" : (x < 0 ? "−₹" : "₹") + fmt(Math.abs(x), 0);
  const pct = (x, d = 1) => (x === null || x === undefined) ? "–" : (x * 100).toFixed(d) + "%";
  const hhmm = (t) => new Date((t + IST) * 1000).toISOString().slice(11, 16);

  async function api(path, body) {
    const opts = { credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      opts.method = "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    return { ok: res.ok, status: res.status, data };
  }

  const underlying = () => (window.mandi && window.mandi.u) || null;
  const expiry = () => (window.mandi && window.mandi.expiry) || "";

  // ---- a small SVG plotter -------------------------------------------------------------------
  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  function ticks(lo, hi, n = 5) {
    const span = hi - lo || Math.abs(hi) || 1;
    const step0 = span / n;
    const mag = 10 ** Math.floor(Math.log10(step0));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  // plot(svg, {series: [{name, xs, ys, color, width, fill}], bars, xfmt, yfmt, zero, vlines,
  //            hover(i) -> text}) draws axes, lines (or bars), marker lines and a hover crosshair.
  function plot(svg, o) {
    const vb = svg.viewBox.baseVal;
    const W = vb.width, H = vb.height, L = 58, R = 12, T = 10, B = 24;
    svg.innerHTML = "";
    const xs = o.series.flatMap((s) => s.xs);
    const ys = o.series.flatMap((s) => s.ys).filter((y) => y !== null && Number.isFinite(y));
    if (!xs.length || !ys.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = o.empty || "no data yet";
      svg.__plot = null;
      return;
    }
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    let y0 = Math.min(...ys, o.zero ? 0 : Infinity), y1 = Math.max(...ys, o.zero ? 0 : -Infinity);
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    for (const v of ticks(y0, y1)) {
      el("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "axis" }, svg);
      el("text", { x: L - 4, y: sy(v) + 3, "text-anchor": "end" }, svg).textContent = (o.yfmt || fmt)(v);
    }
    let prev = null;
    for (const v of ticks(x0, x1, 6)) {
      const label = (o.xfmt || fmt)(v);
      if (label === prev) continue; // e.g. several ticks within one minute of a time axis
      prev = label;
      el("text", { x: sx(v), y: H - 8, "text-anchor": "middle" }, svg).textContent = label;
    }
    if (o.zero && y0 < 0 && y1 > 0) el("line", { x1: L, x2: W - R, y1: sy(0), y2: sy(0), class: "zero" }, svg);
    for (const v of o.vlines || []) {
      if (v.x >= x0 && v.x <= x1) el("line", { x1: sx(v.x), x2: sx(v.x), y1: T, y2: H - B, class: v.cls }, svg);
    }
    const id = svg.id;
    for (const [k, s] of o.series.entries()) {
      const pts = s.xs.map((x, i) => [x, s.ys[i]]).filter((p) => p[1] !== null && Number.isFinite(p[1]));
      if (s.bars) {
        const bw = Math.max(1.5, ((W - L - R) / Math.max(s.xs.length, 1)) * 0.38);
        for (const [x, y] of pts) {
          el("rect", { x: sx(x) + (s.offset || 0) * bw - bw / 2, y: Math.min(sy(y), sy(0)), width: bw,
            height: Math.abs(sy(y) - sy(Math.max(y0, Math.min(0, y1)))), fill: s.color, opacity: 0.85 }, svg);
        }
        continue;
      }
      const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      if (s.fill && o.zero && pts.length) { // profit green above zero, loss red below
        const z = sy(Math.max(y0, Math.min(0, y1)));
        const area = `${d}L${sx(pts.at(-1)[0]).toFixed(1)},${z}L${sx(pts[0][0]).toFixed(1)},${z}Z`;
        for (const [name, y, h, color] of [["up", T, z - T, "#26a69a"], ["dn", z, H - B - z, "#ef5350"]]) {
          const clip = el("clipPath", { id: `${id}-${name}-${k}` }, svg);
          el("rect", { x: L, y, width: W - L - R, height: Math.max(h, 0) }, clip);
          el("path", { d: area, fill: color, opacity: 0.16, "clip-path": `url(#${id}-${name}-${k})` }, svg);
        }
      }
      el("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.6, class: `line-${k}` }, svg);
    }
    const cross = el("line", { y1: T, y2: H - B, class: "cross", visibility: "hidden" }, svg);
    const base = o.series[0];
    svg.__plot = { sx, sy, x0, x1, y0, y1, n: base.xs.length };
    if (!o.hover) return;
    const tip = o.tip ? $(o.tip) : null;
    svg.onmousemove = (ev) => {
      const r = svg.getBoundingClientRect();
      const x = x0 + (((ev.clientX - r.left) * (W / r.width) - L) / (W - L - R)) * (x1 - x0);
      let best = 0;
      for (let i = 1; i < base.xs.length; i++) if (Math.abs(base.xs[i] - x) < Math.abs(base.xs[best] - x)) best = i;
      cross.setAttribute("x1", sx(base.xs[best])); cross.setAttribute("x2", sx(base.xs[best]));
      cross.setAttribute("visibility", "visible");
      if (tip) tip.textContent = o.hover(best);
    };
    svg.onmouseleave = () => { cross.setAttribute("visibility", "hidden"); if (tip) tip.textContent = ""; };
  }

  // ---- tabs ----------------------------------------------------------------------------------
  $("opt-tabs").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-tab]");
    if (!b) return;
    S.tab = b.dataset.tab;
    for (const x of $("opt-tabs").querySelectorAll("button")) x.classList.toggle("active", x === b);
    for (const t of ["builder", "vol", "oi"]) $("tab-" + t).hidden = t !== S.tab;
    loadTab();
  });

  // ---- basket builder ------------------------------------------------------------------------
  async function loadTemplates() {
    const r = await api("/api/v1/templates");
    if (!r.ok) return;
    S.templates = r.data;
    $("bk-template").innerHTML = r.data.map((t) => `<option value="${esc(t.name)}" title="${esc(t.description)}">${esc(t.name.replaceAll("_", " "))}</option>`).join("");
    $("bk-template").value = "iron_condor";
  }

  async function buildTemplate() {
    const u = underlying();
    if (!u) return;
    const q = new URLSearchParams({ lots: $("bk-lots").value || "1" });
    if ($("bk-side").value) q.set("side", $("bk-side").value);
    if ($("bk-offset").value !== "") q.set("offset", $("bk-offset").value);
    if ($("bk-width").value !== "") q.set("width", $("bk-width").value);
    if (expiry()) q.set("expiry", expiry());
    const r = await api(`/api/v1/basket/${encodeURIComponent(u)}/${encodeURIComponent($("bk-template").value)}?${q}`);
    if (!r.ok) { message((r.data && r.data.message) || "cannot build the template", "err"); return; }
    S.source = "basket";
    S.template = r.data.template;
    S.legs = r.data.legs.map((x) => ({ symbol: x.symbol, side: x.side, lots: x.lots, price: "" }));
    renderLegs();
    analyse();
  }

  function message(text, kind = "") { $("bk-msg").className = "msg " + kind; $("bk-msg").textContent = text; }

  function renderLegs(used) {
    const tb = $("bk-legs").tBodies[0];
    $("bk-source").textContent = S.source === "positions" ? "open positions" : "basket";
    if (!S.legs.length) { tb.innerHTML = `<tr class="empty"><td colspan="7">Build a template or add legs.</td></tr>`; return; }
    const ro = S.source === "positions" ? "disabled" : "";
    tb.innerHTML = S.legs.map((l, i) => {
      const u = used && used[i];
      return `<tr class="${esc(l.side)}" data-i="${i}">
        <td><select data-f="side" ${ro}><option ${l.side === "BUY" ? "selected" : ""}>BUY</option><option ${l.side === "SELL" ? "selected" : ""}>SELL</option></select></td>
        <td><input class="sym" data-f="symbol" list="of-symbols" value="${esc(l.symbol)}" ${ro}></td>
        <td><input class="num" data-f="lots" type="number" min="1" step="1" value="${esc(l.lots)}" ${ro}></td>
        <td><input class="num" data-f="price" type="number" min="0" step="0.05" placeholder="market" value="${esc(l.price)}" ${ro}></td>
        <td class="used">${u ? fmt(u.price) : "–"}</td><td>${u ? pct(u.iv) : "–"}</td>
        <td>${ro ? "" : `<button class="btn btn-small btn-ghost" data-del="${i}" title="Remove">×</button>`}</td></tr>`;
    }).join("");
  }

  $("bk-legs").addEventListener("change", (ev) => {
    const tr = ev.target.closest("tr[data-i]");
    if (!tr || S.source !== "basket") return;
    const leg = S.legs[+tr.dataset.i];
    leg[ev.target.dataset.f] = ev.target.value.trim();
    if (ev.target.dataset.f === "side") tr.className = leg.side;
    S.template = "custom";
    analyse();
  });
  $("bk-legs").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-del]");
    if (!b) return;
    S.legs.splice(+b.dataset.del, 1);
    S.template = "custom";
    renderLegs();
    analyse();
  });
  $("bk-build").addEventListener("click", buildTemplate);
  $("bk-add").addEventListener("click", () => {
    if (S.source !== "basket") { S.source = "basket"; S.legs = []; }
    const sym = ($("of-symbol") && $("of-symbol").value) || "";
    S.legs.push({ symbol: sym, side: "BUY", lots: 1, price: "" });
    S.template = "custom";
    renderLegs();
    if (sym) analyse();
  });
  $("bk-book").addEventListener("click", () => { S.source = "positions"; analyse(); });
  $("bk-place").addEventListener("click", async () => {
    const legs = S.legs.filter((l) => l.symbol).map((l) => {
      const x = { symbol: l.symbol, side: l.side, lots: Math.max(1, parseInt(l.lots, 10) || 1) };
      if (l.price !== "" && +l.price > 0) x.price = +l.price;
      return x;
    });
    if (!legs.length || S.source !== "basket") return;
    const body = { legs, template: S.template || "custom" };
    if ($("bk-policy").value) body.policy = $("bk-policy").value;
    const res = await fetch("/api/v1/baskets", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
        "X-CSRF-Token": (window.mandi && window.mandi.csrf) || "" },
      body: JSON.stringify(body),
    });
    let d = null;
    try { d = await res.json(); } catch (_) { d = null; }
    const out = $("bk-placed");
    if (res.ok) {
      S.placed = d;
      out.className = "msg ok";
      out.textContent = `basket ${d.status.toLowerCase()} (${d.basket_id.slice(0, 8)}): hedges first`;
    } else {
      const per = ((d && d.issues) || []).map((i) => (i.leg < 0 ? "structure" : `leg ${i.leg + 1}`) + ": " + i.reason).join(" · ");
      out.className = "msg err";
      out.textContent = `refused${d && d.rule ? " (" + d.rule + ")" : ""}: ${per || (d && d.message) || res.status}`;
    }
  });
  for (const id of ["bk-days", "bk-iv"]) {
    $(id).addEventListener("input", () => { $(id + "-v").textContent = $(id).value; analyse(); });
  }

  function analyse() {
    clearTimeout(S.pending);
    S.pending = setTimeout(runAnalysis, 200);
  }

  async function runAnalysis() {
    const u = underlying();
    if (!u) return;
    const what = {
      horizon_days: +$("bk-days").value, iv_shift: +$("bk-iv").value, points: 240,
    };
    const seq = ++S.seq;
    let r;
    if (S.source === "positions") {
      r = await api(`/api/v1/positions/payoff/${encodeURIComponent(u)}`, what);
    } else {
      const legs = S.legs.filter((l) => l.symbol).map((l) => {
        const x = { symbol: l.symbol, side: l.side, lots: Math.max(1, parseInt(l.lots, 10) || 1) };
        if (l.price !== "" && +l.price > 0) x.price = +l.price;
        return x;
      });
      if (!legs.length) { plot($("payoff-chart"), { series: [] , empty: "add legs to see the payoff" }); $("payoff-stats").innerHTML = ""; return; }
      r = await api("/api/v1/payoff", { ...what, legs, template: S.template || "custom" });
    }
    if (seq !== S.seq) return; // a newer request is on its way
    if (!r.ok) {
      const d = r.data || {};
      const per = (d.issues || []).map((i) => (i.leg < 0 ? "structure" : `leg ${i.leg + 1}`) + ": " + i.reason).join(" · ");
      message(per || d.message || `error ${r.status}`, "err");
      if (S.source === "positions") { S.source = "basket"; renderLegs(); }
      return;
    }
    message("");
    S.last = r.data;
    if (S.source === "positions") {
      S.legs = r.data.legs.map((x) => ({ symbol: x.symbol, side: x.side, lots: x.lots, price: x.price }));
    }
    renderLegs(r.data.legs);
    renderPayoff(r.data);
  }

  function renderPayoff(p) {
    const c = p.curve;
    plot($("payoff-chart"), {
      series: [
        { name: "expiry", xs: c.spots, ys: c.at_expiry, color: "#f0b429", width: 2, fill: true },
        { name: "today", xs: c.spots, ys: c.today, color: "#4f8ff7", width: 1.5 },
      ],
      zero: true,
      xfmt: (v) => fmt(v, 0),
      yfmt: (v) => (Math.abs(v) >= 1e5 ? (v / 1e5).toFixed(1) + "L" : fmt(v, 0)),
      vlines: [{ x: p.spot, cls: "spot" }, ...p.breakevens.map((b) => ({ x: b, cls: "be" }))],
      tip: "payoff-tip",
      hover: (i) => `${fmt(c.spots[i], 0)}: expiry ₹${fmt(c.at_expiry[i], 0)} · target ₹${fmt(c.today[i], 0)}`,
    });
    const g = p.greeks, m = p.margin;
    const rows = [
      ["Net premium", (p.net_premium >= 0 ? "credit " : "debit ") + "₹" + fmt(Math.abs(p.net_premium), 0)],
      ["Max profit", inr(p.max_profit)],
      ["Max loss", inr(p.max_loss)],
      ["Breakevens", p.breakevens.map((b) => fmt(b, 0)).join(" / ") || "none"],
      ["Prob. of profit", pct(p.pop)],
      ["Delta · Gamma", `${fmt(g.delta, 2)} · ${fmt(g.gamma, 4)}`],
      ["Theta / day", inr(g.theta)],
      ["Vega / vol pt", inr(g.vega)],
      ["Margin (est.)", "₹" + fmt(m.total, 0)],
      ["Hedge benefit", "₹" + fmt(m.hedge_benefit, 0)],
      ["Spot · expiry in", `${fmt(p.spot, 2)} · ${fmt(p.expiry_days, 1)} d`],
    ];
    $("payoff-stats").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
  }

  // ---- volatility ----------------------------------------------------------------------------
  async function loadVol() {
    const u = underlying();
    if (!u) return;
    const e = expiry() ? `?expiry=${encodeURIComponent(expiry())}` : "";
    const enc = encodeURIComponent(u);
    const [smile, term, straddle, rank] = await Promise.all([
      api(`/api/v1/volatility/${enc}/smile${e}`), api(`/api/v1/volatility/${enc}/term`),
      api(`/api/v1/volatility/${enc}/straddle${e}`), api(`/api/v1/volatility/${enc}/rank`),
    ]);
    S.views.vol = { smile: smile.data, term: term.data, straddle: straddle.data, rank: rank.data };
    if (smile.ok) {
      const pts = smile.data.points;
      $("vol-smile-note").textContent = `${smile.data.expiry}${smile.data.live ? "" : " (stored)"}`;
      plot($("vol-smile"), {
        series: [
          { xs: pts.map((p) => p.strike), ys: pts.map((p) => p.ce_iv && p.ce_iv * 100), color: "#ef5350" },
          { xs: pts.map((p) => p.strike), ys: pts.map((p) => p.pe_iv && p.pe_iv * 100), color: "#26a69a" },
        ],
        xfmt: (v) => fmt(v, 0), yfmt: (v) => v.toFixed(1) + "%",
        vlines: smile.data.spot ? [{ x: smile.data.spot, cls: "spot" }] : [],
      });
    }
    if (term.ok) {
      const pts = term.data.points;
      plot($("vol-term"), {
        series: [{ xs: pts.map((p) => p.days), ys: pts.map((p) => p.atm_iv && p.atm_iv * 100), color: "#4f8ff7", width: 2 }],
        xfmt: (v) => v.toFixed(0) + "d", yfmt: (v) => v.toFixed(1) + "%",
      });
    }
    if (straddle.ok) {
      const pts = straddle.data.points;
      plot($("vol-straddle"), {
        series: [{ xs: pts.map((p) => p.t), ys: pts.map((p) => p.straddle), color: "#f0b429", width: 2 }],
        xfmt: hhmm, yfmt: (v) => fmt(v, 0), empty: "no stored snapshots today yet",
      });
    }
    if (rank.ok) {
      const k = rank.data;
      $("vol-rank").innerHTML = [
        ["ATM IV", pct(k.iv, 2)], ["IV rank", k.rank === null ? "–" : fmt(k.rank, 1)],
        ["IV percentile", k.percentile === null ? "–" : fmt(k.percentile, 1)],
        ["Range", `${pct(k.low)} – ${pct(k.high)}`], ["Basis", `${k.observations} ${k.basis}`],
      ].map(([a, b]) => `<dt>${esc(a)}</dt><dd>${esc(b)}</dd>`).join("");
      plot($("vol-rank-history"), {
        series: [{ xs: k.history.map((p) => p.t), ys: k.history.map((p) => p.iv * 100), color: "#ab47bc" }],
        xfmt: k.basis === "days" ? (t) => new Date(t * 1000).toISOString().slice(5, 10) : hhmm,
        yfmt: (v) => v.toFixed(1) + "%",
      });
    }
  }

  // ---- open interest -------------------------------------------------------------------------
  async function loadOI() {
    const u = underlying();
    if (!u) return;
    const enc = encodeURIComponent(u);
    const e = expiry() ? `expiry=${encodeURIComponent(expiry())}` : "";
    const hq = new URLSearchParams(e);
    if (S.oiStrike) hq.set("strike", S.oiStrike);
    const [oi, pcr, hist] = await Promise.all([
      api(`/api/v1/oi/${enc}?${e}`), api(`/api/v1/oi/${enc}/pcr?${e}`), api(`/api/v1/oi/${enc}/history?${hq}`),
    ]);
    S.views.oi = { oi: oi.data, pcr: pcr.data, history: hist.data };
    if (oi.ok) {
      const rows = oi.data.rows;
      const ks = rows.map((r) => r.strike);
      const common = { xfmt: (v) => fmt(v, 0), yfmt: (v) => (Math.abs(v) >= 1e5 ? (v / 1e5).toFixed(1) + "L" : fmt(v, 0)),
        vlines: oi.data.spot ? [{ x: oi.data.spot, cls: "spot" }] : [], zero: true };
      plot($("oi-bars"), { ...common, series: [
        { xs: ks, ys: rows.map((r) => r.ce_oi), color: "#ef5350", bars: true, offset: -0.5 },
        { xs: ks, ys: rows.map((r) => r.pe_oi), color: "#26a69a", bars: true, offset: 0.5 }] });
      plot($("oi-change"), { ...common, series: [
        { xs: ks, ys: rows.map((r) => r.ce_oi_change), color: "#ef5350", bars: true, offset: -0.5 },
        { xs: ks, ys: rows.map((r) => r.pe_oi_change), color: "#26a69a", bars: true, offset: 0.5 }] });
      $("oi-bars").onclick = (ev) => { // click a strike: its OI history
        const pl = $("oi-bars").__plot;
        if (!pl) return;
        const r = $("oi-bars").getBoundingClientRect();
        const x = pl.x0 + (((ev.clientX - r.left) * (600 / r.width) - 58) / (600 - 70)) * (pl.x1 - pl.x0);
        S.oiStrike = ks.reduce((a, b) => (Math.abs(b - x) < Math.abs(a - x) ? b : a), ks[0]);
        loadOI();
      };
    }
    if (pcr.ok) {
      const pts = pcr.data.points;
      plot($("oi-pcr"), { series: [{ xs: pts.map((p) => p.t), ys: pts.map((p) => p.pcr), color: "#4f8ff7", width: 2 }],
        xfmt: hhmm, yfmt: (v) => v.toFixed(2), tip: null,
        hover: null, empty: "no stored snapshots today yet" });
      const last = pts.at(-1);
      if (last) el("text", { x: 70, y: 22 }, $("oi-pcr")).textContent = `max pain ${fmt(last.max_pain, 0)} · PCR ${fmt(last.pcr, 2)}`;
    }
    if (hist.ok) {
      const pts = hist.data.points;
      $("oi-strike").textContent = `${fmt(hist.data.strike, 0)} ${hist.data.expiry} (click a strike above)`;
      plot($("oi-history"), { series: [
        { xs: pts.map((p) => p.t), ys: pts.map((p) => p.ce_oi), color: "#ef5350", width: 2 },
        { xs: pts.map((p) => p.t), ys: pts.map((p) => p.pe_oi), color: "#26a69a", width: 2 }],
        xfmt: hhmm, yfmt: (v) => fmt(v, 0), empty: "no stored snapshots today yet" });
    }
  }

  function loadTab() {
    if (S.tab === "vol") loadVol();
    else if (S.tab === "oi") loadOI();
    else if (S.legs.length || S.source === "positions") analyse();
  }

  // ---- start when the dashboard has an underlying --------------------------------------------
  async function init() {
    if (!underlying()) { setTimeout(init, 500); return; }
    await loadTemplates();
    S.u = underlying();
    const trade = window.mandi && window.mandi.scope === "trade";
    $("bk-place").hidden = !trade;
    $("bk-policy").hidden = !trade;
    setInterval(() => {
      if (underlying() !== S.u) { // the dashboard switched underlying
        S.u = underlying(); S.legs = []; S.source = "basket"; S.last = null; renderLegs();
        plot($("payoff-chart"), { series: [], empty: "build a basket" });
      }
      if (!document.hidden) loadTab(); // the market moves: keep the open view current
    }, 5000);
    plot($("payoff-chart"), { series: [], empty: "build a basket" });
  }
  init();
})();
