/* The query page (docs/web.md): ADQL editor, schema browser, examples, sync and async runs,
 * the paged result table, download links and plots.  Talks to the TAP endpoints exactly as a
 * script does: POST {tap}/sync or {tap}/async with RESPONSEFORMAT=application/json. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const data = $("query-data").dataset;
  const TAP = data.tap;
  const editor = CodeMirror.fromTextArea($("adql"), {
    mode: "text/x-sql", lineNumbers: true, lineWrapping: true,
    extraKeys: { "Ctrl-Enter": () => run(), "Cmd-Enter": () => run() },
  });
  window.vogEditor = editor;
  const examples = JSON.parse($("examples-data").textContent);
  const table = new VOG.ResultTable($("result-table"), { pageSize: Number($("page-size").value), onchange: pageInfo });
  let errorMark = null;
  let chart = null;

  /* ---- schema browser: archives → schemas → tables → columns; a click inserts the name ---- */
  function insert(name) {
    editor.replaceSelection(name);
    editor.focus();
  }
  function nameSpan(name, title) {
    return VOG.el("span", { class: "name", title, onclick: (e) => { e.preventDefault(); insert(name); } }, name);
  }
  async function loadSchema() {
    const tree = $("schema-tree");
    try {
      const d = await (await VOG.request(data.schema)).json();
      tree.replaceChildren();
      for (const a of d.archives) {
        const ad = VOG.el("details", { open: true, class: "archive" }, VOG.el("summary", {}, VOG.el("b", {}, a.name), ` (${a.kind})`));
        ad.title = a.title || "";
        for (const s of a.schemas) {
          const sd = VOG.el("details", { open: d.archives.length < 4, class: "schema" }, VOG.el("summary", {}, s.name));
          for (const t of s.tables) {
            const cols = VOG.el("ul", {});
            for (const c of t.columns) {
              cols.append(VOG.el("li", { "data-name": c.name.toLowerCase() }, nameSpan(c.name, c.description || ""),
                " ", VOG.el("span", { class: "meta" }, [c.datatype, c.unit, c.ucd].filter(Boolean).join(" · "))));
            }
            const rows = t.nrows === null || t.nrows === undefined ? "" : ` ${Number(t.nrows).toLocaleString("en")} rows`;
            const td = VOG.el("details", { class: "table", "data-name": t.name.toLowerCase() },
              VOG.el("summary", {}, nameSpan(t.name, t.description || ""), " ",
                VOG.el("a", { href: data.tablePage + encodeURIComponent(t.name), title: "table page: columns, sample rows, cone search", class: "meta table-link" }, "[page]"),
                VOG.el("span", { class: "meta" }, rows)),
              cols);
            sd.append(td);
          }
          ad.append(sd);
        }
        tree.append(ad);
      }
    } catch (e) {
      tree.textContent = "The table list could not be loaded: " + e.message;
    }
  }
  $("schema-filter").addEventListener("input", (e) => {
    const q = e.target.value.trim().toLowerCase();
    for (const t of document.querySelectorAll("#schema-tree details.table")) {
      let any = !q || t.dataset.name.includes(q);
      let colHit = false;
      for (const li of t.querySelectorAll("li")) {
        const hit = !q || li.dataset.name.includes(q) || t.dataset.name.includes(q);
        li.hidden = !hit;
        if (q && li.dataset.name.includes(q)) colHit = true;
      }
      any = any || colHit;
      t.hidden = !any;
      t.open = Boolean(q) && colHit;
      if (any && q) t.closest("details.schema").open = true;
    }
  });

  /* ---- examples (DALI examples at {tap}/examples) ---- */
  function loadExample(key) {
    const ex = examples.find((x) => x.key === key);
    if (ex) { editor.setValue(ex.query); clearError(); }
  }
  $("example-select").addEventListener("change", (e) => loadExample(e.target.value));
  const params = new URLSearchParams(location.search);
  if (params.get("query")) editor.setValue(params.get("query"));
  else if (params.get("example")) { $("example-select").value = params.get("example"); loadExample(params.get("example")); }

  /* ---- running ---- */
  function setStatus(text) { $("status").textContent = text; }
  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
    if (errorMark) { errorMark.clear(); errorMark = null; }
  }
  function showError(message) {
    $("error").hidden = false;
    $("error").textContent = message;
    const pos = VOG.errorPosition(message);
    if (pos) {
      const line = Math.min(pos.line - 1, editor.lineCount() - 1);
      const text = editor.getLine(line) || "";
      let from = Math.max(0, Math.min(pos.column - 1, text.length - 1));
      const word = /^[\w.]+/.exec(text.slice(from));
      const to = from + (word ? word[0].length : 1);
      errorMark = editor.markText({ line, ch: from }, { line, ch: Math.max(to, from + 1) }, { className: "cm-adql-error", title: message });
      editor.setCursor({ line, ch: from });
    }
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function runAsync(p) {
    const r = await VOG.request(TAP + "/async", { method: "POST", body: VOG.form(Object.assign({}, p, { PHASE: "RUN", RESPONSEFORMAT: "application/json" })) });
    const job = r.url.replace(/\/$/, "");
    const id = job.split("/").pop();
    for (let wait = 300; ; wait = Math.min(wait * 1.5, 2000)) {
      const phase = (await (await VOG.request(job + "/phase")).text()).trim();
      setStatus(`async job ${id}: ${phase}`);
      if (phase === "COMPLETED") return await (await VOG.request(job + "/results/result")).json();
      if (phase === "ERROR") throw new Error(VOG.errorMessage(await (await fetch(job + "/error")).text()));
      if (phase === "ABORTED") throw new Error(`job ${id} was aborted`);
      await sleep(wait);
    }
  }

  async function run() {
    clearError();
    const p = { LANG: "ADQL", QUERY: editor.getValue(), MAXREC: $("maxrec").value };
    const mode = document.querySelector("input[name=mode]:checked").value;
    $("run").disabled = true;
    setStatus(mode === "async" ? "submitting the job…" : "running…");
    const t0 = performance.now();
    try {
      const result = mode === "async" ? await runAsync(p)
        : await (await VOG.request(TAP + "/sync", { method: "POST", body: VOG.form(Object.assign({}, p, { RESPONSEFORMAT: "application/json" })) })).json();
      show(result, p, performance.now() - t0);
    } catch (e) {
      setStatus("");
      showError(e.message);
    } finally {
      $("run").disabled = false;
    }
  }
  $("run").addEventListener("click", run);

  function show(result, p, ms) {
    const n = result.data.length;
    table.set(result.metadata, result.data);
    $("result").hidden = false;
    $("overflow").hidden = result.query_status !== "OVERFLOW";
    if (result.query_status === "ERROR") showError(result.error || "the query failed while its rows were sent");
    $("result-summary").textContent = `${n.toLocaleString("en")} rows · ${Math.round(ms)} ms · QUERY_STATUS=${result.query_status}`;
    setStatus(`${n.toLocaleString("en")} rows`);
    for (const a of document.querySelectorAll("a.download")) {
      a.href = TAP + "/sync?" + VOG.form(Object.assign({}, p, { RESPONSEFORMAT: a.dataset.format })).toString();
      if (a.dataset.format === "text/html") a.target = "_blank"; else a.setAttribute("download", "");
    }
    setupPlot();
    publishPositions();
  }

  /* the rows' positions for the sky view (sky.js, only when a HiPS server is configured) */
  function publishPositions() {
    const r = roles();
    const detail = { ra: [], dec: [], label: [] };
    if (r.ra >= 0 && r.dec >= 0) {
      const id = table.meta.findIndex((m) => ucd(m).includes("meta.id"));
      for (const row of table.rows) {
        if (row[r.ra] === null || row[r.dec] === null) continue;
        detail.ra.push(Number(row[r.ra]));
        detail.dec.push(Number(row[r.dec]));
        detail.label.push(id >= 0 ? String(row[id]) : "");
      }
    }
    window.vogPositions = detail;
    document.dispatchEvent(new CustomEvent("vog:positions", { detail }));
  }

  /* ---- pager ---- */
  function pageInfo(t) {
    const n = t.rows.length, start = t.page * t.opts.pageSize;
    $("page-info").textContent = n ? `rows ${start + 1}–${Math.min(n, start + t.opts.pageSize)} of ${n.toLocaleString("en")} · page ${t.page + 1} of ${t.pages}` : "no rows";
    $("prev").disabled = t.page === 0;
    $("next").disabled = t.page >= t.pages - 1;
  }
  $("prev").addEventListener("click", () => table.go(-1));
  $("next").addEventListener("click", () => table.go(1));
  $("page-size").addEventListener("change", (e) => table.setPageSize(Number(e.target.value)));

  /* ---- plots (Chart.js): scatter or histogram of any columns, sky, light curve ---- */
  const find = (pred) => table.meta.findIndex(pred);
  const ucd = (m) => (m.ucd || "").toLowerCase();
  const roles = () => ({
    ra: find((m) => ucd(m).startsWith("pos.eq.ra") || /^(s_)?ra(_?deg|j2000)?$/i.test(m.name)),
    dec: find((m) => ucd(m).startsWith("pos.eq.dec") || /^(s_)?dec(_?deg|j2000)?$/i.test(m.name)),
    time: find((m) => ucd(m).startsWith("time.epoch") || /mjd/i.test(m.name)),
    mag: find((m) => (ucd(m).startsWith("phot.mag") || /mag/i.test(m.name)) && !/err/i.test(m.name) && !ucd(m).includes("stat.error")),
    band: find((m) => /^(band|filter|filtername)$/i.test(m.name)),
  });
  function setupPlot() {
    const xs = $("plot-x"), ys = $("plot-y");
    xs.replaceChildren(); ys.replaceChildren();
    table.meta.forEach((m, i) => {
      if (!table.numeric(i)) return;
      const label = m.name + (m.unit ? ` [${m.unit}]` : "");
      xs.append(VOG.el("option", { value: i }, label));
      ys.append(VOG.el("option", { value: i }, label));
    });
    const r = roles();
    const numeric = [...xs.options].map((o) => Number(o.value));
    let kind = "scatter", x = numeric[0], y = numeric[1] ?? numeric[0];
    if (r.time >= 0 && r.mag >= 0) { kind = "lightcurve"; x = r.time; y = r.mag; }
    else if (r.ra >= 0 && r.dec >= 0) { kind = "sky"; x = r.ra; y = r.dec; }
    $("plot-kind").value = kind;
    if (x !== undefined) xs.value = x;
    if (y !== undefined) ys.value = y;
    $("plot-invert").checked = isMag(Number(ys.value));
    if (numeric.length && table.rows.length) draw();
  }
  const isMag = (i) => i >= 0 && table.meta[i] && (ucd(table.meta[i]).startsWith("phot.mag") || /mag/i.test(table.meta[i].name));
  $("plot-kind").addEventListener("change", () => {
    const r = roles(), k = $("plot-kind").value;
    if (k === "sky" && r.ra >= 0 && r.dec >= 0) { $("plot-x").value = r.ra; $("plot-y").value = r.dec; }
    if (k === "lightcurve" && r.time >= 0 && r.mag >= 0) { $("plot-x").value = r.time; $("plot-y").value = r.mag; }
    $("plot-invert").checked = k === "lightcurve" || (k === "scatter" && isMag(Number($("plot-y").value)));
  });
  $("plot-y").addEventListener("change", () => { $("plot-invert").checked = isMag(Number($("plot-y").value)); });
  $("plot").addEventListener("click", draw);

  const MAX_POINTS = 50000;
  function label(i) { const m = table.meta[i]; return m.name + (m.unit ? ` [${m.unit}]` : ""); }
  function draw() {
    const kind = $("plot-kind").value, xi = Number($("plot-x").value), yi = Number($("plot-y").value);
    if (Number.isNaN(xi)) return;
    if (chart) chart.destroy();
    const canvas = $("plot-canvas");
    const xv = table.values(xi);
    if (kind === "histogram") {
      const vals = xv.filter(Number.isFinite);
      let lo = Infinity, hi = -Infinity;
      for (const v of vals) { if (v < lo) lo = v; if (v > hi) hi = v; }
      const nb = 40, w = (hi - lo) / nb || 1, counts = new Array(nb).fill(0);
      for (const v of vals) counts[Math.min(nb - 1, Math.floor((v - lo) / w))]++;
      chart = new Chart(canvas, {
        type: "bar",
        data: { labels: counts.map((_, i) => (lo + (i + 0.5) * w).toPrecision(4)), datasets: [{ label: `${label(xi)}: ${vals.length} values`, data: counts, barPercentage: 1, categoryPercentage: 1, backgroundColor: "#4a78c2" }] },
        options: { animation: false, scales: { x: { title: { display: true, text: label(xi) } }, y: { title: { display: true, text: "count" } } } },
      });
      return;
    }
    const yv = table.values(yi);
    const r = roles();
    const groups = new Map();
    const bandOf = kind === "lightcurve" && r.band >= 0 ? (k) => String(table.rows[table.order[k]][r.band]) : () => "";
    const stride = Math.max(1, Math.ceil(xv.length / MAX_POINTS));
    for (let k = 0; k < xv.length; k += stride) {
      if (!Number.isFinite(xv[k]) || !Number.isFinite(yv[k])) continue;
      const g = bandOf(k);
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push({ x: xv[k], y: yv[k] });
    }
    const palette = ["#1f5fbf", "#2e9e44", "#d1462f", "#8a3ab9", "#c58a00", "#00838f", "#555"];
    const datasets = [...groups.entries()].slice(0, 12).map(([g, pts], j) => ({
      label: (g ? g + ": " : "") + `${label(yi)} vs ${label(xi)} (${pts.length})`, data: pts,
      pointRadius: pts.length > 5000 ? 1 : 2.5, backgroundColor: palette[j % palette.length], borderColor: palette[j % palette.length],
    }));
    chart = new Chart(canvas, {
      type: "scatter",
      data: { datasets },
      options: {
        animation: false, parsing: false, normalized: true,
        scales: {
          x: { type: "linear", reverse: kind === "sky", title: { display: true, text: label(xi) + (kind === "sky" ? " (east left)" : "") } },
          y: { type: "linear", reverse: $("plot-invert").checked, title: { display: true, text: label(yi) } },
        },
      },
    });
    canvas.dataset.points = String(datasets.reduce((s, d) => s + d.data.length, 0));
  }

  loadSchema();
})();
