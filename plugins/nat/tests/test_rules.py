"""NAT rules in a network namespace of the test's own (never the host's firewall)."""

from __future__ import annotations

import os
import secrets

import pytest

from banger_core import system
from banger_core.errors import ValidationError
from banger_core.net.namespaces import delete_netns, ensure_netns
from banger_nat import rules
from banger_nat.egress import parse, parse_all

pytestmark = pytest.mark.net


@pytest.fixture
def ns_runner():
    if os.geteuid() != 0 or not system.which("iptables"):
        pytest.skip("needs root and iptables")
    name = f"bgnat-{secrets.token_hex(3)}"
    ensure_netns(name)

    def runner(argv, **kwargs):
        return system.run(["ip", "netns", "exec", name, *argv], **kwargs)

    try:
        yield runner
    finally:
        delete_netns(name)


def _rules(runner, table):
    return [
        line
        for line in runner(["iptables", "-t", table, "-S"]).stdout.splitlines()
        if "banger:" in line
    ]


def test_rules_are_tagged_per_vm_inserted_on_top_and_removed_exactly(ns_runner):
    ns_runner(["iptables", "-P", "FORWARD", "DROP"])
    ns_runner(["iptables", "-A", "FORWARD", "-j", "DROP"])  # someone else's rule
    rules.add(rules.vm_rules("aaa", "172.30.0.2", "bgbr0", "eth0"), ns_runner)
    rules.add(rules.vm_rules("bbb", "172.30.0.3", "bgbr0", "eth0"), ns_runner)
    forward = ns_runner(["iptables", "-S", "FORWARD"]).stdout.splitlines()
    # ours come before the foreign DROP, which stays last
    assert forward[-1] == "-A FORWARD -j DROP"
    assert all("banger:" in line for line in forward[1:-1]) and len(forward) == 6
    assert len(_rules(ns_runner, "nat")) == 2
    assert rules.owners(ns_runner) == {"aaa", "bbb"}

    assert rules.remove("aaa", ns_runner) == 3
    assert rules.owners(ns_runner) == {"bbb"}
    assert rules.remove("aaa", ns_runner) == 0  # already gone: fine
    assert rules.count("bbb", ns_runner) == 3
    assert rules.remove_where(lambda tag: True, ns_runner) == 3
    assert _rules(ns_runner, "nat") == [] and _rules(ns_runner, "filter") == []
    assert ns_runner(["iptables", "-S", "FORWARD"]).stdout.splitlines()[-1] == "-A FORWARD -j DROP"


def test_allow_list_rules_accept_then_reject(ns_runner):
    allow = parse_all(["203.0.113.10/32:80", "198.51.100.0/24"], "test")
    wanted = rules.vm_rules("ccc", "172.30.0.4", "bgbr0", "eth0", allow)
    rules.add(wanted, ns_runner)
    forward = [
        line
        for line in ns_runner(["iptables", "-S", "FORWARD"]).stdout.splitlines()
        if "banger:ccc" in line
    ]
    assert len(forward) == 5
    assert "--dport 80" in forward[1] and "-p tcp" in forward[1]
    assert "--dport 80" in forward[2] and "-p udp" in forward[2]
    assert "198.51.100.0/24" in forward[3]
    assert forward[4].endswith("-j REJECT --reject-with icmp-port-unreachable")
    assert rules.remove("ccc", ns_runner) == len(wanted)


@pytest.mark.parametrize(
    "bad", ["", "nope", "10.0.0.0/33", "10.0.0.1:0", "10.0.0.1:99999", "10.0.0.1:http", "::1"]
)
def test_bad_egress_entries_are_refused_with_the_entry(bad):
    with pytest.raises(ValidationError, match="egress allow"):
        parse(bad, "egress allow")


def test_egress_entries_parse():
    assert str(parse("203.0.113.10:443")) == "203.0.113.10/32:443"
    assert str(parse("203.0.113.7/24")) == "203.0.113.0/24"
