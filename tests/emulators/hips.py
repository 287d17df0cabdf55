"""A HiPS server on loopback (HiPS 1.0, IVOA REC 2017-05-19): the ``properties`` file (§4.4)
and JPEG tiles ``Norder{k}/Dir{d}/Npix{n}.jpg`` (§4.2.1, ``Dir`` = ``10000 * (n // 10000)``)
of a synthetic all-sky survey, each tile a grey level from its pixel number, so a viewer
that draws it is seen to have drawn real tiles.  Every request is recorded."""

from __future__ import annotations

import io
from functools import cache

from flask import Flask, Response, abort

PROPERTIES = """creator_did          = ivo://vo-gateway.test/P/synthetic
obs_title            = Synthetic test survey
dataproduct_type     = image
hips_version         = 1.4
hips_release_date    = 2026-12-04T00:00Z
hips_status          = public master unclonable
hips_tile_format     = jpeg
hips_tile_width      = 256
hips_order           = 3
hips_order_min       = 0
hips_frame           = equatorial
hips_initial_ra      = 200.45
hips_initial_dec     = 36.8
hips_initial_fov     = 1
"""


@cache
def tile(order: int, npix: int) -> bytes:
    from PIL import Image

    grey = 40 + (npix * 37 + order * 11) % 160
    out = io.BytesIO()
    Image.new("L", (256, 256), grey).convert("RGB").save(out, format="JPEG")
    return out.getvalue()


def make_app() -> Flask:
    app = Flask("hips-emulator")
    app.config["requests"] = requests = []

    @app.before_request
    def _record():
        from flask import request

        requests.append(request.path)

    @app.route("/hips/properties")
    def properties():
        return Response(PROPERTIES, mimetype="text/plain", headers={"Access-Control-Allow-Origin": "*"})

    @app.route("/hips/Norder<int:order>/Dir<int:d>/Npix<int:npix>.jpg")
    def jpeg(order, d, npix):
        if order > 3 or npix >= 12 * 4**order or d != 10000 * (npix // 10000):
            abort(404)
        return Response(tile(order, npix), mimetype="image/jpeg", headers={"Access-Control-Allow-Origin": "*"})

    @app.after_request
    def _cors(r):
        r.headers.setdefault("Access-Control-Allow-Origin", "*")
        return r

    return app
