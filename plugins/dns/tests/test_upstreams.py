"""The forwarder's upstreams: the host's resolv.conf, looking through resolved's stub."""

from __future__ import annotations

import pytest

from banger_dns.upstreams import host_upstreams, parse_resolv_conf, parse_server


def test_parse_resolv_conf_keeps_ipv4_nameservers_in_order():
    text = (
        "# comment\nsearch example.test\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\n"
        "nameserver 192.0.2.2 # trailing\nnameserver bogus\n; nameserver 192.0.2.9\n"
        "nameserver 192.0.2.1\n"
    )
    assert parse_resolv_conf(text) == ["192.0.2.1", "192.0.2.2"]


def test_systemd_resolved_stub_is_looked_through(tmp_path):
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    real = tmp_path / "resolved.conf"
    real.write_text("nameserver 198.51.100.53\nnameserver 198.51.100.54\n")
    assert host_upstreams(stub, real) == ["198.51.100.53", "198.51.100.54"]
    plain = tmp_path / "plain.conf"
    plain.write_text("nameserver 203.0.113.53\n")
    assert host_upstreams(plain, real) == ["203.0.113.53"]
    assert host_upstreams(tmp_path / "missing", real) == []
    assert host_upstreams(stub, tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("text", "parsed"), [("192.0.2.1", ("192.0.2.1", 53)), ("192.0.2.1:5353", ("192.0.2.1", 5353))]
)
def test_parse_server(text, parsed):
    assert parse_server(text) == parsed


@pytest.mark.parametrize("bad", ["", "host", "192.0.2.1:0", "192.0.2.1:x", "::1"])
def test_parse_server_refuses(bad):
    with pytest.raises(ValueError):
        parse_server(bad)
