"""A Redis that answers fcmd's fleet commands wrongly, on purpose: just
enough of the protocol to read commands and to send chosen bytes back.
The mode (an attribute, changeable while it runs) says what the flush
script's EVALSHA gets; lists_mode what the drain lists' script gets."""

import hashlib
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

# What a drain (the lists script's "take") is answered with, per lists_mode.
TAKES = {
    "ok": b"$0\r\n\r\n",  # an empty list
    "torn": b"$3\r\n\xff\xff\x01\r\n",  # a record announcing 65535 bytes, holding one
    "array": b"*2\r\n:1\r\n:2\r\n",  # not the records at all
    "integer": b":-1\r\n",
    "hugebulk": b"$900000000\r\n",  # more than any drain asks for, then bytes as fast as they go
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
    def __init__(self, mode, lists_mode="ok"):
        self.mode = mode
        self.lists_mode = lists_mode
        self.connections = 0
        self.evalshas = 0
        self.takes = 0
        self.list_ops = []
        self.lists_sha = None
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
            sha = hashlib.sha1(cmd[2]).hexdigest().encode()
            if b"'take'" in cmd[2]:
                self.lists_sha = sha
            return b"$40\r\n" + sha + b"\r\n"
        if name != b"EVALSHA":
            return b"+OK\r\n"
        if cmd[1] == self.lists_sha:
            return self.answer_lists(cmd, s)
        self.evalshas += 1
        if self.mode == "hugebulk":  # a bulk claiming 1.5 GB, then bytes as fast as they go
            s.sendall(b"*3\r\n*2\r\n$8\r\naccepted\r\n$1500000000\r\n")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                s.sendall(b"1" * (1 << 20))
            return b""
        return ANSWERS[self.mode]

    def answer_lists(self, cmd, s):
        op = cmd[3 + int(cmd[2])]
        self.list_ops.append(op.decode())
        if self.lists_mode == "badend":  # a drain gets one entry; every other call a string, not a count
            return b"$8\r\n\x06\x00\x00dead1\r\n" if op == b"take" else b"$3\r\nxyz\r\n"
        if op != b"take":
            return b":1\r\n"
        self.takes += 1
        if self.lists_mode == "hugebulk":
            s.sendall(TAKES["hugebulk"])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                s.sendall(b"1" * (1 << 20))
            return b""
        return TAKES[self.lists_mode]

    def stop(self):
        self.stopping = True
        self.sock.close()
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
