"""A webhook receiver for the tests: a real HTTP server on loopback, in a
thread of the test, that checks each batch's signature with Python's hmac
and parses it with Python's json (fcmd uses neither).  Its behaviour is
set per batch by `plan`, a function of the batch's number (0, 1, ...)
that returns one of:

  "ok"        200 with a short body
  "fail"      500
  "slow"      holds the request without answering until `release` is set
  "huge"      200 with a body of many megabytes (fcmd must stop reading)
  "endless"   200 with a chunked body that never ends
  "reset"     closes the connection without an answer
  "redirect"  307 to another URL (fcmd must not follow it)
"""

import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, secret=None, plan=None, port=0, tls=None):
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.plan = plan or (lambda n: "ok")
        self.lock = threading.Lock()
        self.requests = 0          # POSTs seen, whatever was answered
        self.batches = []          # acknowledged: list of event lists
        self.events = {}           # event_id -> event, acknowledged ones
        self.duplicates = 0        # events acknowledged again (same event_id)
        self.problems = []         # what a well-behaved fcmd never does
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # (cert, key): HTTPS, HTTP/1.1
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        host = "localhost" if self.scheme == "https" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}/hook"

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def of_type(self, kind):
        with self.lock:
            return [e for e in self.events.values() if e["type"] == kind]

    def check(self, headers, body):
        """The signature: t=UNIX,v1=HEX over "UNIX.BODY"."""
        if self.secret is None:
            if "X-Fcmd-Signature" in headers:
                self.problems.append("a signature without a secret")
            return True
        sig = headers.get("X-Fcmd-Signature", "")
        parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
        try:
            t = int(parts["t"])
        except (KeyError, ValueError):
            self.problems.append(f"no timestamp in {sig!r}")
            return False
        want = hmac.new(self.secret, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, parts.get("v1", "")):
            self.problems.append(f"a bad signature {sig!r}")
            return False
        if abs(time.time() - t) > 300:
            self.problems.append(f"a stale timestamp {t}")
            return False
        return True

    def _handler(self):
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rcv.lock:
                    number = rcv.requests
                    rcv.requests += 1
                what = rcv.plan(number)
                if what == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                    return
                if what == "slow":
                    rcv.release.wait(60)
                    self.close_connection = True
                    return
                if what == "fail":
                    return self.answer(500, b'{"error":"try later"}')
                if what == "redirect":
                    self.send_response(307)
                    self.send_header("Location", rcv.url + "/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Type") != "application/json":
                    rcv.problems.append(f"content type {self.headers.get('Content-Type')!r}")
                if not rcv.check(self.headers, body):
                    return self.answer(401, b"bad signature")
                doc = json.loads(body)
                if set(doc) != {"events"} or not isinstance(doc["events"], list):
                    rcv.problems.append(f"a body of {sorted(doc)}")
                if not 1 <= len(doc["events"]) <= 500:
                    rcv.problems.append(f"a batch of {len(doc['events'])} events")
                with rcv.lock:
                    rcv.batches.append(doc["events"])
                    for e in doc["events"]:
                        if e["event_id"] in rcv.events:
                            rcv.duplicates += 1
                        rcv.events[e["event_id"]] = e
                if what == "huge":
                    return self.answer(200, b"x" * (8 << 20))
                if what == "endless":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
                    try:
                        while not rcv.release.is_set():
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self.answer(200, b"ok")

            def answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        return Handler
