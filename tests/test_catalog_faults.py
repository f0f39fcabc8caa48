"""A catalog that accepts connections and never answers: every call fails by name within its deadline, nothing hangs."""

import socket
import threading

import pytest


@pytest.fixture
def silent_catalog():
    """A TCP server that accepts every connection and never sends a byte: a hung catalog."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_hung_rest_catalog_fails_consume_by_name_instead_of_hanging(k2, silent_catalog):
    k2.produce(k2.trades, 100, partitions=1)
    config = k2.workdir / "hung.toml"
    text = k2.config.read_text()
    start = text.index("[catalog]")
    end = text.index("[pipeline]")
    config.write_text(text[:start] + f'[catalog]\ntype = "rest"\nuri = "{silent_catalog}"\nrequest_timeout_ms = 1500\n\n'
                      + text[end:])
    # Without a deadline this would hang until the subprocess timeout kills it.
    failed = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False, timeout=120)
    assert failed.returncode != 0
    assert "iceberg table market.trades" in failed.stderr, failed.stderr[-3000:]
    assert f"{silent_catalog}/v1/config" in failed.stderr and "operation timed out" in failed.stderr, failed.stderr[-3000:]
