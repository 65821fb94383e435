"""tools/webhook_sink.py - a webhook receiver for the benchmarks: acknowledges
every batch at once (204) and counts requests and events (by their
"event_id" members, without parsing: the sink shares the cores with what it
measures); GET /stats answers {"requests": N, "events": M}.
Usage: webhook_sink.py PORT"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {"requests": 0, "events": 0}
lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        n = body.count(b'{"event_id":')
        with lock:
            counts["requests"] += 1
            counts["events"] += n
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        with lock:
            out = json.dumps(counts).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
