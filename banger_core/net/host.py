"""Bridge and TAP devices on the host, through pyroute2 (netlink).

Every function takes ``netns``: ``None`` works in the caller's own network
namespace (the daemon), a name works inside that namespace (tests, the
simulator). Operations are idempotent so reconcile and retries are safe.

Note: with ``netns`` set, pyroute2 forks a helper per IPRoute socket and per
TAP creation (the TUNSETIFF ioctl must run inside the namespace), so calls
there cost a few milliseconds more than in the current namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from banger_core.errors import BangerError, ConflictError, NotFoundError, ValidationError

IFNAME_MAX = 15  # IFNAMSIZ - 1
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def validate_ifname(name: str) -> str:
    """Return ``name`` if it is a valid Linux interface name, else raise ValidationError.

    Allowed: 1-15 characters from letters, digits, ``_``, ``.`` and ``-``.
    """
    if not isinstance(name, str) or not name:
        raise ValidationError(f"interface name {name!r} is empty; use 1-15 characters")
    if len(name) > IFNAME_MAX:
        raise ValidationError(
            f"interface name {name!r} is {len(name)} characters; at most {IFNAME_MAX} allowed"
        )
    if not _IFNAME_RE.match(name) or name in (".", ".."):
        raise ValidationError(
            f"interface name {name!r} may only contain letters, digits, '_', '.' and '-'"
        )
    return name


@contextmanager
def _iproute(netns: str | None) -> Iterator[IPRoute]:
    try:
        ipr = IPRoute(netns=netns) if netns else IPRoute()
    except (OSError, NetlinkError) as exc:
        where = f"network namespace {netns!r}" if netns else "the current network namespace"
        raise BangerError(f"cannot open netlink in {where}: {exc}")
    try:
        yield ipr
    finally:
        ipr.close()


def _fail(action: str, name: str, exc: Exception) -> BangerError:
    code = getattr(exc, "code", None)
    detail = errno.errorcode.get(code, str(exc)) if isinstance(code, int) else str(exc)
    return BangerError(f"cannot {action} {name!r}: {detail} ({exc})")


def _lookup(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _kind(ipr: IPRoute, index: int) -> str | None:
    links = ipr.get_links(index)
    if not links:
        return None
    return links[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def _is_tap(ipr: IPRoute, index: int) -> bool:
    links = ipr.get_links(index)
    if not links or links[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "tun":
        return False
    # IFLA_TUN_TYPE: 1 = tun, 2 = tap
    return links[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_TUN_TYPE") == 2


def link_exists(name: str, *, netns: str | None = None) -> bool:
    """True when an interface called ``name`` exists."""
    validate_ifname(name)
    with _iproute(netns) as ipr:
        return _lookup(ipr, name) is not None


def list_links(prefix: str = "", *, netns: str | None = None) -> list[str]:
    """Return the sorted names of all interfaces whose name starts with ``prefix``."""
    with _iproute(netns) as ipr:
        names = [link.get("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(prefix))


def bridge_of(name: str, *, netns: str | None = None) -> str | None:
    """Return the name of the bridge ``name`` is attached to, or None.

    Raises :class:`NotFoundError` when ``name`` does not exist.
    """
    validate_ifname(name)
    with _iproute(netns) as ipr:
        index = _lookup(ipr, name)
        if index is None:
            raise NotFoundError(f"interface {name!r} does not exist")
        master = ipr.get_links(index)[0].get("IFLA_MASTER")
        if not master:
            return None
        masters = ipr.get_links(master)
        return masters[0].get("IFLA_IFNAME") if masters else None


def ensure_bridge(name: str, gateway_cidr: str, *, netns: str | None = None) -> None:
    """Make sure bridge ``name`` exists, holds ``gateway_cidr`` and is up.

    Creates the bridge when missing; adds the address when absent (other
    addresses are left alone). Raises :class:`ConflictError` when ``name``
    exists but is not a bridge.
    """
    validate_ifname(name)
    try:
        iface = ipaddress.ip_interface(str(gateway_cidr))
    except ValueError:
        raise ValidationError(
            f"gateway address {gateway_cidr!r} must be an IPv4 address with prefix, "
            "e.g. 172.30.0.1/24"
        )
    if iface.version != 4 or "/" not in str(gateway_cidr):
        raise ValidationError(
            f"gateway address {gateway_cidr!r} must be an IPv4 address with prefix, "
            "e.g. 172.30.0.1/24"
        )
    address, prefixlen = str(iface.ip), iface.network.prefixlen
    with _iproute(netns) as ipr:
        index = _lookup(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise _fail("create bridge", name, exc)
            index = _lookup(ipr, name)
            if index is None:
                raise BangerError(f"bridge {name!r} vanished right after creation")
        kind = _kind(ipr, index)
        if kind != "bridge":
            raise ConflictError(
                f"interface {name!r} already exists and is not a bridge "
                f"(kind {kind or 'unknown'}); choose another bridge name"
            )
        # A bridge without an address of its own takes the lowest MAC of its
        # ports, so it changes as TAPs come and go and guests' ARP entries
        # for the gateway go stale (their frames get bridged to an idle TAP
        # instead of routed). A fixed MAC, derived from the gateway address
        # like the guests' (06:00:<IPv4>), never changes.
        mac = "06:00:" + ":".join(f"{b:02x}" for b in iface.ip.packed)
        if ipr.get_links(index)[0].get_attr("IFLA_ADDRESS") != mac:
            try:
                ipr.link("set", index=index, address=mac)
            except NetlinkError as exc:
                raise _fail(f"set MAC {mac} of bridge", name, exc)
        have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        if (address, prefixlen) not in have:
            try:
                ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise _fail(f"add {gateway_cidr} to bridge", name, exc)
        try:
            ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            raise _fail("bring up bridge", name, exc)


def create_tap(name: str, bridge: str, *, owner_uid: int = 0, netns: str | None = None) -> None:
    """Make sure a persistent TAP ``name`` exists, is attached to ``bridge`` and is up.

    ``owner_uid`` may open the TAP without privileges (Firecracker running
    as that user). Idempotent: an existing TAP is re-attached and brought up.
    Raises :class:`NotFoundError` when the bridge is missing and
    :class:`ConflictError` when ``name`` exists but is not a TAP.
    """
    validate_ifname(name)
    validate_ifname(bridge)
    if isinstance(owner_uid, bool) or not isinstance(owner_uid, int) or owner_uid < 0:
        raise ValidationError(f"TAP owner uid {owner_uid!r} must be a non-negative integer")
    with _iproute(netns) as ipr:
        bridge_index = _lookup(ipr, bridge)
        if bridge_index is None:
            raise NotFoundError(f"bridge {bridge!r} does not exist; cannot attach TAP {name!r}")
        if _kind(ipr, bridge_index) != "bridge":
            raise ConflictError(f"interface {bridge!r} is not a bridge; cannot attach TAP {name!r}")
        index = _lookup(ipr, name)
        if index is None:
            try:
                ipr.link(
                    "add",
                    ifname=name,
                    kind="tuntap",
                    mode="tap",
                    uid=owner_uid,
                    ifr={"no_pi": 1},
                )
            except (NetlinkError, OSError) as exc:
                # A concurrent creator may have won the race: judge what exists.
                index = _lookup(ipr, name)
                if index is None:
                    raise _fail("create TAP", name, exc)
            else:
                index = _lookup(ipr, name)
            if index is None:
                raise BangerError(f"TAP {name!r} vanished right after creation")
        if not _is_tap(ipr, index):
            raise ConflictError(
                f"interface {name!r} already exists and is not a TAP device; "
                "remove it or choose another name"
            )
        try:
            ipr.link("set", index=index, master=bridge_index, state="up")
        except NetlinkError as exc:
            raise _fail(f"attach to bridge {bridge!r} and bring up TAP", name, exc)


def delete_link(name: str, *, netns: str | None = None) -> bool:
    """Delete interface ``name``; return False when it did not exist."""
    validate_ifname(name)
    with _iproute(netns) as ipr:
        index = _lookup(ipr, name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise _fail("delete interface", name, exc)
    return True
