/* The images page (docs/web.md): SIA 2.0 at a position (POS=CIRCLE, SIA 2.0 §2.1; JSON
 * output), then one SODA cutout preview per image (SODA 1.0 §3, RESPONSEFORMAT=image/png),
 * as the customer's MAST notebook shows HLA cutouts. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const urls = $("img-data").dataset;
  const params = new URLSearchParams(location.search);
  for (const [k, id] of [["ra", "img-ra"], ["dec", "img-dec"], ["r", "img-r"]]) if (params.get(k)) $(id).value = params.get(k);

  async function search(ev) {
    if (ev) ev.preventDefault();
    const ra = Number($("img-ra").value), dec = Number($("img-dec").value), r = Number($("img-r").value);
    $("img-error").hidden = true;
    $("img-status").textContent = "searching…";
    $("thumbs").replaceChildren();
    try {
      const q = VOG.form({ POS: `CIRCLE ${ra} ${dec} ${r}`, RESPONSEFORMAT: "application/json", MAXREC: 50 });
      const d = await (await VOG.request(urls.sia + "?" + q.toString())).json();
      const col = Object.fromEntries(d.metadata.map((m, i) => [m.name, i]));
      $("img-status").textContent = `${d.data.length} images`;
      for (const row of d.data) {
        const id = row[col.obs_publisher_did];
        const src = urls.soda + "?" + VOG.form({ ID: id, CIRCLE: `${ra} ${dec} ${r}`, RESPONSEFORMAT: "image/png" }).toString();
        const fits = urls.soda + "?" + VOG.form({ ID: id, CIRCLE: `${ra} ${dec} ${r}` }).toString();
        const band = row[col.em_min] ? ` · ${(row[col.em_min] * 1e9).toFixed(0)}–${(row[col.em_max] * 1e9).toFixed(0)} nm` : "";
        const img = VOG.el("img", { src, alt: `cutout of ${row[col.obs_id]}`, loading: "lazy" });
        img.addEventListener("error", () => { img.replaceWith(VOG.el("div", { class: "error" }, "no preview (the region may lie outside the image)")); });
        $("thumbs").append(VOG.el("figure", { "data-id": id }, img,
          VOG.el("figcaption", {}, row[col.obs_id] + band, " ", VOG.el("a", { href: fits }, "FITS"))));
      }
    } catch (e) {
      $("img-status").textContent = "";
      $("img-error").hidden = false;
      $("img-error").textContent = e.message;
    }
  }
  $("image-form").addEventListener("submit", search);
  if ($("img-ra").value && $("img-dec").value) search();
})();
