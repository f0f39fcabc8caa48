"""Reads a k2-ingest table back with pyiceberg, an independent Iceberg reader, and prints what it holds."""

import argparse
import json
import pathlib

from pyiceberg.catalog.sql import SqlCatalog


def open_catalog(name: str, database: pathlib.Path, warehouse: pathlib.Path) -> SqlCatalog:
    # SQLAlchemy spells an absolute SQLite path with four slashes; sqlx (our side) with one.
    return SqlCatalog(name, uri=f"sqlite:///{database.resolve()}", warehouse=f"file://{warehouse.resolve()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", type=pathlib.Path, required=True, help="the SQLite catalog file")
    parser.add_argument("--warehouse", type=pathlib.Path, required=True, help="the warehouse folder")
    parser.add_argument("--catalog", default="k2", help="catalog name (default k2)")
    parser.add_argument("--table", required=True, help="namespace.table, e.g. market.trades")
    parser.add_argument("--show", type=int, default=3, help="rows to print")
    args = parser.parse_args()

    table = open_catalog(args.catalog, args.database, args.warehouse).load_table(args.table)
    rows = table.scan().to_arrow()
    snapshot = table.current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot else {}
    print(f"pyiceberg read {args.table}: {rows.num_rows} rows, snapshot {snapshot.snapshot_id if snapshot else None}")
    offsets = {k: json.loads(v) for k, v in summary.items() if k.startswith("k2.offsets.")}
    print(f"offsets stored in the snapshot summary: {json.dumps(offsets)}")
    if args.show:
        for row in rows.slice(0, args.show).to_pylist():
            print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    print(f"ROWS {rows.num_rows}")


if __name__ == "__main__":
    main()
