/* vo-gateway web interface: shared helpers (docs/web.md).
 * Everything a user typed or a table holds is put into the page as text (textContent,
 * createElement), never as HTML. */
"use strict";
const VOG = (function () {
  const NUMERIC = new Set(["short", "int", "long", "float", "double", "unsignedByte"]);

  /** createElement with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  /** The message of an error answer: a DALI error VOTable's QUERY_STATUS INFO (DALI 1.1
   * §4.2), an SCS Error INFO, or the text itself (SODA's text/plain errors). */
  function errorMessage(text) {
    if (text && text.trimStart().startsWith("<")) {
      const doc = new DOMParser().parseFromString(text, "application/xml");
      for (const info of doc.getElementsByTagName("INFO")) {
        if (info.getAttribute("name") === "QUERY_STATUS" && info.getAttribute("value") === "ERROR")
          return info.textContent.trim() || "the request failed";
        if (info.getAttribute("name") === "Error") return info.getAttribute("value");
      }
    }
    return (text || "").trim() || "the request failed";
  }

  /** {line, column} (1-based) named in an ADQL error message "... (line 2, column 16)". */
  function errorPosition(message) {
    const m = /line (\d+), column (\d+)/.exec(message || "");
    return m ? { line: Number(m[1]), column: Number(m[2]) } : null;
  }

  /** fetch that turns an HTTP error into an Error with the error document's message. */
  async function request(url, options) {
    const r = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
    if (!r.ok) {
      const err = new Error(errorMessage(await r.text()) + ` (HTTP ${r.status})`);
      err.status = r.status;
      throw err;
    }
    return r;
  }

  function form(params) {
    const f = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") f.append(k, v);
    return f;
  }

  /** A result ({metadata, data, query_status} from RESPONSEFORMAT=application/json) as a
   * paged, sortable table: all rows stay in a JavaScript array and only one page of them is
   * ever in the DOM. */
  class ResultTable {
    constructor(table, opts) {
      this.table = table;
      this.opts = Object.assign({ pageSize: 100, onchange: null }, opts || {});
      this.meta = [];
      this.rows = [];
      this.order = [];
      this.page = 0;
      this.sortColumn = null;
      this.sortDir = 1;
    }
    set(meta, rows) {
      this.meta = meta;
      this.rows = rows;
      this.order = rows.map((_, i) => i);
      this.page = 0;
      this.sortColumn = null;
      this.renderHead();
      this.render();
    }
    get pages() { return Math.max(1, Math.ceil(this.rows.length / this.opts.pageSize)); }
    numeric(i) { return NUMERIC.has(this.meta[i].datatype) && !(this.meta[i].arraysize); }
    renderHead() {
      const thead = this.table.tHead || this.table.createTHead();
      thead.replaceChildren();
      const tr = el("tr");
      this.meta.forEach((m, i) => {
        const title = [m.datatype + (m.arraysize ? `[${m.arraysize}]` : ""), m.ucd, m.description].filter(Boolean).join(" · ");
        const th = el("th", { class: "sortable", title, "data-column": m.name, onclick: () => this.sort(i) },
          m.name, m.unit ? el("span", { class: "unit" }, ` [${m.unit}]`) : null);
        tr.append(th);
      });
      thead.append(tr);
    }
    sort(i) {
      this.sortDir = this.sortColumn === i ? -this.sortDir : 1;
      this.sortColumn = i;
      const dir = this.sortDir, rows = this.rows, num = this.numeric(i), long = this.meta[i].json_type === "string";
      const key = (v) => (v === null || v === undefined ? null : num ? (long ? BigInt(v) : Number(v)) : String(v));
      const keys = rows.map((r) => key(r[i]));
      this.order.sort((a, b) => {
        const x = keys[a], y = keys[b];
        if (x === null) return y === null ? a - b : 1; // nulls last either way
        if (y === null) return -1;
        if (x < y) return -dir;
        if (x > y) return dir;
        return a - b;
      });
      [...this.table.tHead.rows[0].cells].forEach((th, j) => {
        th.classList.toggle("asc", j === i && dir === 1);
        th.classList.toggle("desc", j === i && dir === -1);
      });
      this.page = 0;
      this.render();
    }
    go(delta) {
      this.page = Math.min(this.pages - 1, Math.max(0, this.page + delta));
      this.render();
    }
    setPageSize(n) {
      this.opts.pageSize = n;
      this.page = 0;
      this.render();
    }
    render() {
      const tbody = this.table.tBodies[0] || this.table.createTBody();
      const start = this.page * this.opts.pageSize;
      const frag = document.createDocumentFragment();
      for (const idx of this.order.slice(start, start + this.opts.pageSize)) {
        const r = this.rows[idx];
        const tr = document.createElement("tr");
        r.forEach((v, i) => {
          const td = document.createElement("td");
          if (v === null || v === undefined) { td.className = "null"; td.textContent = ""; }
          else {
            td.textContent = Array.isArray(v) ? v.join(" ") : String(v);
            if (this.numeric(i)) td.className = "num";
          }
          tr.append(td);
        });
        frag.append(tr);
      }
      tbody.replaceChildren(frag);
      if (this.opts.onchange) this.opts.onchange(this);
    }
    /** Column values as numbers (nulls as NaN), in the current order. */
    values(i) {
      return this.order.map((idx) => { const v = this.rows[idx][i]; return v === null || v === undefined ? NaN : Number(v); });
    }
  }

  /** Sort a server-rendered table's rows on a click of a header cell marked data-sort. */
  function sortableDom(table) {
    const heads = [...table.tHead.rows[0].cells];
    heads.forEach((th, i) => {
      if (!th.hasAttribute("data-sort")) return;
      th.classList.add("sortable");
      th.addEventListener("click", () => {
        const dir = th.classList.contains("asc") ? -1 : 1;
        heads.forEach((h) => h.classList.remove("asc", "desc"));
        th.classList.add(dir === 1 ? "asc" : "desc");
        const rows = [...table.tBodies[0].rows];
        rows.sort((a, b) => dir * a.cells[i].textContent.trim().localeCompare(b.cells[i].textContent.trim(), undefined, { numeric: true }));
        table.tBodies[0].append(...rows);
      });
    });
  }

  return { el, errorMessage, errorPosition, request, form, ResultTable, sortableDom, NUMERIC };
})();
