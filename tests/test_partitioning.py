"""Partitioned tables from `partition_by`: created with the spec, written partitioned (with a cap on
open writers), read back by pyiceberg with partition filters; specs that do not bind are refused."""

import datetime

import pyarrow.compute as pc
import pytest
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan


def ingest(k2, config, count=3_000):
    k2.produce(k2.trades, count, partitions=2, symbols=12, seed=21)
    summary = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)
    assert summary["written"] == count
    return summary


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_partitioned_table_is_written_by_partition_and_filters_exactly(k2):
    config = k2.config_for_trades("part.toml", 'partition_by = ["bucket(4, symbol)", "day(exchange_ts)", "symbol"]\n')
    ingest(k2, config)
    table = k2.table("trades")
    spec = [(f.name, str(f.transform)) for f in table.spec().fields]
    assert spec == [("symbol_bucket", "bucket[4]"), ("exchange_ts_day", "day"), ("symbol", "identity")]

    everything = table.scan().to_arrow()
    assert everything.num_rows == 3_000
    files = table.inspect.files().to_pylist()
    # Every data file holds one symbol, the one its partition value says.
    for f in files:
        symbols = set(pq_column(table, f["file_path"], "symbol"))
        assert symbols == {f["partition"]["symbol"]}, f["file_path"]

    symbol = everything["symbol"][0].as_py()
    expected = everything.filter(pc.equal(everything["symbol"], symbol))
    scan = table.scan(row_filter=EqualTo("symbol", symbol))
    assert sorted(scan.to_arrow()["_kafka_offset"].to_pylist()) == sorted(expected["_kafka_offset"].to_pylist())
    # The filter prunes by partition: only that symbol's files are planned.
    planned = {t.file.file_path for t in scan.plan_files()}
    of_symbol = {f["file_path"] for f in files if f["partition"]["symbol"] == symbol}
    assert planned == of_symbol and len(planned) < len(files)

    day = everything["exchange_ts"][0].as_py().replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = day + datetime.timedelta(days=1)
    ts = everything["exchange_ts"]
    in_day = everything.filter(pc.and_(pc.greater_equal(ts, day), pc.less(ts, next_day)))
    by_day = table.scan(row_filter=And(GreaterThanOrEqual("exchange_ts", day.isoformat()),
                                       LessThan("exchange_ts", next_day.isoformat()))).to_arrow()
    assert by_day.num_rows == in_day.num_rows


def pq_column(table, path, column):
    """One column of one data file, read with pyarrow through the table's own file IO."""
    import pyarrow.parquet as pq

    with table.io.new_input(path).open() as f:
        return pq.read_table(f, columns=[column])[column].to_pylist()


def test_open_writer_cap_closes_the_least_recent_and_loses_nothing(k2):
    config = k2.config_for_trades("cap.toml", 'partition_by = ["symbol"]\n')
    config.write_text(config.read_text() + "\n[sink]\nmax_open_writers = 2\n")
    summary = ingest(k2, config)
    table = k2.table("trades")
    rows = table.scan().to_arrow()
    # One commit: the extra files below come from the cap, not from several commits.
    assert rows.num_rows == 3_000 and summary["commits"] == 1
    files = table.inspect.files().to_pylist()
    symbols = {f["partition"]["symbol"] for f in files}
    assert len(symbols) == 12
    # With 12 symbols and room for 2 open writers, writers were closed and reopened: more files
    # than partitions, and still each holds exactly its partition's rows.
    assert len(files) > 12
    for sym in symbols:
        want = rows.filter(pc.equal(rows["symbol"], sym)).num_rows
        got = sum(f["record_count"] for f in files if f["partition"]["symbol"] == sym)
        assert got == want, sym


@pytest.mark.parametrize("entry, message", [
    ("day(symbol)", "partition_by `day(symbol)`: transform day does not apply to column `symbol` of type string"),
    ("hour(when)", "partition_by `hour(when)`: no column `when` in the table"),
    ("weekday(exchange_ts)", "partition_by entry `weekday(exchange_ts)`: unknown transform `weekday`"),
])
def test_a_spec_that_does_not_bind_is_a_startup_error_naming_it(k2, entry, message):
    config = k2.config_for_trades("bad.toml", f'partition_by = ["{entry}"]\n')
    proc = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not k2.catalog().table_exists(f"{k2.namespace}.trades"), "no table is created with a bad spec"


def test_an_existing_table_with_other_partitioning_is_refused(k2):
    ingest(k2, k2.config, count=200)  # creates the table unpartitioned
    config = k2.config_for_trades("later.toml", 'partition_by = ["symbol"]\n')
    proc = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False)
    assert proc.returncode != 0
    assert "is partitioned by [] but partition_by asks for [identity(symbol)]" in proc.stderr, proc.stderr[-2000:]
