"""The web interface in a real browser: Debian's headless Chromium driven by selenium against
a live ``vo-gateway serve`` (docs/web.md).  Each step of the issue is a test; each leaves a
screenshot in ``var/screenshots/`` (kept by CI as an artefact), and each checks from the
browser's own request log that the page asked nothing of any other origin.

Rows are checked against numpy over the embedded tables' source Parquet files, not only
counted."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

from tests.conftest import ROOT, _need

pytestmark = pytest.mark.browser

SHOTS = ROOT / "var" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
GAIA = ROOT / "data" / "demo" / "gaia_dr3_g10.parquet"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    _need(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and shutil.which("chromium") is not None,
        "chromium and chromium-driver",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-quic",
        "--enable-unsafe-swiftshader",  # WebGL2 for Aladin Lite without a GPU
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


@pytest.fixture
def page(driver, live_url, request):
    """The browser with its request log emptied; after the test: a screenshot, the check that
    every network request went to the gateway's own origin, and that no script
    failed and no answer was a 5xx."""
    driver.get_log("performance")
    yield driver
    driver.save_screenshot(str(SHOTS / f"{request.node.name}.png"))
    origin = urlparse(live_url)
    network = network_urls(driver)
    assert any(u.startswith(live_url) for u in network), "no request logged: the check below would prove nothing"
    foreign = [u for u in network if urlparse(u)[:2] != origin[:2]]
    assert foreign == [], f"requests outside {live_url}: {foreign}"
    logged = driver.get_log("browser")  # JavaScript errors, and failed loads (4xx: the error tests' own)
    errors = [
        e for e in logged if e["level"] == "SEVERE" and "the server responded with a status of 4" not in e["message"]
    ]
    assert errors == [], errors


def network_urls(driver) -> list[str]:
    """The URLs the browser requested since the log was last read, network ones only: data:,
    blob: and Chromium's own chrome:// resources never leave the browser."""
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            out.append(msg["params"]["request"]["url"])
    return [u for u in out if urlparse(u).scheme in ("http", "https", "ws", "wss", "ftp")]


def wait(d, until, timeout=30, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout, poll_frequency=0.05).until(lambda _: until(), message=f"waiting for {what}")


def by_css(d, css):
    from selenium.webdriver.common.by import By

    return d.find_elements(By.CSS_SELECTOR, css)


def by_id(d, id_):
    from selenium.webdriver.common.by import By

    return d.find_element(By.ID, id_)


def open_query_page(d, url, query: str | None = None):
    d.get(url + "/")
    wait(d, lambda: by_css(d, "#schema-tree details.table"), what="the schema browser")
    if query is not None:
        d.execute_script("vogEditor.setValue(arguments[0])", query)


def run(d, timeout=60):
    by_id(d, "run").click()
    wait(
        d,
        lambda: (
            by_id(d, "run").is_enabled() and (by_id(d, "result").is_displayed() or by_id(d, "error").is_displayed())
        ),
        timeout,
        "the result",
    )


def table_column(d, name: str) -> list[str]:
    heads = [th.get_attribute("data-column") for th in by_css(d, "#result-table thead th")]
    i = heads.index(name)
    return [tr.find_elements("css selector", "td")[i].text for tr in by_css(d, "#result-table tbody tr")]


def angsep(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1, h))))


@pytest.fixture(scope="module")
def gaia():
    return pq.read_table(GAIA, columns=["source_id", "ra", "dec", "phot_g_mean_mag"]).to_pandas()


def cone_truth(gaia, example: str, n=100):
    """The ``n`` nearest rows of the example's cone, by numpy over the Parquet source."""
    import re

    ra, dec, r = map(float, re.search(r"CIRCLE\('ICRS', ([-\d.]+), ([-\d.]+), ([\d.]+)\)", example).groups())
    d = angsep(gaia.ra.to_numpy(), gaia.dec.to_numpy(), ra, dec)
    inside = gaia[d <= r].assign(dist=d[d <= r]).sort_values("dist")
    return inside.head(n)


def test_gaia_cone_example_runs_and_shows_100_rows(page, live_url, gaia):
    """Open the page, pick the Gaia cone example, run it: 100 rows in the table, the very rows
    numpy finds nearest the example's position, with units in the header."""
    from selenium.webdriver.support.ui import Select

    open_query_page(page, live_url)
    Select(by_id(page, "example-select")).select_by_value("cone_gaia_dr3_g10")
    query = page.execute_script("return vogEditor.getValue()")
    assert "demo.gaia_dr3_g10" in query and "CONTAINS" in query
    run(page)
    assert not by_id(page, "error").is_displayed(), by_id(page, "error").text
    rows = by_css(page, "#result-table tbody tr")
    assert len(rows) == 100
    truth = cone_truth(gaia, query)
    assert len(truth) == 100  # the example's radius holds at least 100 stars
    assert table_column(page, "source_id") == [str(s) for s in truth.source_id]  # exact: 64-bit ids as strings
    heads = {th.get_attribute("data-column"): th.text for th in by_css(page, "#result-table thead th")}
    assert heads["ra"] == "ra [deg]" and heads["phot_g_mean_mag"] == "phot_g_mean_mag [mag]"
    assert "100 rows" in by_id(page, "result-summary").text and "QUERY_STATUS=OK" in by_id(page, "result-summary").text
    links = {a.text: a.get_attribute("href") for a in by_css(page, "a.download")}
    assert {"votable", "csv", "fits", "json", "html"} <= set(links)
    csv = requests.get(links["csv"], timeout=30)
    assert csv.ok and csv.text.splitlines()[1].split(",")[0] == str(truth.source_id.iloc[0])


def test_sort_by_magnitude(page, live_url, gaia):
    """A click on the magnitude header sorts the rows ascending, a second click descending;
    the row set stays the cone's."""
    from selenium.webdriver.support.ui import Select

    open_query_page(page, live_url)
    Select(by_id(page, "example-select")).select_by_value("cone_gaia_dr3_g10")
    truth = cone_truth(gaia, page.execute_script("return vogEditor.getValue()"))
    run(page)
    head = by_css(page, "#result-table thead th[data-column=phot_g_mean_mag]")[0]
    head.click()
    mags = [float(v) for v in table_column(page, "phot_g_mean_mag")]
    assert mags == sorted(truth.phot_g_mean_mag.tolist()) and "asc" in head.get_attribute("class")
    head.click()
    mags = [float(v) for v in table_column(page, "phot_g_mean_mag")]
    assert mags == sorted(truth.phot_g_mean_mag.tolist(), reverse=True)
    ids = table_column(page, "source_id")
    assert sorted(ids) == sorted(str(s) for s in truth.source_id)


def test_jobs_page_async_query_reaches_completed(page, live_url, gaia):
    """Submit an async query on the jobs page and watch it reach COMPLETED, with its rows;
    its result opens; delete removes it."""
    page.get(live_url + "/ui/jobs")
    by_css(page, "details.submit summary")[0].click()
    box = by_id(page, "job-query")
    box.clear()
    box.send_keys("SELECT source_id, phot_g_mean_mag FROM demo.gaia_dr3_g10 WHERE phot_g_mean_mag < 6")
    by_id(page, "job-submit").click()
    wait(page, lambda: "submitted" in by_id(page, "job-status").text, what="the submission")
    job = by_id(page, "job-status").text.split()[-1]
    row = f"#jobs-table tr[data-job='{job}']"

    def completed():  # one script: the rows are replaced while they are read
        return (
            page.execute_script("const tr = document.querySelector(arguments[0]); return tr && tr.dataset.phase", row)
            == "COMPLETED"
        )

    wait(page, completed, 60, "COMPLETED")
    # the table is re-rendered every few seconds: read the row and act on it in one script
    rows, href = page.execute_script(
        "const tr = document.querySelector(arguments[0]);"
        "return [tr.querySelector('td.rows').textContent, tr.querySelector('a.result').href];",
        row,
    )
    expected = int((gaia.phot_g_mean_mag < 6).sum())
    assert rows == str(expected)
    result = requests.get(href, timeout=30).json()
    assert sorted(int(r[0]) for r in result["data"]) == sorted(gaia.source_id[gaia.phot_g_mean_mag < 6].tolist())
    page.execute_script("document.querySelector(arguments[0] + ' button.delete').click()", row)
    wait(page, lambda: not by_css(page, row), what="the deleted job to go")
    assert requests.get(f"{live_url}/tap/async/{job}", timeout=10).status_code == 404


def test_plot_two_columns(page, live_url, gaia):
    """A colour-magnitude diagram: scatter of two chosen columns (every finite point drawn,
    magnitudes inverted), then a histogram of one; the sky plot has RA increasing leftwards."""
    from selenium.webdriver.support.ui import Select

    q = (
        "SELECT TOP 3000 source_id, ra, dec, phot_bp_mean_mag - phot_rp_mean_mag AS bp_rp, phot_g_mean_mag\n"
        "FROM demo.gaia_dr3_g10 ORDER BY source_id"
    )
    open_query_page(page, live_url, q)
    run(page)
    chart = "Chart.getChart(document.getElementById('plot-canvas'))"
    assert page.execute_script(f"return {chart}.options.scales.x.reverse") is True  # sky first: ra, dec
    Select(by_id(page, "plot-kind")).select_by_value("scatter")
    Select(by_id(page, "plot-x")).select_by_visible_text("bp_rp")
    Select(by_id(page, "plot-y")).select_by_visible_text("phot_g_mean_mag [mag]")
    assert by_id(page, "plot-invert").is_selected()
    by_id(page, "plot").click()
    pts = page.execute_script(f"return {chart}.data.datasets[0].data")
    cmd = pq.read_table(GAIA).to_pandas().sort_values("source_id").head(3000)
    colour = (cmd.phot_bp_mean_mag - cmd.phot_rp_mean_mag).to_numpy()
    finite = np.isfinite(colour) & np.isfinite(cmd.phot_g_mean_mag.to_numpy())
    assert len(pts) == int(finite.sum())
    assert np.allclose([p["x"] for p in pts], colour[finite]) and np.allclose(
        [p["y"] for p in pts], cmd.phot_g_mean_mag.to_numpy()[finite]
    )
    assert page.execute_script(f"return {chart}.options.scales.y.reverse") is True
    Select(by_id(page, "plot-kind")).select_by_value("histogram")
    by_id(page, "plot").click()
    counts = page.execute_script(f"return {chart}.data.datasets[0].data")
    assert sum(counts) == int(np.isfinite(colour).sum())


def test_light_curve_plot(page, live_url):
    """A time series (an RR Lyrae's epochs) is plotted magnitude against MJD with the y axis
    inverted, one series per band."""
    epochs = pq.read_table(ROOT / "data" / "demo" / "s82_rrlyrae_epochs.parquet").to_pandas()
    star = int(epochs.id.iloc[0])
    open_query_page(page, live_url, f"SELECT mjd, band, mag, mag_err FROM demo.s82_rrlyrae_epochs WHERE id = {star}")
    run(page)
    assert by_id(page, "plot-kind").get_attribute("value") == "lightcurve"
    chart = "Chart.getChart(document.getElementById('plot-canvas'))"
    assert page.execute_script(f"return {chart}.options.scales.y.reverse") is True
    series = page.execute_script(f"return {chart}.data.datasets.map(d => [d.label, d.data.length])")
    mine = epochs[(epochs.id == star) & np.isfinite(epochs.mag) & np.isfinite(epochs.mjd)]
    assert sum(n for _, n in series) == len(mine)
    assert sorted(label.split(":")[0] for label, _ in series) == sorted(mine.band.unique())


def test_table_page(page, live_url):
    """A table page: metadata, columns sortable by name, foreign keys, sample rows through TAP,
    and a cone form whose HTML answer is a table."""
    page.get(live_url + "/ui/tables/demo.s82_rrlyrae_epochs")
    wait(page, lambda: len(by_css(page, "#sample tbody tr")) == 5, what="the sample rows")
    assert by_id(page, "nrows").text == "136,142"
    names = [tr.find_element("css selector", "td").text for tr in by_css(page, "#columns tbody tr")]
    by_css(page, "#columns thead th")[0].click()
    assert [tr.find_element("css selector", "td").text for tr in by_css(page, "#columns tbody tr")] == sorted(names)
    assert by_css(page, "a[href$='/ui/tables/demo.s82_rrlyrae']")
    page.get(live_url + "/ui/tables/demo.s82_rrlyrae")
    assert by_id(page, "scs-url").text.endswith("/scs/demo.s82_rrlyrae?")
    form = by_id(page, "cone-form")
    form.find_element("name", "RA").send_keys("55.6666")
    form.find_element("name", "DEC").send_keys("-0.0028")
    form.find_element("name", "SR").clear()
    form.find_element("name", "SR").send_keys("1")
    page.execute_script("arguments[0].target = '_self'", form)
    form.find_element("css selector", "button[type=submit]").click()
    wait(page, lambda: by_css(page, "p.status"), what="the cone search answer")
    assert "QUERY_STATUS=OK" in by_css(page, "p.status")[0].text and by_css(page, "tbody tr")


def test_cutout_preview(page, live_url):
    """The images page finds the SDSS frames at the first image's centre (SIA 2.0) and shows
    a PNG preview of each one's SODA cutout."""
    page.get(live_url + "/ui/images")
    wait(page, lambda: "images" in by_id(page, "img-status").text, what="the SIA answer")
    ra, dec, r = (by_id(page, i).get_attribute("value") for i in ("img-ra", "img-dec", "img-r"))
    sia = requests.get(
        f"{live_url}/sia/query", params={"POS": f"CIRCLE {ra} {dec} {r}", "RESPONSEFORMAT": "json"}, timeout=30
    ).json()
    assert len(sia["data"]) >= 1
    wait(
        page,
        lambda: page.execute_script(
            "return [...document.querySelectorAll('#thumbs img')].every(i => i.complete && i.naturalWidth > 0)"
        ),
        what="the previews",
    )
    imgs = by_css(page, "#thumbs img")
    assert len(imgs) == len(sia["data"])
    src = imgs[0].get_attribute("src")
    assert "RESPONSEFORMAT=image%2Fpng" in src
    png = requests.get(src, timeout=30)
    assert png.headers["Content-Type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_adql_error_is_marked_in_the_editor(page, live_url):
    """A syntax error: the message with its line and column, and the place marked."""
    open_query_page(page, live_url, "SELECT TOP 5 ra\nFROM demo.gaia_dr3_g10\nWHERE dec >> 5")
    run(page)
    err = by_id(page, "error")
    assert err.is_displayed() and "line 3" in err.text
    marks = page.execute_script("return vogEditor.getAllMarks().map(m => m.find())")
    assert len(marks) == 1 and marks[0]["from"]["line"] == 2
    assert by_css(page, ".cm-adql-error")


def test_nothing_typed_or_stored_runs_as_html(page, live_url):
    """``<script>`` and an ``onerror`` image, in a query and in a column value, show as text."""
    evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    open_query_page(page, live_url, f"SELECT TOP 2 '{evil}' AS x, ra FROM demo.gaia_dr3_g10")
    run(page)
    assert table_column(page, "x") == [evil, evil]
    open_query_page(page, live_url, f"SELECT {evil} FROM demo.gaia_dr3_g10")
    run(page)
    assert by_id(page, "error").is_displayed()
    page.get(
        live_url
        + "/tap/sync?LANG=ADQL&RESPONSEFORMAT=html&QUERY="
        + requests.utils.quote(f"SELECT TOP 1 '{evil}' AS x FROM demo.gaia_dr3_g10")
    )
    assert evil in page.find_element("css selector", "tbody td").text
    page.get(live_url + "/tap/sync?LANG=ADQL&QUERY=" + requests.utils.quote(f"SELECT {evil}"))
    assert by_id(page, "error-message").text
    assert page.execute_script("return window.pwned === undefined")


def test_10000_rows_page_without_filling_the_dom(page, live_url):
    """10,000 rows: one page of rows in the DOM, the pager walks the rest."""
    open_query_page(page, live_url, "SELECT TOP 10000 source_id, ra, dec FROM demo.gaia_dr3_g10 ORDER BY source_id")
    run(page)
    assert len(by_css(page, "#result-table tbody tr")) == 100
    assert page.execute_script("return document.querySelectorAll('td').length") < 1000
    assert "of 10,000" in by_id(page, "page-info").text
    first = table_column(page, "source_id")[0]
    by_id(page, "next").click()
    assert table_column(page, "source_id")[0] != first and "rows 101–200" in by_id(page, "page-info").text


def test_protocol_urls_are_pages_for_a_browser(page, live_url):
    """An error document, VOSI tables and a UWS job, opened in the browser, are readable
    pages (not "This page isn't working", not raw XML); a client still gets the XML."""
    page.get(live_url + "/tap/sync?LANG=ADQL&QUERY=SELEC")
    assert "line 1, column 1" in by_id(page, "error-message").text and "400" in page.title
    page.get(live_url + "/tap/tables")
    assert "VOSI tables" in page.title and "demo.gaia_dr3_g10" in page.page_source
    page.get(live_url + "/tap/capabilities")
    assert "VOSI capabilities" in page.title
    r = requests.post(
        f"{live_url}/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM demo.gaia_dr3_g10"}, timeout=30
    )
    page.get(r.url)
    assert "UWS job" in page.title and "PENDING" in page.page_source
    assert requests.get(r.url, timeout=10).headers["Content-Type"].startswith("text/xml")
    requests.post(r.url, data={"ACTION": "DELETE"}, timeout=10)


@pytest.fixture(scope="module")
def hips_server():
    from gateway.testing import serve
    from tests.emulators.hips import make_app

    app = make_app()
    with serve(app) as url:
        yield url + "/hips", app.config["requests"]


def sky_gateway(tmp_path, hips_url: str):
    from gateway.app import create_app
    from gateway.testing import serve
    from tests.conftest import live_config

    return serve(create_app(live_config(tmp_path, web={"hips_url": hips_url})))


def test_sky_view_over_a_configured_hips_server(driver, hips_server, tmp_path):
    """With ``web.hips_url`` set, a result with positions is drawn by Aladin Lite over that
    HiPS: the survey's tiles come from the HiPS server, every row is a source, and no request
    goes anywhere but the gateway and the configured HiPS server."""
    from selenium.webdriver.support.ui import Select

    hips, seen = hips_server
    with sky_gateway(tmp_path, hips) as url:
        driver.get_log("performance")
        open_query_page(driver, url)
        Select(by_id(driver, "example-select")).select_by_value("cone_gaia_dr3_g10")
        run(driver)
        wait(driver, lambda: "positions" in by_id(driver, "aladin-status").text, 60, "the sky view")
        assert by_id(driver, "aladin-status").text == "100 positions"
        sources = driver.execute_script("return vogAladin.catalog.getSources().map(s => [s.ra, s.dec])")
        rows = driver.execute_script("return window.vogPositions")
        assert sources == [list(p) for p in zip(rows["ra"], rows["dec"])] and len(sources) == 100
        wait(driver, lambda: any("/Norder" in p for p in seen), 30, "HiPS tiles")
        time.sleep(1)  # let the tiles just fetched be drawn before the picture
        by_id(driver, "aladin-box").screenshot(str(SHOTS / "test_sky_view_over_a_configured_hips_server.png"))
        allowed = {urlparse(url)[:2], urlparse(hips)[:2]}
        foreign = [u for u in network_urls(driver) if urlparse(u)[:2] not in allowed]
        assert foreign == [] and "/hips/properties" in seen


def test_sky_view_unreachable_breaks_nothing(driver, tmp_path):
    """A HiPS server that does not answer: the page says the sky view is not available,
    the result table is there, and Aladin Lite never falls back to a survey elsewhere."""
    from gateway.testing import free_port

    dead = f"http://127.0.0.1:{free_port()}/hips"
    with sky_gateway(tmp_path, dead) as url:
        driver.get_log("performance")
        open_query_page(driver, url, "SELECT TOP 20 source_id, ra, dec FROM demo.gaia_dr3_g10 ORDER BY source_id")
        run(driver)
        assert len(by_css(driver, "#result-table tbody tr")) == 20
        wait(driver, lambda: "not available" in by_id(driver, "aladin-status").text, 30, "the note")
        allowed = {urlparse(url)[:2], urlparse(dead)[:2]}
        assert [u for u in network_urls(driver) if urlparse(u)[:2] not in allowed] == []
    driver.get_log("browser")  # the refused connection is logged by the browser: expected here
