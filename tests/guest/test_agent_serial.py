"""The guest agent (banger-vsock) over banger-fcqemu's virtio-serial bridge: exec, cp."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from banger_fcqemu.serialmux import SerialBridge
from banger_vsock import protocol as p
from banger_vsock.guest import agent
from banger_vsock.hostconn import connect_port

PORT = 1024


def test_exec_through_the_serial_bridge(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(uds))
    listener.listen(16)
    host_end, guest_end = socket.socketpair()
    bridge = SerialBridge(listener, lambda: host_end)
    bridge.start()
    mux = agent.SerialMux("unused", PORT)
    threading.Thread(target=mux.serve_fd, args=(guest_end.fileno(),), daemon=True).start()
    try:
        assert bridge.ready.wait(10)
        data = bytes(range(256)) * 1024  # 256 KiB: many serial frames each way
        with p.AgentConnection(connect_port(uds, PORT, timeout=10)) as conn:
            conn.sock.settimeout(30)
            conn.open_stream("/exec", {"argv": ["sh", "-c", "cat; echo done >&2; exit 7"]})
            conn.send(p.F_STDIN, data)
            conn.send(p.F_STDIN, b"")
            out, err = b"", b""
            while True:
                kind, payload = conn.recv()
                if kind == p.F_STDOUT:
                    out += payload
                elif kind == p.F_STDERR:
                    err += payload
                elif kind == p.F_EXIT:
                    info = p.exit_status(payload)
                    break
        assert (out == data, err, info["exit_code"]) == (True, b"done\n", 7)
    finally:
        mux.stopped = True
        mux.reset()
        bridge.stop()
        guest_end.close()
        listener.close()
