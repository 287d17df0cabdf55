"""Build the bundled metadata snapshots of MAST's VO TAP services (``ps1dr2.json``, ``hsc.json``)
for ``configs/mast_vo_tap.yaml``, which the ``ivoa`` kind reads when MAST is unreachable and
replaces with MAST's own VOSI tables whenever it is reachable (docs/upstreams.md §2.5).

Sources (copied unchanged into this directory, see README.md here):

* ``mast_vo_tap_hsc_ps1dr2_table_columns.txt``: the real table and column names of both
  services (pyvo ``TAPService.tables``);
* ``panstarrs_dr2_mean_metadata.json``: the real types, units, UCDs and descriptions of the
  124 PS1 DR2 mean-object columns (MAST catalogs API ``/metadata``), used for every PS1 column
  of the same name.

Every other column is typed from its name by the rules in :func:`guess` (PS1/HSC naming
conventions), and its description says so.  Run ``python configs/mast_vo_tap/build_snapshots.py``
to rebuild; the output is deterministic.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
INFERRED = " (type inferred from the name; MAST's VOSI tables replace it when reachable)"
SERVICES = {"ps1dr2": "mast_tap_ps1dr2", "hsc": "mast_tap_hsc"}
#: positional columns per table name prefix: (ra, dec, UCD-worthy id)
POSITIONS = {
    "ps1dr2": {
        "ObjectThin": ("raMean", "decMean"),
        "Detection": ("ra", "dec"),
        "MeanObjectView": ("raMean", "decMean"),
    },
    "hsc": {
        "SumMagAper2CatView": ("MatchRA", "MatchDec"),
        "SumMagAutoCatView": ("MatchRA", "MatchDec"),
        "DetailedCatalog": ("MatchRA", "MatchDec"),
        "ProperMotionsView": ("raMean", "decMean"),
        "SourcePositionsView": ("RA", "Dec"),
    },
}
IDS = {"ps1dr2": "objID", "hsc": "MatchID"}


def tables(service: str) -> dict[str, list[str]]:
    """upstream table name -> column names, from the recorded list."""
    text = (HERE / "mast_vo_tap_hsc_ps1dr2_table_columns.txt").read_text()
    part = text.split(f"/vo-tap/api/v0.1/{service}/", 1)[1].split("\n#####", 1)[0]
    out = {}
    for m in re.finditer(r"^(dbo\.\w+)\n.*?Columns=(\[.*?\])", part, re.S | re.M):
        out[m.group(1)] = ast.literal_eval(m.group(2))
    return out


def guess(name: str, ra: str | None, dec: str | None, idc: str) -> dict:
    """A column typed from its name, marked as inferred."""
    low = name.lower()
    col = {"name": name, "datatype": "double", "description": name + INFERRED}
    if name in (ra, dec):
        col.update(
            unit="deg",
            ucd="pos.eq.ra;meta.main" if name == ra else "pos.eq.dec;meta.main",
            principal=True,
            description=("right ascension" if name == ra else "declination") + INFERRED,
        )
    elif name == idc:
        col.update(datatype="long", ucd="meta.id;meta.main", principal=True, indexed=True)
    elif low.endswith("id") or low in ("htmid", "zoneid", "batchid"):
        col.update(datatype="long", ucd="meta.id")
    elif low in (
        "filtertype",
        "filter",
        "imagename",
        "instrument",
        "detector",
        "targetname",
        "md5sum",
        "ctype1",
        "ctype2",
        "strip",
    ):
        col.update(datatype="char", arraysize="*", ucd="meta.id")
    elif (
        low.startswith("objname")
        or low.startswith("objaltname")
        or low.endswith("name")
        or low.endswith("time")
        and "start" in low
    ):
        col.update(datatype="char", arraysize="*", ucd="meta.id")
    elif "flag" in low:
        col.update(datatype="long", ucd="meta.code.qual")
    elif re.search(r"(mag|psfmag|apmag|kronmag)", low):
        col.update(
            datatype="float",
            unit="mag",
            ucd="stat.error;phot.mag" if low.endswith(("err", "std", "mad", "sigma")) else "phot.mag",
        )
        if low.endswith(("npt", "_n")):
            col.update(datatype="int", unit=None, ucd="meta.number")
    elif "flux" in low:
        col.update(datatype="float", unit="Jy", ucd="stat.error;phot.flux" if low.endswith("err") else "phot.flux")
    elif low in ("obstime", "epochmean", "startmjd", "stopmjd") or "mjd" in low or low.endswith("epoch"):
        col.update(unit="d", ucd="time.epoch")
    elif low.startswith("n") and (name[1:2].isupper() or low in ("ng", "nr", "ni", "nz", "ny")) or low.endswith("_n"):
        col.update(datatype="int", ucd="meta.number")
    return col


def build(service: str) -> list[dict]:
    schema = SERVICES[service]
    mean = {c["name"]: c for c in json.loads((HERE / "panstarrs_dr2_mean_metadata.json").read_text())}
    out = []
    for qualified, names in sorted(tables(service).items()):
        tname = qualified.split(".", 1)[1]
        ra, dec = POSITIONS[service].get(tname, (None, None))
        idc = IDS[service] if IDS[service] in names else None
        cols = []
        for n in names:
            real = mean.get(n) if service == "ps1dr2" else None
            if real is not None:
                unit = None if real["unit"] in ("NULL", "") else real["unit"]
                ucd = None if real["ucd"] in ("NULL", "") else real["ucd"]
                arraysize = "*" if real["datatype"] == "char" else None
                c = {
                    "name": n,
                    "datatype": real["datatype"],
                    "arraysize": arraysize,
                    "unit": unit,
                    "ucd": ucd,
                    "description": real["description"],
                }
                if n in (ra, dec):
                    c["ucd"] = "pos.eq.ra;meta.main" if n == ra else "pos.eq.dec;meta.main"
            else:
                c = guess(n, ra, dec, idc or "")
            base = {
                "arraysize": None,
                "xtype": None,
                "unit": None,
                "ucd": None,
                "utype": None,
                "principal": False,
                "indexed": False,
                "std": False,
                "delimited": False,
            }
            cols.append({**base, **c})
        out.append(
            {
                "schema": schema,
                "name": tname,
                "columns": cols,
                "description": f"MAST {'Pan-STARRS DR2' if service == 'ps1dr2' else 'Hubble Source Catalog'} {qualified} (CasJobs name)",
                "utype": None,
                "table_type": "view" if tname.endswith("View") or tname.endswith("ViewT") else "table",
                "ra_column": ra,
                "dec_column": dec,
                "id_column": idc,
                "nrows": None,
                "foreign_keys": [],
            }
        )
    return out


if __name__ == "__main__":
    for service in SERVICES:
        data = build(service)
        (HERE / f"{service}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(service, len(data), "tables", sum(len(t["columns"]) for t in data), "columns")
