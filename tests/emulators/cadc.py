"""A faithful loopback emulation of CADC's TAP service ``argus``, login and caom2ops
(docs/upstreams.md §4), serving the real recorded responses in tests/fixtures/cadc:

* ``/argus/capabilities`` — the real capabilities, hosts rewritten to this server;
* ``/argus/tables`` — a VOSI tableset of ``ivoa.ObsCore`` whose columns are the FIELDs of the
  real CADC ObsCore answer; ``/argus/availability``;
* ``/argus/sync`` — ADQL on ``ivoa.ObsCore`` evaluated over the real recorded row(s) (DuckDB;
  geometry is answered with CADC's error text for what the emulation cannot evaluate);
  answers are VOTable TABLEDATA with ``QUERY_STATUS``; errors are error VOTables;
* ``/argus/async`` — UWS 1.1 jobs (in memory; the query runs when RUN is posted), documents
  written with the gateway's own UWS renderer;
* ``/ac/login`` — ``username``/``password`` form → the ``CADC_SSO`` token as text/plain, 401 otherwise;
* ``/sia2/query`` — the real SIA 2.0 (ObsCore) answer, parameters recorded;
* ``/caom2ops/datalink`` and ``/caom2ops/sync`` — the real DataLink document and SODA cutout.

``requests`` on the app object records (path, cookies) of every request for the tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import duckdb
import sqlglot
from flask import Flask, Response, request

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "cadc"
REAL_HOST = "https://www.cadc-ccda.hia-iha.nrc-cnrc.gc.ca"
VOT = "application/x-votable+xml"


def _obscore():
    from astropy.io.votable import parse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse(str(FIX / "sia2_obscore_query_result.xml")).get_first_table()


def error_votable(msg: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">'
        f'<RESOURCE type="results"><INFO name="QUERY_STATUS" value="ERROR">{escape(msg)}</INFO></RESOURCE></VOTABLE>'
    )
    return Response(body, 400, mimetype=VOT)


def cadc_app(users: dict[str, str] | None = None) -> Flask:
    app = Flask("cadc-emulator")
    users = users or {}
    tokens: dict[str, str] = {}
    app.requests = []  # type: ignore[attr-defined]
    tab = _obscore()
    db = duckdb.connect()
    db.execute("CREATE SCHEMA ivoa")
    db.register("obscore_rows", tab.to_table(use_names_over_ids=True).to_pandas())
    db.execute("CREATE TABLE ivoa.ObsCore AS SELECT * FROM obscore_rows")

    @app.before_request
    def record():
        app.requests.append((request.path, dict(request.cookies), request.headers.get("Authorization")))

    def here(text: str) -> str:
        return text.replace(REAL_HOST, request.host_url.rstrip("/"))

    @app.route("/argus/capabilities")
    def capabilities():
        return Response(here((FIX / "argus_tap_capabilities.xml").read_text()), mimetype="text/xml")

    @app.route("/argus/availability")
    def availability():
        return Response(
            '<?xml version="1.0"?><vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
            "<vosi:available>true</vosi:available></vosi:availability>",
            mimetype="text/xml",
        )

    @app.route("/argus/tables")
    def tables():
        cols = []
        for f in tab.fields:
            size = f' arraysize="{f.arraysize}"' if f.arraysize else ""
            xtype = f' extendedType="{f.xtype}"' if f.xtype else ""
            cols.append(
                "<column>"
                + f"<name>{escape(f.name)}</name>"
                + (f"<description>{escape(f.description)}</description>" if f.description else "")
                + (f"<unit>{escape(str(f.unit))}</unit>" if f.unit else "")
                + (f"<ucd>{escape(f.ucd)}</ucd>" if f.ucd else "")
                + (f"<utype>{escape(f.utype)}</utype>" if f.utype else "")
                + f'<dataType xsi:type="vs:VOTableType"{size}{xtype}>{f.datatype}</dataType></column>'
            )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
            'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<schema><name>ivoa</name><description>IVOA data models</description>"
            '<table type="table"><name>ivoa.ObsCore</name><description>ObsCore-1.1 observation table</description>'
            + "".join(cols)
            + "</table></schema></vosi:tableset>"
        )
        return Response(body, mimetype="text/xml")

    jobs: dict = {}

    @app.route("/argus/async", methods=["POST"])
    def create():
        from gateway.uws.job import Job

        job = Job(job_id=f"j{len(jobs)}", service="tap", parameters=[(k.upper(), v) for k, v in request.form.items()])
        jobs[job.job_id] = job
        if request.form.get("PHASE", "").upper() == "RUN":
            run_job(job)
        return Response("", 303, {"Location": f"{request.host_url}argus/async/{job.job_id}"})

    def run_job(job):
        from gateway.uws.job import Result, utcnow

        resp = evaluate({k: v for k, v in job.parameters})
        job.start_time = job.end_time = utcnow()
        if resp.status_code == 200:
            job.phase, job.results = "COMPLETED", [Result("result", VOT, "", len(resp.data), 0)]
            job.result_body = resp.data
        else:
            job.phase, job.error_message = "ERROR", resp.data.decode()

    @app.route("/argus/async/<job_id>", methods=["GET", "DELETE", "POST"])
    def job_doc(job_id):
        from gateway.uws.xml import job_document

        job = jobs.get(job_id)
        if job is None:
            return Response("not found", 404, mimetype="text/plain")
        if request.method == "DELETE" or request.form.get("ACTION", "").upper() == "DELETE":
            del jobs[job_id]
            return Response("", 303, {"Location": f"{request.host_url}argus/async"})
        return Response(job_document(job, f"{request.host_url}argus/async/{job_id}"), mimetype="text/xml")

    @app.route("/argus/async/<job_id>/phase", methods=["POST"])
    def phase(job_id):
        job = jobs[job_id]
        if request.form.get("PHASE", "").upper() == "RUN" and job.phase == "PENDING":
            run_job(job)
        elif request.form.get("PHASE", "").upper() == "ABORT" and job.phase in ("PENDING", "QUEUED", "EXECUTING"):
            job.phase = "ABORTED"
        return Response("", 303, {"Location": f"{request.host_url}argus/async/{job_id}"})

    @app.route("/argus/async/<job_id>/results/result")
    def result(job_id):
        return Response(jobs[job_id].result_body, mimetype=VOT)

    @app.route("/argus/sync", methods=["GET", "POST"])
    def sync():
        return evaluate({k.upper(): v for k, v in request.values.items()})

    def evaluate(p: dict) -> Response:
        if p.get("LANG", "").upper() not in ("ADQL", "ADQL-2.0"):
            return error_votable("unknown LANG")
        q = p.get("QUERY", "")
        if any(g in q.upper() for g in ("CONTAINS(", "INTERSECTS(", "POINT(", "CIRCLE(")):
            return error_votable("emulator: geometry not evaluated")
        try:
            sql = sqlglot.transpile(q, read="tsql", write="duckdb")[0]
            cur = db.cursor()
            res = cur.execute(sql)
            names = [d[0] for d in res.description]
            rows = res.fetchall()
        except (sqlglot.errors.ParseError, duckdb.Error) as e:
            return error_votable(str(e).splitlines()[0])
        maxrec = int(p["MAXREC"]) if p.get("MAXREC") else None
        overflow = maxrec is not None and len(rows) > maxrec
        rows = rows[:maxrec] if maxrec is not None else rows
        fields = {f.name: f for f in tab.fields}
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">',
            '<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/>',
            f'<INFO name="QUERY" value={quoteattr(q)}/><TABLE>',
        ]
        for n in names:
            f = fields.get(n)
            dt, size = (f.datatype, f.arraysize) if f is not None else ("char", "*")
            out.append(f'<FIELD name={quoteattr(n)} datatype="{dt}"' + (f' arraysize="{size}"' if size else "") + "/>")
        out.append("<DATA><TABLEDATA>")
        for r in rows:
            out.append("<TR>" + "".join("<TD/>" if v is None else f"<TD>{escape(_cell(v))}</TD>" for v in r) + "</TR>")
        out.append("</TABLEDATA></DATA></TABLE>")
        if overflow:
            out.append('<INFO name="QUERY_STATUS" value="OVERFLOW"/>')
        out.append("</RESOURCE></VOTABLE>")
        return Response("".join(out), mimetype=VOT)

    @app.route("/ac/login", methods=["POST"])
    def login():
        u, pw = request.form.get("username"), request.form.get("password")
        if not u or users.get(u) != pw:
            return Response("login failed", 401, mimetype="text/plain")
        token = f"token-{u}-{len(tokens)}"
        tokens[token] = u
        return Response(token, mimetype="text/plain")

    @app.route("/sia2/query")
    def sia2():
        app.sia2_params = list(request.args.items(multi=True))  # type: ignore[attr-defined]
        return Response(here((FIX / "sia2_obscore_query_result.xml").read_text()), mimetype=VOT)

    @app.route("/caom2ops/datalink")
    def datalink():
        return Response(
            here((FIX / "caom2ops_datalink_CFHT_282502.xml").read_text()), mimetype=VOT + ";content=datalink"
        )

    @app.route("/caom2ops/sync")
    def soda():
        if not request.args.get("ID"):
            return Response("UsageError: missing ID", 400, mimetype="text/plain")
        return Response((FIX / "soda_cutout_CFHT_MegaCam.fits").read_bytes(), mimetype="application/fits")

    app.tokens = tokens  # type: ignore[attr-defined]
    return app


def _cell(v) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return " ".join(map(_cell, v))
    return str(v)


__all__ = ["cadc_app"]
