"""Where resmon serve listens: Go's ``:PORT`` is every address, IPv4 and IPv6."""

from __future__ import annotations

import socket

import pytest
import requests
from server_proc import ServerProcess, free_port

from resmon.server.wsgi import gunicorn_bind, listen_hosts


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_every_address_is_ipv6_and_ipv4_where_the_host_has_ipv6():
    hosts = listen_hosts("")
    assert "::" in hosts or not _ipv6_loopback()
    assert hosts == ["::"] or "0.0.0.0" in hosts  # IPv4 clients are always taken
    assert listen_hosts("127.0.0.1") == ["127.0.0.1"]
    assert gunicorn_bind("", 8080) == ":8080"
    assert gunicorn_bind("::", 8080) == "[::]:8080"


@pytest.mark.skipif(not _ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_colon_port_answers_on_ipv4_and_ipv6_loopback(tmp_path):
    port = free_port()
    with ServerProcess(tmp_path / "m.db", port=port, extra_args=(f"--addr=:{port}",)):
        for url in (f"http://127.0.0.1:{port}/health", f"http://[::1]:{port}/health"):
            answer = requests.get(url, timeout=10)
            assert (answer.status_code, answer.json()) == (200, {"status": "ok"}), url


def test_an_ipv4_address_stays_ipv4(tmp_path):
    port = free_port()
    with ServerProcess(tmp_path / "m.db", port=port, extra_args=(f"--addr=127.0.0.1:{port}",)):
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).ok
        if _ipv6_loopback():
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://[::1]:{port}/health", timeout=5)
