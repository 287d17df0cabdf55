"""The web interface's server side (docs/web.md), through the Flask test client: the pages,
``RESPONSEFORMAT=html``, the browser renderings of error, VOSI and UWS documents (and that
clients keep the XML), JSON 64-bit integers, SODA PNG previews.  The pages in a real
browser are tests/test_web_browser.py."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT

#: what Chromium sends when the user opens a URL (Fetch Metadata, upgrade hint, Accept)
BROWSER = {
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Upgrade-Insecure-Requests": "1",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
}
#: what clients send: Java's URLConnection (TOPCAT, STILTS), python-requests (pyvo, astroquery),
#: and a browser's own fetch() from a page (not a navigation)
CLIENTS = {
    "java": {"Accept": "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2", "User-Agent": "Java/17"},
    "requests": {"Accept": "*/*", "User-Agent": "python-requests/2.32"},
    "fetch": {"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors", "Accept": "*/*"},
}
EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_pages_render_and_link_the_services(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for needle in (
        "demo.gaia_dr3_g10",
        "/tap",
        "example-select",
        "vendor/codemirror/codemirror.js",
        "cone_gaia_dr3_g10",
    ):
        assert needle in html
    # every example gets a run link that renders HTML (RESPONSEFORMAT=html), and it runs
    runs = [
        u.replace("&amp;", "&").split("localhost", 1)[-1] for u in re.findall(r'class="run-html" href="([^"]+)"', html)
    ]
    examples = json.loads(re.search(r'id="examples-data">(.*?)</script>', html, re.S).group(1))
    assert len(runs) == len(examples) >= 5
    cone = next(u for u, e in zip(runs, examples) if e["key"] == "cone_gaia_dr3_g10")
    answer = client.get(cone).get_data(as_text=True)
    assert "QUERY_STATUS=OK: 100 rows" in answer and answer.count("<tr><td") == 100
    for path in ("/ui/jobs", "/ui/images", "/ui/tables/demo.s82_rrlyrae_epochs"):
        r = client.get(path)
        assert r.status_code == 200 and r.mimetype == "text/html", path
    for path in ("/static/ui.js", "/static/vendor/chartjs/chart.umd.min.js", "/favicon.ico"):
        assert client.get(path).status_code == 200, path


def test_static_files_are_package_data():
    """The pages work from an installed wheel: pyproject ships templates and static files."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gateway"]
    web = ROOT / "gateway" / "web"
    shipped = {p for pat in data for p in (ROOT / "gateway").glob(pat) if p.is_file()}
    needed = {p for p in web.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"}
    assert needed and needed <= shipped, needed - shipped


def test_table_page_lists_columns_keys_and_urls(client):
    html = client.get("/ui/tables/demo.s82_rrlyrae_epochs").get_data(as_text=True)
    meta = pq.read_schema(ROOT / "data" / "demo" / "s82_rrlyrae_epochs.parquet")
    for name in meta.names:
        assert f"<code>{name}</code>" in html
    assert "136,142" in html and "/ui/tables/demo.s82_rrlyrae" in html  # the foreign key's target
    parent = client.get("/ui/tables/demo.s82_rrlyrae").get_data(as_text=True)
    assert "/scs/demo.s82_rrlyrae?" in parent and 'id="cone-form"' in parent
    assert "demo.s82_rrlyrae_epochs" in parent  # referenced by
    missing = client.get("/ui/tables/demo.nope", headers=BROWSER)
    assert missing.status_code == 404 and "no table demo.nope" in missing.get_data(as_text=True)


def test_schema_json_is_tap_schema(client):
    d = client.get("/ui/schema.json").json
    tables = {t["name"]: t for a in d["archives"] for s in a["schemas"] for t in s["tables"]}
    rows = client.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "RESPONSEFORMAT": "json",
            "QUERY": "SELECT table_name, column_name, unit, ucd FROM TAP_SCHEMA.columns",
        },
    ).json["data"]
    assert {(t, c["name"], c["unit"], c["ucd"]) for t, tt in tables.items() for c in tt["columns"]} == {
        tuple(r) for r in rows
    }


def test_html_format_escapes_the_query_and_the_values(client):
    q = f"SELECT TOP 3 source_id, ra, '{EVIL}' AS x FROM demo.gaia_dr3_g10 ORDER BY source_id -- {EVIL}"
    for r in (
        client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": "html"}),
        client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": "text/html"}),
    ):
        html = r.get_data(as_text=True)
        assert r.status_code == 200 and r.mimetype == "text/html"
        assert (
            "<script>" not in html and "<img" not in html and html.count("&lt;script&gt;") == 5
        )  # 2 in the query, 3 cells
        assert "QUERY_STATUS=OK: 3 rows" in html and "ra <span class='unit'>[deg]</span>" in html
        gaia = pq.read_table(ROOT / "data" / "demo" / "gaia_dr3_g10.parquet").sort_by("source_id")
        ids = re.findall(r"<tr><td class='n'>(-?\d+)</td>", html)
        assert ids == [str(s) for s in gaia.column("source_id").to_pylist()[:3]]


def test_html_format_says_when_the_result_is_truncated(client):
    r = client.post(
        "/tap/sync",
        data={"LANG": "ADQL", "QUERY": "SELECT ra FROM demo.sdss_stars", "MAXREC": 7, "RESPONSEFORMAT": "html"},
    )
    html = r.get_data(as_text=True)
    assert html.count("<tr><td") == 7 and "QUERY_STATUS=OVERFLOW" in html and "not complete" in html


def test_scs_answers_html(client):
    r = client.get(
        "/scs/demo.s82_rrlyrae", query_string={"RA": 55.6666, "DEC": -0.0028, "SR": 1, "RESPONSEFORMAT": "html"}
    )
    t = pq.read_table(ROOT / "data" / "demo" / "s82_rrlyrae.parquet").to_pandas()
    ra, dec = np.radians(t.ra), np.radians(t.dec)
    ra0, dec0 = np.radians(55.6666), np.radians(-0.0028)
    d = np.degrees(
        np.arccos(np.clip(np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0), -1, 1))
    )
    assert r.status_code == 200 and r.get_data(as_text=True).count("<tr><td") == int((d <= 1).sum()) > 0


def test_json_writes_64_bit_integers_as_strings(client):
    """Gaia source_ids above 2**53 survive JavaScript's JSON.parse: written as strings and
    declared so in the metadata; other numbers stay numbers."""
    r = client.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "RESPONSEFORMAT": "json",
            "QUERY": "SELECT TOP 50 source_id, ra FROM demo.gaia_dr3_g10 ORDER BY source_id DESC",
        },
    )
    d = json.loads(r.data)
    meta = {m["name"]: m for m in d["metadata"]}
    assert meta["source_id"]["json_type"] == "string" and "json_type" not in meta["ra"]
    gaia = pq.read_table(ROOT / "data" / "demo" / "gaia_dr3_g10.parquet").sort_by([("source_id", "descending")])
    truth = gaia.column("source_id").to_pylist()[:50]
    assert [row[0] for row in d["data"]] == [str(s) for s in truth] and max(truth) > 2**53
    assert all(isinstance(row[1], float) for row in d["data"])


@pytest.mark.parametrize("client_kind", sorted(CLIENTS))
def test_clients_keep_the_xml(client, client_kind):
    """TOPCAT's Accept lists text/html first, pyvo's is */*, a page's fetch() is not a
    navigation: all get the XML documents and the VOTable errors, never HTML."""
    h = CLIENTS[client_kind]
    assert client.get("/tap/tables", headers=h).mimetype == "text/xml"
    assert client.get("/tap/capabilities", headers=h).mimetype == "text/xml"
    err = client.get("/tap/sync?LANG=ADQL&QUERY=SELEC", headers=h)
    assert err.status_code == 400 and err.mimetype == "application/x-votable+xml"
    assert client.get("/soda/sync", headers=h).mimetype == "text/plain"


def test_browsers_get_pages_for_errors_vosi_and_uws(client):
    r = client.get("/tap/sync?LANG=ADQL&QUERY=SELECT+ra+FRM+x", headers=BROWSER)
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and r.mimetype == "text/html" and "line 1, column" in html
    for path, status, message in (
        ("/nothing/here", 404, "no resource /nothing/here"),
        ("/scs/demo.sdss_stars?RA=x&DEC=0&SR=1", 400, "RA must be a number"),
        ("/soda/sync", 400, "UsageError: ID is required"),
        (f"/tap/sync?LANG=ADQL&QUERY={EVIL}", 400, "(line 1, column "),
    ):
        r = client.get(path, headers=BROWSER)
        html = r.get_data(as_text=True)
        assert r.status_code == status and r.mimetype == "text/html" and message in html, path
        assert "<script>alert" not in html and "Traceback" not in html
    tables = client.get("/tap/tables", headers=BROWSER)
    assert tables.mimetype == "text/html" and "VOSI tables" in tables.get_data(as_text=True)
    shown = set(re.findall(r"demo\.\w+", tables.get_data(as_text=True)))
    xml = client.get("/tap/tables").get_data(as_text=True)
    assert shown == set(re.findall(r"demo\.\w+", xml))
    job = client.post("/tap/async", data={"LANG": "ADQL", "QUERY": f"SELECT TOP 1 ra FROM demo.gaia_dr3_g10 -- {EVIL}"})
    page = client.get(job.headers["Location"], headers=BROWSER).get_data(as_text=True)
    assert "UWS job" in page and "PENDING" in page and "&lt;script&gt;" in page and "<script>alert" not in page
    assert "UWS job list" in client.get("/tap/async", headers=BROWSER).get_data(as_text=True)
    client.post(job.headers["Location"], data={"ACTION": "DELETE"})


def test_completed_job_reports_its_rows(client):
    import time

    r = client.post(
        "/tap/async",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT ra FROM demo.s82_rrlyrae WHERE dec > 0",
            "PHASE": "RUN",
            "RESPONSEFORMAT": "json",
        },
    )
    job = r.headers["Location"]
    for _ in range(200):
        if client.get(job + "/phase").get_data(as_text=True) == "COMPLETED":
            break
        time.sleep(0.05)
    doc = ET.fromstring(client.get(job).data)
    info = json.loads(doc.find("{http://www.ivoa.net/xml/UWS/v1.0}jobInfo/{urn:vo-gateway:jobinfo}info").text)
    t = pq.read_table(ROOT / "data" / "demo" / "s82_rrlyrae.parquet").to_pandas()
    assert info["rows"] == int((t.dec > 0).sum()) == len(client.get(job + "/results/result").json["data"])
    client.post(job, data={"ACTION": "DELETE"})


def test_soda_png_preview_is_the_cutout(client):
    """RESPONSEFORMAT=image/png: the FITS cutout's pixels, asinh-stretched, north up (the
    brightest FITS pixel lands on the mirrored PNG row), PNG of the cutout's size."""
    from astropy.io import fits
    from PIL import Image

    q = {"ID": "ivo://vo-gateway/demo?frame-r-004510-4-0030", "CIRCLE": "200.4537 36.808 0.02"}
    cut = client.get("/soda/sync", query_string=q)
    png = client.get("/soda/sync", query_string={**q, "RESPONSEFORMAT": "image/png"})
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.headers["Content-Disposition"].endswith('.png"')
    data = fits.getdata(io.BytesIO(cut.data)).astype(float)
    img = np.asarray(Image.open(io.BytesIO(png.data)))
    assert img.shape == data.shape and img.dtype == np.uint8
    y, x = np.unravel_index(np.nanargmax(data), data.shape)
    assert img[data.shape[0] - 1 - y, x] == 255
    assert np.median(img) < 64  # the sky is dark: black at its median
    assert client.get("/soda/sync", query_string={**q, "RESPONSEFORMAT": "png"}).data == png.data
    bad = client.get("/soda/sync", query_string={**q, "RESPONSEFORMAT": "image/jpeg"})
    assert bad.status_code == 400 and bad.get_data(as_text=True).startswith("UsageError: unsupported RESPONSEFORMAT")
