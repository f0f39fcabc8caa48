"""A crash at each dangerous point of the commit path, then a restart: the table ends exact."""

import collections

import pytest

COUNT = 6_000


def table_keys(k2):
    rows = k2.table("trades").scan().to_arrow()
    return list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist()))


@pytest.mark.parametrize("point", ["after-batch", "after-files-closed", "after-table-commit"])
def test_restart_after_a_crash_adds_every_record_once(k2, point):
    produced = k2.produce(k2.trades, COUNT, partitions=3, symbols=40, seed=21)

    crashed = k2.run("consume", "--config", str(k2.config), "--topic", k2.trades, check=False,
                     env={"K2_FAILPOINT": point})
    assert crashed.returncode != 0, "the failpoint did not fire"
    assert f"failpoint {point}" in crashed.stderr

    after_crash = table_keys(k2)
    if point == "after-table-commit":
        # The table holds everything, the group nothing: the dangerous gap between the commits.
        assert len(after_crash) == COUNT
    else:
        assert after_crash == []

    summary = k2.consume(k2.trades)
    keys = table_keys(k2)
    assert len(keys) == COUNT
    assert max(collections.Counter(keys).values()) == 1, "a record landed twice"
    assert summary["lag"] == {p: 0 for p in produced["partitions"]}
    if point == "after-table-commit":
        # Partitions start at the table's offsets, not the group's: nothing is read again,
        # and the group's offsets catch up with the table.
        assert summary["consumed"] == 0 and summary["written"] == 0
    else:
        assert summary["written"] == COUNT
