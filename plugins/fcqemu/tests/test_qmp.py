"""The QMP client against a scripted QMP server (no QEMU needed)."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Iterator

import pytest

from banger_fcqemu.qmp import CTRL_ALT_DEL, QmpClient, QmpError, abstract_address


class FakeQmp:
    """A QMP server on an abstract socket that records commands and answers by a script."""

    def __init__(self, replies: dict[str, list[dict]] | None = None) -> None:
        self.name = f"bgr-test-qmp-{secrets.token_hex(4)}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(abstract_address(self.name))
        self.listener.listen(1)
        self.replies = replies or {}
        self.received: list[dict] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b'{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}\r\n')
            f.flush()
            for line in f:
                request = json.loads(line)
                self.received.append(request)
                for message in self.replies.get(request["execute"], [{"return": {}}]):
                    f.write(json.dumps(message).encode() + b"\r\n")
                f.flush()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def fake() -> Iterator[FakeQmp]:
    server = FakeQmp(
        {
            "send-key": [
                {"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 0}},
                {"return": {}},
            ],
            "bogus": [{"error": {"class": "CommandNotFound", "desc": "no bogus"}}],
        }
    )
    yield server
    server.close()


def test_handshake_then_commands(fake: FakeQmp) -> None:
    client = QmpClient(abstract_address(fake.name)).connect(wait=5)
    try:
        assert client.greeting is not None and "QMP" in client.greeting
        client.send_ctrl_alt_del()
        assert client.execute("query-status") == {}
    finally:
        client.close()
    assert fake.received[0] == {"execute": "qmp_capabilities"}
    assert fake.received[1] == {"execute": "send-key", "arguments": {"keys": CTRL_ALT_DEL}}
    assert [k["data"] for k in CTRL_ALT_DEL] == ["ctrl", "alt", "delete"]
    assert client.events[0]["event"] == "RESUME"


def test_error_reply_raises_with_qemus_words(fake: FakeQmp) -> None:
    client = QmpClient(abstract_address(fake.name)).connect(wait=5)
    try:
        with pytest.raises(QmpError, match="bogus: CommandNotFound: no bogus"):
            client.execute("bogus")
    finally:
        client.close()


def test_connect_gives_up_when_qemu_is_gone() -> None:
    client = QmpClient(abstract_address(f"bgr-test-none-{secrets.token_hex(4)}"))
    with pytest.raises(QmpError, match="cannot connect to QMP"):
        client.connect(wait=30, alive=lambda: False)


def test_closed_connection_raises() -> None:
    name = f"bgr-test-qmp-{secrets.token_hex(4)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(abstract_address(name))
    listener.listen(1)

    def greet_and_hang_up() -> None:
        conn, _ = listener.accept()
        conn.sendall(b'{"QMP": {}}\n')
        conn.close()

    threading.Thread(target=greet_and_hang_up, daemon=True).start()
    try:
        with pytest.raises(QmpError, match=r"closed|failed"):
            QmpClient(abstract_address(name)).connect(wait=5)
    finally:
        listener.close()
