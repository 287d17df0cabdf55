"""Every hook in gateway/hookspecs.py is documented in docs/plugin_hooks.md with its exact
signature; README commands exist."""

import inspect
import re

from gateway import hookspecs
from tests.conftest import ROOT


def test_every_hook_documented():
    doc = (ROOT / "docs/plugin_hooks.md").read_text()
    documented = dict(re.findall(r"^## (gateway_\w+)\((.*)\)$", doc, re.M))
    hooks = {n: f for n, f in vars(hookspecs).items() if n.startswith("gateway_") and callable(f)}
    assert hooks, "no hooks found"
    for name, fn in hooks.items():
        assert name in documented, f"{name} is not documented in docs/plugin_hooks.md"
        assert documented[name] == ", ".join(inspect.signature(fn).parameters), f"{name}: signature differs"
        assert fn.__doc__ and len(fn.__doc__) > 40, f"{name} has no docstring"
    assert set(documented) == set(hooks), "docs describe hooks that do not exist"


def test_readme_commands():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("pip install -e", "vo-gateway serve", "python -m pytest", "/tap"):
        assert cmd in readme


def test_adql_page_example_runs(client):
    """The example query of docs/adql.md runs as written and answers rows."""
    import numpy as np
    import pyarrow.parquet as pq

    from gateway.testing import parse_votable

    doc = (ROOT / "docs/adql.md").read_text()
    (query,) = re.findall(r"```sql\n(.*?)```", doc, re.S)
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query})
    t, status, _ = parse_votable(r.data)
    assert r.status_code == 200 and status == "OK" and t.colnames == ["objid", "gr", "ra_arcmin"]
    s = pq.read_table(ROOT / "data/demo/sdss_stars.parquet").to_pandas()
    d = np.degrees(
        2
        * np.arcsin(
            np.sqrt(
                np.sin(np.radians(s.dec - 36.9) / 2) ** 2
                + np.cos(np.radians(s.dec)) * np.cos(np.radians(36.9)) * np.sin(np.radians(s.ra - 200.0) / 2) ** 2
            )
        )
    )
    want = s[d <= 0.3].assign(gr=lambda x: x.psfmag_g - x.psfmag_r).dropna(subset=["gr"])
    want = want.sort_values("gr", ascending=False).head(10)
    assert [int(v) for v in t["objid"]] == [int(v) for v in want.objid]
    assert np.allclose(t["ra_arcmin"], want.ra * 60)


def _doc_archive():
    """The example archive of docs/writing_an_archive.md, as the page gives it."""
    import textwrap

    doc = (ROOT / "docs/writing_an_archive.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    namespace: dict = {}
    exec(compile(textwrap.dedent(block), "docs/writing_an_archive.md", "exec"), namespace)
    return namespace["MyRest"]


def test_writing_an_archive_example_answers_pyvo(tmp_path):
    """The REST archive written in docs/writing_an_archive.md, served by a gateway over an
    emulator of the API it describes, answers pyvo's TAP (a cone with a condition the gateway
    evaluates) and SCS, equal to numpy over the emulator's rows."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyvo
    from flask import Flask, Response
    from flask import request as rq

    from gateway.hookspecs import hookimpl
    from gateway.sky import separation
    from gateway.testing import make_app, serve

    rng = np.random.default_rng(7)
    n = 3000
    cat = pa.table(
        {
            "source_id": np.arange(1, n + 1),
            "ra": 150 + rng.uniform(-1, 1, n),
            "dec": 2 + rng.uniform(-1, 1, n),
            "mag": rng.uniform(14, 22, n).astype(np.float32),
        }
    )
    emu = Flask("myrest-emulator")

    @emu.route("/cone")
    def cone():
        a = {k: rq.args[k] for k in ("ra", "dec", "radius")}
        keep = separation(np.asarray(cat["ra"]), np.asarray(cat["dec"]), float(a["ra"]), float(a["dec"]))
        keep = keep <= float(a["radius"])
        if "source_id" in rq.args:
            keep &= np.asarray(cat["source_id"]) == int(rq.args["source_id"])
        out = io.BytesIO()
        pcsv.write_csv(cat.filter(pa.array(keep)).select(rq.args["columns"].split(",")), out)
        return Response(out.getvalue(), mimetype="text/csv")

    archive = _doc_archive()

    class Plugin:
        @hookimpl
        def gateway_register_archives(self):
            return [archive]

    with serve(emu) as base:
        app = make_app(
            {
                "archives": {"mine": {"kind": "myrest", "base_url": base}},
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            plugins=[Plugin()],
        )
        try:
            with serve(app) as url:
                t = (
                    pyvo.dal.TAPService(url + "/tap")
                    .run_sync(
                        "SELECT source_id, mag FROM myrest.sources WHERE mag < 18 "
                        "AND 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.2, 2.1, 0.3)) ORDER BY source_id"
                    )
                    .to_table()
                )
                scs = pyvo.dal.SCSService(url + "/scs/myrest.sources").search(pos=(150.2, 2.1), radius=0.3).to_table()
        finally:
            app.extensions["vo_gateway"].jobs.close()
    d = separation(np.asarray(cat["ra"]), np.asarray(cat["dec"]), 150.2, 2.1)
    ids = np.asarray(cat["source_id"])
    want = ids[(d <= 0.3) & (np.asarray(cat["mag"]) < 18)]
    assert [int(v) for v in t["source_id"]] == sorted(want.tolist()) and len(want) > 10
    assert sorted(int(v) for v in scs["source_id"]) == sorted(ids[d <= 0.3].tolist())


def test_readme_pyvo_examples_return_rows(live_url):
    """The README's first pyvo block, run as written against a live gateway on the demo archive
    (its URL swapped for the test server's): every query it shows answers rows, and the
    upload crossmatch finds both targets' stars (numpy over the Gaia source)."""
    import numpy as np
    import pyarrow.parquet as pq

    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "TAP_UPLOAD.mine AS m" in b)
    names: dict = {}
    exec(block.replace("http://127.0.0.1:8000", live_url), names)  # noqa: S102 - the README's own code
    for name in ("stars", "curve", "matches", "cone", "images", "links"):
        assert len(names[name]) > 0, f"README example {name!r} returned no rows"
    gaia = pq.read_table(ROOT / "data/demo/gaia_dr3_g10.parquet").to_pandas()
    expected = set()
    for tname, ra, dec in zip(names["mine"]["name"], names["mine"]["ra"], names["mine"]["dec"]):
        cosd = np.sin(np.radians(gaia.dec)) * np.sin(np.radians(dec)) + np.cos(np.radians(gaia.dec)) * np.cos(
            np.radians(dec)
        ) * np.cos(np.radians(gaia.ra - ra))
        near = gaia.source_id[np.degrees(np.arccos(np.clip(cosd, -1, 1))) * 3600 < 5]
        expected |= {(str(tname), int(s)) for s in near}
    got = {(str(n), int(s)) for n, s in zip(names["matches"]["name"], names["matches"]["source_id"])}
    assert got == expected and {n for n, _ in got} == {"a", "b"}
