"""Multi-VM commands: resolve refs from one listing, dedupe, run concurrently, report in order."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from banger_core.errors import BangerError
from banger_core.units import did_you_mean


def resolve_refs(
    refs: list[str], vms: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any] | None, str]]:
    """``(ref, vm or None, error)`` per distinct target, in first-seen order."""
    out: list[tuple[str, dict[str, Any] | None, str]] = []
    seen: set[str] = set()
    for ref in refs:
        vm = next((v for v in vms if v["name"] == ref or v["id"] == ref), None)
        error = ""
        if vm is None:
            matches = [v for v in vms if v["id"].startswith(ref)]
            if len(matches) == 1:
                vm = matches[0]
            elif matches:
                error = f"ambiguous: matches {', '.join(m['name'] for m in matches)}"
            else:
                error = "no such VM" + did_you_mean(ref, [v["name"] for v in vms])
        if vm is not None:
            if vm["id"] in seen:
                continue
            seen.add(vm["id"])
        out.append((ref, vm, error))
    return out


def run_on_vms(refs: list[str], action: Callable[[dict[str, Any]], str]) -> None:
    """Run ``action(vm)`` for each ref concurrently; print one line per target in order."""
    from banger_core.cli.context import rpc

    targets = resolve_refs(list(refs), rpc("vm.list"))

    def one(target: tuple[str, dict[str, Any] | None, str]) -> tuple[bool, str]:
        ref, vm, error = target
        if vm is None:
            return False, f"{ref}: error: {error}"
        try:
            return True, f"{vm['name']}: {action(vm)}"
        except BangerError as exc:
            return False, f"{vm['name']}: error: {exc}"

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(targets))))
    try:
        results = list(pool.map(one, targets))
    except KeyboardInterrupt:
        # Leaving closes every connection; the daemon cancels what they were
        # waiting for (a start rolls back) when its client goes away.
        click.echo("banger: interrupted; the daemon cancels what was still running", err=True)
        os._exit(130)
    pool.shutdown()
    failed = 0
    for ok, line in results:
        click.echo(line, err=not ok)
        failed += not ok
    if failed:
        raise SystemExit(1)
