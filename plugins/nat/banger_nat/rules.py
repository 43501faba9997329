"""The iptables rules of one VM: what they are, adding them, finding and removing them.

Every rule carries ``-m comment --comment banger:<vm-id>``, which both
iptables flavours (nf_tables and legacy) keep and print back with
``iptables -S``; teardown lists the rules and deletes exactly those with the
VM's comment, so it never depends on handles or on the VM's current address,
and it succeeds when they are already gone.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from banger_core import Runner, run
from banger_nat.egress import Egress

COMMENT_PREFIX = "banger:"
IPTABLES = "iptables"
TABLES = ("nat", "filter")


@dataclass(frozen=True)
class Rule:
    """One rule: table, chain and the match/target arguments."""

    table: str
    chain: str
    spec: tuple[str, ...]


def comment(vm_id: str) -> str:
    """The comment every rule of VM ``vm_id`` carries."""
    return f"{COMMENT_PREFIX}{vm_id}"


def vm_rules(
    vm_id: str, ip: str, bridge: str, uplink: str, allow: Iterable[Egress] = ()
) -> list[Rule]:
    """The rules that put VM ``ip`` online through ``uplink``, in insertion order.

    With an allow-list, only those destinations (and ports) are accepted and
    everything else the VM sends out of the uplink is rejected.
    """
    tag = ("-m", "comment", "--comment", comment(vm_id))
    host = f"{ip}/32"
    rules = [
        Rule("nat", "POSTROUTING", ("-s", host, "-o", uplink, *tag, "-j", "MASQUERADE")),
        Rule(
            "filter",
            "FORWARD",
            (
                "-i",
                uplink,
                "-o",
                bridge,
                "-d",
                host,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                *tag,
                "-j",
                "ACCEPT",
            ),
        ),
    ]
    out = ("-i", bridge, "-o", uplink, "-s", host)
    allow = list(allow)
    if not allow:
        rules.append(Rule("filter", "FORWARD", (*out, *tag, "-j", "ACCEPT")))
        return rules
    for entry in allow:
        if entry.port is None:
            rules.append(
                Rule("filter", "FORWARD", (*out, "-d", entry.network, *tag, "-j", "ACCEPT"))
            )
            continue
        for proto in ("tcp", "udp"):
            rules.append(
                Rule(
                    "filter",
                    "FORWARD",
                    (
                        *out,
                        "-d",
                        entry.network,
                        "-p",
                        proto,
                        "--dport",
                        str(entry.port),
                        *tag,
                        "-j",
                        "ACCEPT",
                    ),
                )
            )
    rules.append(Rule("filter", "FORWARD", (*out, *tag, "-j", "REJECT")))
    return rules


def add(rules: list[Rule], runner: Runner = run) -> None:
    """Insert ``rules`` at the top of their chains, keeping their order.

    Inserting at the top (not appending) is what makes them work under a
    FORWARD policy of DROP and before other tools' rules.
    """
    position: dict[tuple[str, str], int] = {}
    for rule in rules:
        key = (rule.table, rule.chain)
        position[key] = position.get(key, 0) + 1
        runner([IPTABLES, "-w", "-t", rule.table, "-I", rule.chain, str(position[key]), *rule.spec])


def listed(runner: Runner = run) -> list[tuple[str, str, list[str]]]:
    """Every banger rule now in place: ``(table, comment, rule args as printed by -S)``."""
    found = []
    for table in TABLES:
        out = runner([IPTABLES, "-w", "-t", table, "-S"]).stdout
        for line in out.splitlines():
            if COMMENT_PREFIX not in line:
                continue
            try:
                args = shlex.split(line)
            except ValueError:
                continue
            if len(args) < 2 or args[0] != "-A" or "--comment" not in args:
                continue
            tag = args[args.index("--comment") + 1]
            if tag.startswith(COMMENT_PREFIX):
                found.append((table, tag, args))
    return found


def remove(vm_id: str, runner: Runner = run) -> int:
    """Delete every rule of VM ``vm_id``; return how many (0 when none: not an error)."""
    return remove_where(lambda tag: tag == comment(vm_id), runner)


def owners(runner: Runner = run) -> set[str]:
    """The VM ids that have rules in place."""
    return {tag[len(COMMENT_PREFIX) :] for _, tag, _ in listed(runner)}


def remove_where(match: Callable[[str], bool], runner: Runner = run) -> int:
    """Delete every banger rule whose comment satisfies ``match(comment)``."""
    count = 0
    for table, tag, args in listed(runner):
        if not match(tag):
            continue
        result = runner([IPTABLES, "-w", "-t", table, "-D", *args[1:]], check=False)
        # Gone already (another teardown raced us) is fine.
        if result.returncode == 0:
            count += 1
    return count


def count(vm_id: str, runner: Runner = run) -> int:
    """How many rules of VM ``vm_id`` are in place."""
    return sum(1 for _, tag, _ in listed(runner) if tag == comment(vm_id))
