/* The jobs page (docs/web.md): the caller's UWS jobs at {tap}/async (UWS 1.1 §2.2.1.1 job
 * list; §2.2.3 job documents), with phase, times, rows and progress from the gateway's
 * jobInfo, and the UWS actions: abort (PHASE=ABORT), delete (ACTION=DELETE), open the result.
 * Refreshed every two seconds while a job is pending, queued or executing. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const JOBS = $("jobs-data").dataset.url;
  const UWS = "http://www.ivoa.net/xml/UWS/v1.0";
  const XLINK = "http://www.w3.org/1999/xlink";
  const ACTIVE = new Set(["PENDING", "QUEUED", "EXECUTING", "HELD", "SUSPENDED"]);
  let timer = null;

  const xml = (text) => new DOMParser().parseFromString(text, "application/xml");
  const one = (doc, name) => { const e = doc.getElementsByTagNameNS(UWS, name)[0]; return e && !e.getAttribute("xsi:nil") ? e.textContent.trim() : ""; };
  const time = (t) => (t ? t.replace("T", " ").replace("Z", "") : "");

  /** The gateway's job info (urn:vo-gateway:jobinfo JSON in uws:jobInfo): rows, progress. */
  function jobInfo(doc) {
    const info = doc.getElementsByTagNameNS(UWS, "jobInfo")[0];
    if (!info) return {};
    for (const e of info.getElementsByTagName("*")) {
      if (e.namespaceURI === "urn:vo-gateway:jobinfo") { try { return JSON.parse(e.textContent); } catch (_) { return {}; } }
    }
    return {};
  }
  function progressText(info) {
    const p = info.progress;
    if (!p) return "";
    if (typeof p !== "object") return String(p);
    if (p.subqueries_total !== undefined) return `${p.subqueries_done ?? 0} of ${p.subqueries_total} subqueries`;
    return Object.entries(p).map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(", ");
  }

  async function action(url, params, what) {
    try {
      await VOG.request(url, { method: "POST", body: VOG.form(params) });
    } catch (e) {
      $("job-status").textContent = `${what} failed: ${e.message}`;
    }
    refresh();
  }

  function row(href, doc) {
    const id = one(doc, "jobId"), phase = one(doc, "phase");
    const params = {};
    for (const p of doc.getElementsByTagNameNS(UWS, "parameter")) params[p.getAttribute("id").toLowerCase()] = p.textContent;
    const info = jobInfo(doc);
    const result = [...doc.getElementsByTagNameNS(UWS, "result")].find((r) => r.getAttribute("id") === "result");
    const rows = info.rows ?? "";
    const tr = VOG.el("tr", { "data-job": id, "data-phase": phase });
    const buttons = VOG.el("td", { class: "actions" });
    if (ACTIVE.has(phase))
      buttons.append(VOG.el("button", { type: "button", class: "abort", onclick: () => action(href + "/phase", { PHASE: "ABORT" }, "abort") }, "abort"));
    if (result) buttons.append(" ", VOG.el("a", { class: "result", href: result.getAttributeNS(XLINK, "href"), target: "_blank" }, "result"));
    if (phase === "ERROR") buttons.append(" ", VOG.el("a", { class: "error-link", href: href + "/error", target: "_blank" }, "error"));
    buttons.append(" ", VOG.el("button", { type: "button", class: "delete", onclick: () => action(href, { ACTION: "DELETE" }, "delete") }, "delete"));
    tr.append(
      VOG.el("td", {}, VOG.el("a", { href }, id)),
      VOG.el("td", { class: "phase phase-" + phase }, phase),
      VOG.el("td", {}, time(one(doc, "creationTime"))),
      VOG.el("td", {}, time(one(doc, "startTime"))),
      VOG.el("td", {}, time(one(doc, "endTime"))),
      VOG.el("td", { class: "num rows" }, String(rows)),
      VOG.el("td", { class: "progress" }, progressText(info)),
      VOG.el("td", { class: "query" }, VOG.el("code", {}, (params.query || "").slice(0, 200))),
      buttons,
    );
    return { tr, active: ACTIVE.has(phase) };
  }

  async function refresh() {
    clearTimeout(timer);
    let active = false;
    try {
      const list = xml(await (await VOG.request(JOBS + "?LAST=50")).text());
      const refs = [...list.getElementsByTagNameNS(UWS, "jobref")].map((r) => r.getAttributeNS(XLINK, "href"));
      const docs = await Promise.all(refs.map(async (href) => {
        try { return [href, xml(await (await VOG.request(href)).text())]; } catch (_) { return null; }
      }));
      const body = $("jobs-table").tBodies[0];
      const rows = docs.filter(Boolean).map(([href, doc]) => row(href, doc));
      body.replaceChildren(...rows.map((r) => r.tr));
      active = rows.some((r) => r.active);
      $("jobs-empty").hidden = rows.length > 0;
    } catch (e) {
      $("job-status").textContent = "The job list could not be loaded: " + e.message;
    }
    timer = setTimeout(refresh, active ? 2000 : 10000);
  }

  $("job-submit").addEventListener("click", async () => {
    $("job-status").textContent = "submitting…";
    try {
      const r = await VOG.request(JOBS, {
        method: "POST",
        body: VOG.form({ LANG: "ADQL", QUERY: $("job-query").value, PHASE: "RUN", RESPONSEFORMAT: "application/json" }),
      });
      $("job-status").textContent = "submitted " + r.url.split("/").pop();
    } catch (e) {
      $("job-status").textContent = e.message;
    }
    refresh();
  });
  refresh();
})();
