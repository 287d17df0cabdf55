/* The sky view (docs/web.md): the result's positions over the configured HiPS survey
 * (HiPS 1.0), drawn by the vendored Aladin Lite (LGPL-3, vendor/README.md).  Loaded only when
 * web.hips_url is set.  The HiPS properties are fetched first, so an unreachable server leaves
 * a note and never makes Aladin Lite fall back to a survey elsewhere; with no WebGL2 the
 * note says so.  Nothing else on the page depends on this module. */
import A from "./vendor/aladin-lite/aladin.js";

const box = document.getElementById("aladin-box");
const status = document.getElementById("aladin-status");
const hips = box.dataset.hips;
let aladin = null, catalog = null;

async function ready() {
  if (aladin) return aladin;
  const r = await fetch(hips + "/properties");
  if (!r.ok) throw new Error(`the HiPS server answered HTTP ${r.status}`);
  await A.init;
  aladin = A.aladin("#aladin", {
    survey: hips, fov: 1, log: false, showReticle: false, showLayersControl: false, showGotoControl: false,
    showFullscreenControl: false, showSimbadPointerControl: false, showShareControl: false, showSettingsControl: false,
    showCooGridControl: false, showProjectionControl: false, showFrame: false,
  });
  catalog = A.catalog({ name: "result", sourceSize: 10, color: "#ff3b30" });
  aladin.addCatalog(catalog);
  window.vogAladin = { aladin, catalog };
  return aladin;
}

/** Centre and horizontal field of view (degrees) that hold every position in the view. */
function extent(ra, dec) {
  const el = document.getElementById("aladin");
  const aspect = el.clientHeight ? el.clientWidth / el.clientHeight : 1;
  const d0 = dec.reduce((a, b) => a + b, 0) / dec.length;
  const x = ra.map((v) => Math.cos((v * Math.PI) / 180)), y = ra.map((v) => Math.sin((v * Math.PI) / 180));
  const ra0 = ((Math.atan2(y.reduce((a, b) => a + b, 0), x.reduce((a, b) => a + b, 0)) * 180) / Math.PI + 360) % 360;
  let fov = 0.05;
  for (let i = 0; i < ra.length; i++) {
    const dra = (((ra[i] - ra0 + 540) % 360) - 180) * Math.cos((d0 * Math.PI) / 180);
    fov = Math.max(fov, 2.2 * Math.abs(dra), 2.2 * aspect * Math.abs(dec[i] - d0));
  }
  return { ra0, d0, fov: Math.min(fov, 180) };
}

async function show(p) {
  if (!p || !p.ra.length) { box.hidden = true; return; }
  box.hidden = false;
  try {
    await ready();
    catalog.removeAll();
    catalog.addSources(p.ra.map((ra, i) => A.source(ra, p.dec[i], { name: p.label[i] })));
    const e = extent(p.ra, p.dec);
    aladin.gotoRaDec(e.ra0, e.d0);
    aladin.setFoV(e.fov);
    status.textContent = `${p.ra.length} positions`;
  } catch (err) {
    status.textContent = "The sky view is not available here: " + (err && err.message ? err.message : err);
  }
}

box.hidden = true;
document.addEventListener("vog:positions", (e) => show(e.detail));
if (window.vogPositions) show(window.vogPositions);
