// FastArchRank dashboard: fills the server-rendered pages from the public JSON API (/v1/...).
// No framework and no network beyond this server: everything here is plain DOM work.
"use strict";

const POLL_MS = 2000;
const LIST_POLL_MS = 3000;
const STATUSES = ["done", "running", "queued", "failed", "unmet", "rejected", "lost"];
const NB201_OPS = {
  none: { short: "0", colour: "#8c959f", dash: "3 3" },
  skip_connect: { short: "id", colour: "#0550ae", dash: "" },
  nor_conv_1x1: { short: "1×1", colour: "#116329", dash: "" },
  nor_conv_3x3: { short: "3×3", colour: "#a40e26", dash: "" },
  avg_pool_3x3: { short: "avg", colour: "#7d4e00", dash: "" },
};

// ---- small helpers --------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const fmt = {
  rho(x) {
    return x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toFixed(3);
  },
  num(x, digits = 4) {
    if (x === null || x === undefined) return "—";
    const a = Math.abs(x);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return Number(x).toExponential(digits - 1);
    return String(Number(Number(x).toPrecision(digits)));
  },
  rank(x) {
    if (x === null || x === undefined) return "—";
    return Number.isInteger(x) ? String(x) : Number(x).toFixed(1);
  },
  pct(frac) {
    return frac === null || frac === undefined ? "—" : `${(100 * frac).toFixed(1)}%`;
  },
  dur(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "—";
    if (s < 1) return `${Math.round(s * 1000)}ms`;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
    const total = Math.round(s);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const sec = total % 60;
    if (h) return `${h}h${String(m).padStart(2, "0")}m`;
    return `${m}m${String(sec).padStart(2, "0")}s`;
  },
  time(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  },
};

function timeCell(iso) {
  return el("time", { datetime: iso, title: iso }, fmt.time(iso));
}

// Error bodies are RFC 9457 problem details ({title, detail, errors[]}) or the older {detail}.
function errorMessage(body, status) {
  if (!body) return `HTTP ${status}`;
  const parts = [];
  if (Array.isArray(body.errors) && body.errors.length) {
    for (const e of body.errors) parts.push(`${(e.loc || []).join(".")}: ${e.msg}`);
  } else if (typeof body.detail === "string") {
    parts.push(body.detail);
  } else if (Array.isArray(body.detail)) {
    for (const e of body.detail) parts.push(`${(e.loc || []).join(".")}: ${e.msg}`);
  }
  if (!parts.length && body.title) parts.push(body.title);
  return parts.join("; ") || `HTTP ${status}`;
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// With keys required (FASTARCHRANK_AUTH=required, or a non-loopback bind) the reader pastes a key;
// it stays in this tab's sessionStorage and goes out as a Bearer token.
const KEY_STORE = "fastarchrank.apiKey";

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch (_) {
    return "";
  }
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function initKeyForm() {
  const input = document.getElementById("apikey");
  if (!input) return;
  input.value = apiKey();
  input.addEventListener("change", () => {
    try {
      if (input.value.trim()) sessionStorage.setItem(KEY_STORE, input.value.trim());
      else sessionStorage.removeItem(KEY_STORE);
    } catch (_) {
      /* storage disabled: the key lasts until the page is left */
    }
    window.location.reload();
  });
  document.getElementById("keyform").addEventListener("submit", (ev) => ev.preventDefault());
}

// Images and downloads cannot carry a header: with a key they are fetched and handed over as blobs.
async function fetchBlob(url) {
  const resp = await fetch(url, { headers: authHeaders(), cache: "no-store" });
  if (!resp.ok) throw new ApiError(errorMessage(await resp.json().catch(() => null), resp.status), resp.status);
  return URL.createObjectURL(await resp.blob());
}

function loadImage(img, src) {
  if (!apiKey()) {
    img.src = src;
    return;
  }
  fetchBlob(src)
    .then((url) => {
      img.src = url;
    })
    .catch(() => {
      img.hidden = true;
    });
}

function wireExports() {
  for (const a of document.querySelectorAll("a.export")) {
    a.addEventListener("click", async (ev) => {
      if (!apiKey()) return; // the browser downloads it directly
      ev.preventDefault();
      try {
        const url = await fetchBlob(a.getAttribute("href"));
        const tmp = el("a", { href: url, download: a.getAttribute("download") || "" });
        document.body.append(tmp);
        tmp.click();
        tmp.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      } catch (err) {
        showError(err);
      }
    });
  }
}

async function api(path, etag) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (etag) headers["If-None-Match"] = etag;
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 304) return { notModified: true, etag };
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    body = null;
  }
  if (resp.status === 401) {
    throw new ApiError(`${errorMessage(body, resp.status)} — paste a key in the “API key” field at the top`, 401);
  }
  if (!resp.ok) throw new ApiError(errorMessage(body, resp.status), resp.status);
  return { body, etag: resp.headers.get("ETag") };
}

function showError(err) {
  const box = document.getElementById("error");
  if (!box) return;
  if (!err) {
    box.hidden = true;
    return;
  }
  box.textContent = err.message || String(err);
  box.hidden = false;
}

function statusBadge(status) {
  return el("span", { class: `badge st-${status}` }, status);
}

function archHref(key, space) {
  return `/ui/architectures/${encodeURIComponent(key)}?space=${encodeURIComponent(space)}`;
}

// ---- the NB201 cell: four nodes, six edges j→i (j < i) ------------------------------------

function parseNb201(genotype) {
  if (typeof genotype !== "string") return null;
  const nodes = genotype.trim().split("+");
  if (nodes.length !== 3) return null;
  const edges = [];
  for (let i = 0; i < 3; i++) {
    const ops = nodes[i].split("|").filter(Boolean);
    if (ops.length !== i + 1) return null;
    for (const op of ops) {
      const [name, src] = op.split("~");
      if (!(name in NB201_OPS) || src === undefined) return null;
      edges.push({ from: Number(src), to: i + 1, op: name });
    }
  }
  return edges;
}

function cellSvg(genotype, large) {
  const edges = parseNb201(genotype);
  if (!edges) return null;
  const w = large ? 420 : 132;
  const h = large ? 150 : 46;
  const r = large ? 13 : 6;
  const x = (n) => r + 2 + (n * (w - 2 * r - 4)) / 3;
  const y = h - r - 3;
  const desc = edges.map((e) => `${e.from}→${e.to}: ${e.op}`).join(", ");
  const svg = svgEl("svg", {
    class: "cell",
    width: w,
    height: h,
    viewBox: `0 0 ${w} ${h}`,
    role: "img",
    "aria-label": `NB201 cell: ${desc}`,
  });
  svg.append(svgEl("title", {}, `NB201 cell — ${desc}`));
  for (const e of edges) {
    const x1 = x(e.from);
    const x2 = x(e.to);
    const span = e.to - e.from;
    const lift = span === 1 ? 0 : (h - 2 * r - 6) * (span / 3);
    const style = NB201_OPS[e.op];
    const path = span === 1 ? `M${x1},${y} L${x2},${y}` : `M${x1},${y} Q${(x1 + x2) / 2},${y - 2 * lift} ${x2},${y}`;
    svg.append(
      svgEl("path", {
        d: path,
        fill: "none",
        stroke: style.colour,
        "stroke-width": large ? 2.5 : 1.8,
        "stroke-dasharray": style.dash || null,
      }),
    );
    if (large) {
      const lx = (x1 + x2) / 2;
      const ly = span === 1 ? y - 5 : y - lift - 3;
      svg.append(svgEl("text", { x: lx, y: ly, "text-anchor": "middle", fill: style.colour }, style.short));
    }
  }
  for (let n = 0; n < 4; n++) {
    svg.append(svgEl("circle", { cx: x(n), cy: y, r, fill: "#fff", stroke: "#24292f", "stroke-width": 1.2 }));
    if (large) svg.append(svgEl("text", { x: x(n), y: y + 4, "text-anchor": "middle" }, String(n)));
  }
  return svg;
}

function cellLegend() {
  const box = el("p", { class: "legend", "aria-hidden": "true" });
  for (const [name, s] of Object.entries(NB201_OPS)) {
    box.append(el("span", {}, el("i", { style: `background:${s.colour}` }), `${s.short} = ${name}`));
  }
  return box;
}

function genotypeCell(row, space) {
  const wrap = el("div", { class: "genowrap" });
  const td = el("td", { class: "genocell" }, wrap);
  const svg = space === "nb201" ? cellSvg(row.genotype, false) : null;
  if (svg) wrap.append(svg);
  wrap.append(
    el(
      "a",
      { class: "geno", href: archHref(row.architecture_key || row.key || row.genotype, space), title: row.genotype },
      row.genotype,
    ),
  );
  return td;
}

// ---- batches list ---------------------------------------------------------------------------

function progressCell(counts) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const finished = total - (counts.queued || 0) - (counts.running || 0);
  const td = el("td", { class: "progresscell" });
  td.append(el("progress", { max: total || 1, value: finished, "aria-label": `${finished} of ${total} finished` }));
  const parts = STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
  td.append(" ", el("span", { class: "counts", "data-testid": "counts" }, parts.join(" · ") || "empty"));
  return td;
}

function batchRow(b) {
  return el(
    "tr",
    { "data-batch": b.batch_id },
    el("td", {}, el("a", { href: `/ui/batches/${encodeURIComponent(b.batch_id)}` }, el("code", {}, b.batch_id))),
    el("td", {}, timeCell(b.created_at)),
    el("td", {}, b.owner || "—"),
    el("td", {}, `${b.space} / ${b.dataset}`),
    el("td", { class: "methods" }, b.methods.join(", ")),
    el("td", { class: "num" }, b.items ?? "—"),
    progressCell(b.counts),
    el("td", {}, statusBadge(b.status)),
  );
}

function listingQuery(form) {
  const q = new URLSearchParams();
  const data = new FormData(form);
  for (const name of ["owner", "status", "label"]) {
    const v = String(data.get(name) || "").trim();
    if (v) q.set(name, v);
  }
  for (const name of ["created_after", "created_before"]) {
    const v = String(data.get(name) || "");
    if (v) q.set(name, new Date(v).toISOString()); // the input is local time; the API wants an offset
  }
  return q;
}

function initBatches() {
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#batches tbody");
  const more = document.getElementById("more");
  const empty = document.getElementById("empty");
  let next = null;
  let pagesLoaded = 0;

  async function load(append) {
    const q = listingQuery(form);
    if (append && next) q.set("cursor", next);
    try {
      const { body } = await api(`/v1/batches?${q}`);
      if (!append) tbody.replaceChildren();
      for (const b of body.items) tbody.append(batchRow(b));
      next = body.next;
      pagesLoaded = append ? pagesLoaded + 1 : 1;
      more.hidden = !next;
      empty.hidden = tbody.children.length > 0;
      showError(null);
    } catch (err) {
      showError(err);
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load(false);
  });
  form.addEventListener("reset", () => setTimeout(() => load(false), 0));
  more.addEventListener("click", () => load(true));
  load(false);
  // Refresh the first page while the reader has not paged further; one small query each time.
  setInterval(() => {
    if (pagesLoaded <= 1 && !document.hidden) load(false);
  }, LIST_POLL_MS);
}

// ---- one batch: live progress and the ranking ----------------------------------------------

function compare(a, b, key, dir) {
  const va = a[key];
  const vb = b[key];
  const missingA = va === null || va === undefined;
  const missingB = vb === null || vb === undefined;
  if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1; // nulls last
  if (typeof va === "number" && typeof vb === "number") return dir * (va - vb);
  return dir * String(va).localeCompare(String(vb), undefined, { numeric: true });
}

function rankingRow(r, space) {
  const score = r.score !== null && r.score !== undefined ? fmt.num(r.score) : r.score_repr || "—";
  const reason = r.reason ? el("span", { class: "why", title: r.reason }, r.reason) : null;
  return el(
    "tr",
    {},
    el("td", { class: "num" }, fmt.rank(r.rank)),
    el("td", {}, r.label || "—"),
    genotypeCell(r, space),
    el("td", { class: "num" }, r.index ?? "—"),
    el("td", { class: "num", title: r.score ?? r.score_repr ?? "" }, score),
    el("td", { class: "num", title: r.cost_s ?? "" }, fmt.dur(r.cost_s)),
    el("td", { class: "reason" }, statusBadge(r.status), reason),
  );
}

class RankingTable {
  constructor(batchId) {
    this.batchId = batchId;
    this.rows = [];
    this.sortKey = "rank";
    this.sortDir = 1;
    this.page = 0;
    this.space = "nb201";
    this.method = null;
    this.table = document.getElementById("ranking");
    this.pageSize = document.getElementById("page-size");
    this.note = document.getElementById("ranking-note");
    for (const th of this.table.querySelectorAll("th[data-key]")) {
      th.querySelector("button").addEventListener("click", () => this.sortBy(th.dataset.key));
    }
    document.getElementById("prev").addEventListener("click", () => this.go(-1));
    document.getElementById("next").addEventListener("click", () => this.go(1));
    this.pageSize.addEventListener("change", () => {
      this.page = 0;
      this.render();
    });
  }

  // Every row of the method's ranking, in the API's largest pages; sorting and paging happen here so
  // any column can be sorted without a round trip.
  async load(method, space) {
    this.method = method;
    this.space = space;
    const rows = [];
    let total = Infinity;
    let partial = false;
    let pending = 0;
    const limit = Number(document.body.dataset.pageSize) || 1000; // the server's max_page_size
    for (let offset = 0; offset < total; offset += limit) {
      const q = new URLSearchParams({ method, limit: String(limit), offset: String(offset) });
      const { body } = await api(`/v1/batches/${encodeURIComponent(this.batchId)}/ranking?${q}`);
      rows.push(...body.items);
      total = body.total;
      partial = partial || Boolean(body.partial);
      pending = body.n_pending ?? pending;
      if (!body.items.length) break;
    }
    if (method !== this.method) return; // the reader picked another method meanwhile
    this.rows = rows;
    const pendingRows = rows.filter((r) => r.status === "queued" || r.status === "running").length;
    const n = pending || pendingRows;
    this.note.textContent = partial || n ? `partial: ${n} evaluation(s) still pending` : `${rows.length} rows`;
    this.render();
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortDir = -this.sortDir;
    else {
      this.sortKey = key;
      this.sortDir = 1;
    }
    this.page = 0;
    this.render();
  }

  go(delta) {
    this.page += delta;
    this.render();
    this.table.scrollIntoView({ block: "start" });
  }

  render() {
    const size = Number(this.pageSize.value);
    const pages = Math.max(1, Math.ceil(this.rows.length / size));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    const sorted = [...this.rows].sort((a, b) => compare(a, b, this.sortKey, this.sortDir));
    const slice = sorted.slice(this.page * size, (this.page + 1) * size);
    const tbody = this.table.querySelector("tbody");
    tbody.replaceChildren(...slice.map((r) => rankingRow(r, this.space)));
    for (const th of this.table.querySelectorAll("th[data-key]")) {
      if (th.dataset.key === this.sortKey) th.setAttribute("aria-sort", this.sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    document.getElementById("page-info").textContent = `page ${this.page + 1} of ${pages}`;
    document.getElementById("prev").disabled = this.page === 0;
    document.getElementById("next").disabled = this.page >= pages - 1;
  }
}

function perMethodRow(alias, counts, timing) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const finished = total - (counts.queued || 0) - (counts.running || 0);
  return el(
    "tr",
    { "data-method": alias },
    el("th", { scope: "row" }, alias),
    ...["done", "running", "queued", "failed", "unmet", "rejected", "lost"].map((s) =>
      el("td", { class: `num c-${s}` }, counts[s] || 0),
    ),
    el("td", {}, el("progress", { max: total || 1, value: finished, "aria-label": `${alias}: ${finished} of ${total} finished` })),
    el("td", { class: "num" }, fmt.dur(timing ? timing.mean_cost_s : null)),
  );
}

function runningRow(p, space) {
  const started = p.started_at ? (Date.now() - new Date(p.started_at).getTime()) / 1000 : null;
  const epoch = p.epoch !== undefined && p.epoch !== null ? `${p.epoch}${p.epochs ? ` / ${p.epochs}` : ""}` : "—";
  const acc = p.train_acc ?? p.accuracy ?? p.acc;
  return el(
    "tr",
    {},
    el("td", {}, p.method),
    genotypeCell({ genotype: p.genotype, architecture_key: p.genotype }, space),
    el("td", {}, p.phase || "—"),
    el("td", { class: "num" }, epoch),
    el("td", { class: "num" }, acc === undefined || acc === null ? "—" : fmt.pct(acc)),
    el("td", { class: "mono" }, p.worker || "—"),
    el("td", { class: "num" }, fmt.dur(started)),
  );
}

function initBatch() {
  const batchId = document.body.dataset.batch;
  const ranking = new RankingTable(batchId);
  const methodSelect = document.getElementById("method");
  let etag = null;
  let lastDone = -1;
  let lastRankingLoad = 0;
  let space = "nb201";

  function renderStatus(s) {
    space = s.space;
    const overall = document.getElementById("overall");
    overall.className = `badge st-${s.status}`;
    overall.textContent = s.status;
    const meta = document.getElementById("meta");
    meta.textContent = `${s.space} · ${s.dataset} · seed ${s.seed} · created ${fmt.time(s.created_at)}`;
    document.getElementById("eta").textContent = s.status === "done" ? "" : s.eta_s !== null && s.eta_s !== undefined ? `ETA ${fmt.dur(s.eta_s)}` : "ETA unknown yet";
    const tbody = document.querySelector("#per-method tbody");
    tbody.replaceChildren(
      ...s.methods.map((m) => perMethodRow(m.alias, s.per_method[m.alias] || {}, (s.timings || {})[m.alias])),
    );
    const running = document.querySelector("#running tbody");
    running.replaceChildren(...(s.progress || []).map((p) => runningRow(p, s.space)));
    document.getElementById("none-running").hidden = (s.progress || []).length > 0;
    if (!methodSelect.options.length) {
      for (const m of s.methods) methodSelect.append(el("option", { value: m.alias }, m.alias));
    }
  }

  async function refreshRanking(force) {
    const now = Date.now();
    if (!force && now - lastRankingLoad < 5000) return;
    lastRankingLoad = now;
    try {
      await ranking.load(methodSelect.value, space);
    } catch (err) {
      showError(err);
    }
  }

  async function poll() {
    let status = null;
    try {
      const res = await api(`/v1/batches/${encodeURIComponent(batchId)}`, etag);
      showError(null);
      if (!res.notModified) {
        etag = res.etag;
        status = res.body;
        renderStatus(status);
        const done = status.counts.done + status.counts.failed + status.counts.unmet + status.counts.rejected + (status.counts.lost || 0);
        if (done !== lastDone) {
          await refreshRanking(lastDone === -1 || status.status === "done");
          lastDone = done;
        }
      }
    } catch (err) {
      showError(err);
    }
    // Stop polling once nothing is queued or running; a reload picks up later changes.
    if (!status || status.status !== "done") setTimeout(poll, POLL_MS);
  }

  methodSelect.addEventListener("change", () => refreshRanking(true));
  const cancel = document.getElementById("cancel");
  if (cancel) {
    cancel.addEventListener("click", async () => {
      if (!window.confirm("Cancel this batch? Queued evaluations will not run.")) return;
      const resp = await fetch(`/v1/batches/${encodeURIComponent(batchId)}/cancel`, { method: "POST", headers: authHeaders() });
      if (!resp.ok) showError(new ApiError(errorMessage(await resp.json().catch(() => null), resp.status), resp.status));
      etag = null;
    });
  }
  poll();
}

// ---- the report ----------------------------------------------------------------------------

function heatColour(rho) {
  // Diverging blue (ρ > 0) / red (ρ < 0); lightness keeps the text readable.
  const a = Math.min(1, Math.abs(rho));
  const hue = rho >= 0 ? 212 : 0;
  const light = 97 - 55 * a;
  return { bg: `hsl(${hue} 70% ${light}%)`, fg: light < 60 ? "#fff" : "#1b1f24" };
}

function renderReport(batchId, r, gt) {
  const methods = Object.entries(r.methods || {});
  document.querySelector("#correlations tbody").replaceChildren(
    ...methods.map(([alias, m]) => {
      const ci = m.spearman_ci || {};
      const interval = ci.low !== null && ci.low !== undefined ? `[${fmt.rho(ci.low)}, ${fmt.rho(ci.high)}]` : "—";
      return el(
        "tr",
        {},
        el("th", { scope: "row" }, alias),
        el("td", { class: "num" }, fmt.rho(m.spearman)),
        el("td", { class: "num" }, interval),
        el("td", { class: "num" }, fmt.rho(m.kendall)),
        el("td", { class: "num" }, m.n_used ?? "—"),
        el("td", { class: "num" }, m.n_nonfinite ?? 0),
        el("td", { class: "num" }, m.n_unmet ?? 0),
        el("td", { class: "num" }, m.n_rejected ?? 0),
        el("td", { class: "num" }, m.n_failed ?? 0),
        el("td", { class: "num" }, m.n_pending ?? 0),
        el("td", { class: "note" }, m.note || ""),
      );
    }),
  );

  const top = el("table", { class: "data", id: "top-percent" });
  top.append(el("caption", { class: "visually-hidden" }, "Top-% table per method"));
  top.append(
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ...["Method", "top p", "k", "spe", "common", "duration (mean ± std)"].map((h, i) =>
          el("th", { scope: "col", class: i ? "num" : null }, h),
        ),
      ),
    ),
  );
  const tb = el("tbody");
  for (const [alias, m] of methods) {
    (m.top_percent || []).forEach((t, i) => {
      const tr = el("tr");
      if (i === 0) tr.append(el("th", { scope: "rowgroup", rowspan: m.top_percent.length }, alias));
      tr.append(
        el("td", { class: "num" }, `${t.p}%`),
        el("td", { class: "num" }, t.k),
        el("td", { class: "num", title: t.note || "" }, fmt.rho(t.spe)),
        el("td", { class: "num" }, fmt.pct(t.common)),
        el("td", { class: "num" }, `${fmt.dur(t.duration_mean_s)} ± ${fmt.dur(t.duration_std_s)}`),
      );
      tb.append(tr);
    });
  }
  top.append(tb);
  document.getElementById("top-tables").replaceChildren(el("div", { class: "scroll" }, top));

  const matrix = r.matrix || {};
  const names = Object.keys(matrix);
  const mt = document.getElementById("matrix");
  mt.querySelector("thead").replaceChildren(
    el("tr", {}, el("td"), ...names.map((n) => el("th", { scope: "col" }, n))),
  );
  mt.querySelector("tbody").replaceChildren(
    ...names.map((a) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, a),
        ...names.map((b) => {
          const v = (matrix[a] || {})[b];
          if (v === null || v === undefined) return el("td", {}, "—");
          const c = heatColour(v);
          return el("td", { style: `background:${c.bg};color:${c.fg}`, title: `${a} vs ${b}: ρ = ${v}` }, fmt.rho(v));
        }),
      ),
    ),
  );

  document.querySelector("#costs tbody").replaceChildren(
    ...Object.entries(r.costs || {}).map(([alias, c]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, alias),
        el("td", { class: "num" }, c.n ?? "—"),
        el("td", { class: "num" }, fmt.dur(c.mean_s)),
        el("td", { class: "num" }, fmt.dur(c.total_s)),
        el("td", { class: "num" }, c.ratio_to_reference === null || c.ratio_to_reference === undefined ? "—" : `${fmt.num(c.ratio_to_reference, 3)}×`),
      ),
    ),
  );

  const q = gt ? `?ground_truth=${encodeURIComponent(gt)}` : "";
  const base = `/v1/batches/${encodeURIComponent(batchId)}/plots`;
  for (const [id, src] of [["plot-scores", `${base}/score_vs_ground_truth.png${q}`], ["plot-cost", `${base}/cost_vs_spearman.png${q}`]]) {
    const img = document.getElementById(id);
    img.onerror = () => {
      img.hidden = true;
    };
    img.hidden = false;
    loadImage(img, src);
  }
  const pending = methods.reduce((a, [, m]) => a + (m.n_pending || 0), 0);
  const gtName = r.ground_truth && (r.ground_truth.name || r.ground_truth.set || r.ground_truth);
  document.getElementById("report-note").textContent =
    `${pending || r.partial ? `Partial: ${pending} evaluation(s) still pending. ` : ""}Ground truth: ${typeof gtName === "string" ? gtName : "the client's"}.`;
}

function initReport() {
  const batchId = document.body.dataset.batch;
  const select = document.getElementById("gt");
  async function load() {
    try {
      const { body } = await api(`/v1/batches/${encodeURIComponent(batchId)}/report${select.value ? `?ground_truth=${encodeURIComponent(select.value)}` : ""}`);
      renderReport(batchId, body, select.value);
      showError(null);
    } catch (err) {
      document.getElementById("report-note").textContent = `No report: ${err.message}`;
      for (const id of ["plot-scores", "plot-cost"]) document.getElementById(id).hidden = true;
    }
  }
  api(`/v1/batches/${encodeURIComponent(batchId)}/ground_truth`)
    .then(({ body }) => {
      const sets = (body.sets || []).map((s) => (typeof s === "string" ? s : s.name || s.set_name)).filter(Boolean);
      for (const name of [...sets, ...(body.methods || [])]) {
        if (name !== "client") select.append(el("option", { value: name }, name));
      }
    })
    .catch(() => {});
  select.addEventListener("change", load);
  load();
}

// ---- one architecture ----------------------------------------------------------------------

function curveChart(title, series, threshold) {
  // series: [{name, colour, points: [[epoch, acc]]}]; accuracy as a fraction.
  const w = 640;
  const h = 300;
  const m = { l: 48, r: 16, t: 24, b: 38 };
  const all = series.flatMap((s) => s.points);
  const maxEpoch = Math.max(1, ...all.map((p) => p[0]));
  const accs = all.map((p) => p[1]).concat(threshold !== null && threshold !== undefined ? [threshold] : []);
  const yMax = Math.min(1, Math.max(0.1, ...accs) * 1.08);
  const yMin = 0;
  const X = (e) => m.l + ((e - 0) / maxEpoch) * (w - m.l - m.r);
  const Y = (a) => h - m.b - ((a - yMin) / (yMax - yMin)) * (h - m.t - m.b);
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title });
  svg.append(svgEl("title", {}, title));
  svg.append(svgEl("text", { x: m.l, y: 15, "font-weight": 600 }, title));
  for (let i = 0; i <= 4; i++) {
    const a = yMin + ((yMax - yMin) * i) / 4;
    svg.append(svgEl("line", { x1: m.l, x2: w - m.r, y1: Y(a), y2: Y(a), stroke: "#d0d7de" }));
    svg.append(svgEl("text", { x: m.l - 6, y: Y(a) + 4, "text-anchor": "end" }, `${Math.round(a * 100)}%`));
  }
  const step = Math.max(1, Math.ceil(maxEpoch / 10));
  for (let e = 0; e <= maxEpoch; e += step) {
    svg.append(svgEl("text", { x: X(e), y: h - m.b + 16, "text-anchor": "middle" }, String(e)));
  }
  svg.append(svgEl("text", { x: (m.l + w - m.r) / 2, y: h - 6, "text-anchor": "middle" }, "epoch"));
  svg.append(svgEl("line", { x1: m.l, x2: m.l, y1: m.t, y2: h - m.b, stroke: "#57606a" }));
  svg.append(svgEl("line", { x1: m.l, x2: w - m.r, y1: h - m.b, y2: h - m.b, stroke: "#57606a" }));
  if (threshold !== null && threshold !== undefined) {
    svg.append(svgEl("line", { x1: m.l, x2: w - m.r, y1: Y(threshold), y2: Y(threshold), stroke: "#7d4e00", "stroke-dasharray": "5 4" }));
    svg.append(svgEl("text", { x: w - m.r - 4, y: Y(threshold) - 5, "text-anchor": "end", fill: "#7d4e00" }, `threshold ${Math.round(threshold * 100)}%`));
  }
  const stage2 = series.find((s) => s.id === "stage2");
  if (stage2 && stage2.points.length) {
    const fx = X(stage2.points[0][0]);
    svg.append(svgEl("line", { x1: fx, x2: fx, y1: m.t, y2: h - m.b, stroke: "#57606a", "stroke-dasharray": "2 3" }));
    svg.append(svgEl("text", { x: fx + 4, y: m.t + 10 }, "freeze"));
  }
  for (const s of series) {
    if (!s.points.length) continue;
    svg.append(
      svgEl("polyline", {
        points: s.points.map(([e, a]) => `${X(e)},${Y(a)}`).join(" "),
        fill: "none",
        stroke: s.colour,
        "stroke-width": 2,
        class: `series-${s.id}`,
      }),
    );
    for (const [e, a] of s.points.slice(s.skipFirst ? 1 : 0)) {
      svg.append(svgEl("circle", { cx: X(e), cy: Y(a), r: 4, fill: s.colour }, svgEl("title", {}, `${s.name}, epoch ${e}: ${fmt.pct(a)}`)));
    }
  }
  return svg;
}

function curveFigure(ev) {
  const info = ev.info || {};
  const series = [];
  let title = `${ev.method} #${ev.evaluation_id} (${ev.dataset})`;
  if (info.stage1 && Array.isArray(info.stage1.acc)) {
    const s1 = info.stage1.acc.map((a, i) => [i + 1, a]);
    series.push({ id: "stage1", name: "stage 1 (all layers, to the threshold)", colour: "#0550ae", points: s1 });
    if (info.stage2 && Array.isArray(info.stage2.acc)) {
      const offset = s1.length;
      // Stage 2 continues from where stage 1 stopped, with the lower layers frozen.
      const s2 = [[offset, s1.length ? s1[s1.length - 1][1] : 0], ...info.stage2.acc.map((a, i) => [offset + i + 1, a])];
      series.push({ id: "stage2", name: "stage 2 (lower layers frozen)", colour: "#a40e26", points: s2, skipFirst: true });
    }
    title = `FEAR ${title}`;
  } else if (info.train && Array.isArray(info.train.acc)) {
    series.push({ id: "train", name: "training accuracy", colour: "#116329", points: info.train.acc.map((a, i) => [i + 1, a]) });
  } else {
    return null;
  }
  const fig = el("figure", { class: "curve", "data-evaluation": ev.evaluation_id });
  fig.append(curveChart(title, series, info.threshold));
  const legend = el("p", { class: "legend" });
  for (const s of series) legend.append(el("span", {}, el("i", { style: `background:${s.colour}` }), s.name));
  fig.append(legend);
  // The numbers behind the chart, for screen readers and copying.
  const details = el("details", {}, el("summary", {}, "per-epoch values"));
  const t = el("table", { class: "data" });
  t.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "series"), el("th", { scope: "col", class: "num" }, "epoch"), el("th", { scope: "col", class: "num" }, "train accuracy"))));
  const tb = el("tbody");
  for (const s of series) for (const [e, a] of s.points) tb.append(el("tr", {}, el("td", {}, s.id), el("td", { class: "num" }, e), el("td", { class: "num" }, fmt.pct(a))));
  t.append(tb);
  details.append(t);
  fig.append(details);
  const caption = [];
  if (info.time_to_threshold_s !== undefined) caption.push(`time to threshold ${fmt.dur(info.time_to_threshold_s)}`);
  if (info.trainable_ratio !== undefined) caption.push(`${fmt.pct(info.trainable_ratio)} of parameters trained in stage 2`);
  if (ev.reason) caption.push(ev.reason);
  if (caption.length) fig.append(el("figcaption", {}, caption.join(" · ")));
  return fig;
}

async function initArchitecture() {
  const { key, space } = document.body.dataset;
  try {
    const { body } = await api(`/v1/architectures/${encodeURIComponent(key)}?space=${encodeURIComponent(space)}`);
    const meta = document.getElementById("arch-meta");
    for (const [k, v] of [["space", body.space], ["key", body.key], ["genotype", body.genotype], ["index", body.index ?? "—"], ["degenerate", body.degenerate ? "yes (no path from input to output)" : "no"]]) {
      meta.append(el("dt", {}, k), el("dd", { class: k === "genotype" || k === "key" ? "mono" : null }, v));
    }
    const svg = body.space === "nb201" ? cellSvg(body.genotype, true) : null;
    if (svg) document.getElementById("cell").append(svg, cellLegend());
    const tbody = document.querySelector("#evaluations tbody");
    tbody.replaceChildren(
      ...body.evaluations.map((ev) =>
        el(
          "tr",
          {},
          el("td", { class: "num" }, ev.evaluation_id),
          el("td", {}, ev.method),
          el("td", {}, ev.dataset),
          el("td", { class: "reason" }, statusBadge(ev.status), ev.reason ? el("span", { class: "why", title: ev.reason }, ev.reason) : null),
          el("td", { class: "num" }, ev.score !== null && ev.score !== undefined ? fmt.num(ev.score) : ev.score_repr || "—"),
          el("td", { class: "num" }, fmt.dur(ev.cost_s)),
          el("td", {}, ev.device || "—"),
          el("td", {}, ev.finished_at ? timeCell(ev.finished_at) : "—"),
          el("td", {}, el("code", { title: JSON.stringify(ev.config) }, String(ev.config_hash || "").slice(0, 10))),
        ),
      ),
    );
    const figures = body.evaluations.map(curveFigure).filter(Boolean);
    if (figures.length) document.getElementById("curves").replaceChildren(el("div", { class: "curves" }, ...figures));
  } catch (err) {
    showError(err);
  }
}

const PAGES = { batches: initBatches, batch: initBatch, report: initReport, architecture: initArchitecture };
document.addEventListener("DOMContentLoaded", () => {
  initKeyForm();
  wireExports();
  const init = PAGES[document.body.dataset.page];
  if (init) init();
});
