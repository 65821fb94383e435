"""A Redis that answers fcmd's fleet commands wrongly, on purpose: just
enough of the protocol to read commands and to send chosen bytes back.
The mode (an attribute, changeable while it runs) says what EVALSHA gets."""

import socket
import threading
import time

SHA = b"0" * 40
TOTALS = b"*3\r\n*2\r\n$8\r\naccepted\r\n$1\r\n0\r\n:1\r\n:0\r\n"

# What EVALSHA is answered with, per mode; "hugebulk" streams instead.
ANSWERS = {
    "ok": TOTALS,
    "extra": TOTALS + b"+OK\r\n",  # one reply more than was asked for
    "hugearray": b"*3\r\n*900000000\r\n",  # 17 bytes announcing 900M elements
    "wrongtype": b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    "negative": b"*3\r\n*2\r\n$8\r\naccepted\r\n$2\r\n-5\r\n:-3\r\n:-7\r\n",
}


def read_command(f):
    """One RESP array of bulk strings from the file f, or None at its end."""
    head = f.readline()
    if not head.startswith(b"*"):
        return None
    args = []
    for _ in range(int(head[1:])):
        n = int(f.readline()[1:])
        args.append(f.read(n + 2)[:n])
    return args


class FakeRedis:
    def __init__(self, mode):
        self.mode = mode
        self.connections = 0
        self.evalshas = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.open = []
        self.stopping = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(s)
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        try:
            f = s.makefile("rb")
            while (cmd := read_command(f)) is not None:
                s.sendall(self.answer(cmd, s))
        except (OSError, ValueError):
            pass
        finally:
            s.close()

    def answer(self, cmd, s):
        name = cmd[0].upper()
        if name == b"SCRIPT":
            return b"$40\r\n" + SHA + b"\r\n"
        if name != b"EVALSHA":
            return b"+OK\r\n"
        self.evalshas += 1
        if self.mode == "hugebulk":  # a bulk claiming 1.5 GB, then bytes as fast as they go
            s.sendall(b"*3\r\n*2\r\n$8\r\naccepted\r\n$1500000000\r\n")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                s.sendall(b"1" * (1 << 20))
            return b""
        return ANSWERS[self.mode]

    def stop(self):
        self.stopping = True
        self.sock.close()
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
