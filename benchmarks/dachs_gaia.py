"""Load the embedded archive's real Gaia DR3 G<10 table (data/demo, 482,176 rows) into the
DaCHS peer as ``gaia.main``, with the gateway's own column metadata, so ``vs_dachs.py
--gaia`` compares both servers on it too.

Run as root on the machine where ``../shared/tools/dachs-peer/setup.sh`` installed DaCHS:

    python benchmarks/dachs_gaia.py          # writes the RD and CSV, dachs imp / pub (about 2 min)

The resource follows the peer's bench RD (``//scs#pgs-pos-index`` on ra/dec, an SCS service,
``adql="True"``); types from the Parquet file (bigint, double precision, real); NULL BP/RP
magnitudes stay NULL.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data/demo/gaia_dr3_g10.parquet"
META = ROOT / "data/demo/gaia_dr3_g10.yaml"
INPUTS = Path("/var/gavo/inputs/gaia")
PG_TYPES = {"int64": "bigint", "double": "double precision", "float": "real"}


def rd(columns: list[dict], types: dict[str, str]) -> str:
    cols = []
    for c in columns:
        attrs = {
            "name": c["name"],
            "type": PG_TYPES[types[c["name"]]],
            "ucd": c["ucd"],
            "description": c["description"],
            "verbLevel": "1",
        }
        if c.get("unit"):
            attrs["unit"] = c["unit"]
        if c["name"] in ("source_id", "ra", "dec"):
            attrs["required"] = "True"
        cols.append("    <column " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items()) + "/>")
    body = "\n".join(cols)
    return f"""<resource schema="gaia" resdir=".">
  <meta name="creationDate">2025-01-01T00:00:00Z</meta>
  <meta name="title">Gaia DR3 stars brighter than G = 10</meta>
  <meta name="description">The vo-gateway embedded demo table (data/demo/PROVENANCE.md), loaded
    for side-by-side benchmarking.</meta>
  <meta name="creator">Gaia Collaboration</meta>
  <meta name="subject">catalogs</meta>
  <meta name="contentLevel">Research</meta>
  <meta name="type">Catalog</meta>
  <meta name="coverage.waveband">Optical</meta>
  <table id="main" onDisk="True" mixin="//scs#pgs-pos-index" adql="True">
    <meta name="description">Gaia DR3 G &lt; 10.</meta>
    <primary>source_id</primary>
    <stc>Position ICRS "ra" "dec"</stc>
{body}
  </table>
  <data id="import">
    <sources pattern="data/gaia.csv"/>
    <csvGrammar/>
    <make table="main"><rowmaker idmaps="*"/></make>
  </data>
  <service id="cone" allowed="form,scs.xml">
    <meta name="shortName">gaia cone</meta>
    <meta name="title">Gaia DR3 G&lt;10 cone search</meta>
    <meta name="testQuery"><meta name="ra">10.0</meta><meta name="dec">10.0</meta><meta name="sr">1</meta></meta>
    <publish render="scs.xml" sets="ivo_managed"/>
    <scsCore queriedTable="main"><FEED source="//scs#coreDescs"/></scsCore>
  </service>
</resource>
"""


def main() -> int:
    table = pq.read_table(SOURCE)
    columns = yaml.safe_load(META.read_text())["columns"]
    types = {f.name: str(f.type) for f in table.schema}
    (INPUTS / "data").mkdir(parents=True, exist_ok=True)
    with open(INPUTS / "data/gaia.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(table.column_names)
        for batch in table.to_batches(100_000):
            cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            w.writerows(["" if v is None else repr(v) for v in row] for row in zip(*cols))
    (INPUTS / "q.rd").write_text(rd(columns, types))
    subprocess.run(["chown", "-R", "dachsroot:gavo", str(INPUTS)], check=True)
    for cmd in ("dachs imp gaia/q", "dachs pub gaia/q"):
        subprocess.run(["su", "-s", "/bin/sh", "dachsroot", "-c", f"cd /var/tmp && {cmd}"], check=True)
    out = subprocess.run(
        ["su", "postgres", "-c", "psql -d gavo -Atc 'select count(*) from gaia.main'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"gaia.main: {out} rows (source: {SOURCE.name}, {table.num_rows} rows)")
    return 0 if int(out) == table.num_rows else 1


if __name__ == "__main__":
    sys.exit(main())
