/* A table page (docs/web.md): columns sortable by name, datatype, unit or UCD, and a few
 * sample rows fetched through TAP sync (RESPONSEFORMAT=application/json) like any client. */
"use strict";
(function () {
  VOG.sortableDom(document.getElementById("columns"));
  const sample = document.getElementById("sample");
  const tap = document.getElementById("table-data").dataset.tap;
  const query = document.getElementById("sample-query").textContent;
  const t = new VOG.ResultTable(sample, { pageSize: 5 });
  VOG.request(tap, { method: "POST", body: VOG.form({ LANG: "ADQL", QUERY: query, RESPONSEFORMAT: "application/json" }) })
    .then((r) => r.json())
    .then((d) => t.set(d.metadata, d.data))
    .catch((e) => { sample.tBodies[0].replaceChildren(VOG.el("tr", {}, VOG.el("td", { class: "error" }, e.message))); });
})();
