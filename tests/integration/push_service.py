"""A Web Push push service for the tests, on loopback HTTPS, that judges what
fcmd sends with its own crypto: Python's `cryptography` (ECDH, HKDF by HMAC,
AES-GCM, ECDSA), sharing no code with fcmd.

Each subscription the test makes (`subscribe()`) has its own P-256 key pair
and auth secret, as a browser's would.  Every POST to a subscription's path
is decrypted per RFC 8291 with the subscription's private key and its VAPID
header verified per RFC 8292 (ES256 over the JWT, `aud` the origin it was
sent to, `exp` at most 24 h ahead, `sub` a mailto: or https: URI, `k` the
application server's key).  What the service answers is a plan per
subscription: statuses in turn, a delay, a huge body, a redirect, a reset.
"""

import base64
import json
import os
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hmac(key, data):
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def ece_decrypt(body, ua_private, auth):
    """RFC 8291 (section 3.4) with RFC 8188's aes128gcm, one record."""
    if len(body) < 21:
        raise ValueError("body shorter than the aes128gcm header")
    salt, rs, idlen = body[:16], struct.unpack(">I", body[16:20])[0], body[20]
    if idlen != 65 or rs < 18:
        raise ValueError(f"header: rs {rs}, idlen {idlen}")
    as_public_raw = body[21:21 + idlen]
    ct = body[21 + idlen:]
    if len(ct) > rs:
        raise ValueError("more than one record")
    ua_public_raw = ua_private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    as_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public_raw)
    ecdh_secret = ua_private.exchange(ec.ECDH(), as_public)
    prk_key = _hmac(auth, ecdh_secret)
    ikm = _hmac(prk_key, b"WebPush: info\x00" + ua_public_raw + as_public_raw + b"\x01")
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    padded = AESGCM(cek).decrypt(nonce, ct, None)
    end = len(padded)
    while end > 0 and padded[end - 1] == 0:
        end -= 1
    if end == 0 or padded[end - 1] != 2:
        raise ValueError("no last-record delimiter")
    return padded[:end - 1], salt, as_public_raw


def verify_vapid(header, origin, server_key=None, now=None):
    """The claims of a valid `vapid t=..., k=...` header, or raises."""
    now = now or time.time()
    if not header or not header.startswith("vapid "):
        raise ValueError(f"not a vapid Authorization: {header!r}")
    params = dict(p.strip().split("=", 1) for p in header[6:].split(","))
    token, k = params["t"], params["k"]
    if server_key is not None and k != server_key:
        raise ValueError("k is not the application server's key")
    head_b, claims_b, sig_b = token.split(".")
    head = json.loads(unb64(head_b))
    if head.get("alg") != "ES256":
        raise ValueError(f"alg {head.get('alg')}")
    sig = unb64(sig_b)
    if len(sig) != 64:
        raise ValueError("ES256 signature not 64 bytes")
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(k))
    try:
        pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                   f"{head_b}.{claims_b}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("bad VAPID signature")
    claims = json.loads(unb64(claims_b))
    if claims.get("aud") != origin:
        raise ValueError(f"aud {claims.get('aud')!r}, not {origin!r}")
    if not (now < claims["exp"] <= now + 24 * 3600 + 5):
        raise ValueError(f"exp {claims['exp']} not within 24 h of {now}")
    sub = claims.get("sub", "")
    if not (sub.startswith("mailto:") or sub.startswith("https:")):
        raise ValueError(f"sub {sub!r}")
    return claims, token


class Subscription:
    def __init__(self, service, sid):
        self.service = service
        self.sid = sid
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.plan = []      # answers in turn, each a dict; the last one stays
        self.messages = []  # what arrived and decrypted
        self.errors = []    # what arrived and did not pass
        self.requests = 0

    @property
    def endpoint(self):
        return f"{self.service.origin}/push/{self.sid}"

    def keys(self):
        return {"p256dh": b64(self.private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)),
                "auth": b64(self.auth)}

    def to_json(self, endpoint=None):
        return {"endpoint": endpoint or self.endpoint, "expirationTime": None, "keys": self.keys()}


class PushService:
    def __init__(self, certfile, keyfile, host="127.0.0.1", server_key=None):
        self.server_key = server_key
        self.lock = threading.Lock()
        self.subs = {}
        self.connections = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with service.lock:
                    service.connections += 1

            def do_POST(self):
                service.handle(self)

            def do_GET(self):
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        ctx.set_alpn_protocols(["http/1.1"])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.origin = f"https://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def subscribe(self, *plan):
        with self.lock:
            sid = f"s{len(self.subs)}-{b64(os.urandom(6))}"
            sub = Subscription(self, sid)
            sub.plan = list(plan) or [{"status": 201}]
            self.subs[sid] = sub
        return sub

    def handle(self, h):
        sid = h.path.rsplit("/", 1)[-1]
        sub = self.subs.get(sid)
        length = int(h.headers.get("Content-Length", "0"))
        body = h.rfile.read(length) if length else b""
        if sub is None:
            return self.answer(h, {"status": 404, "body": "no such subscription"})
        with self.lock:
            sub.requests += 1
            step = sub.plan.pop(0) if len(sub.plan) > 1 else sub.plan[0]
        record = {"headers": {k.lower(): v for k, v in h.headers.items()}, "at": time.time(), "length": length}
        try:
            if h.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding {h.headers.get('Content-Encoding')!r}")
            if length > 4096:
                raise ValueError(f"body of {length} bytes, over 4096")
            plain, salt, as_public = ece_decrypt(body, sub.private, sub.auth)
            # The origin the request was sent to: the scheme is https, the host the one it named.
            claims, token = verify_vapid(h.headers.get("Authorization"), "https://" + h.headers.get("Host", ""),
                                         self.server_key)
            record.update(plaintext=plain, salt=salt, sender_key=as_public, claims=claims, jwt=token)
            with self.lock:
                sub.messages.append(record)
        except (ValueError, KeyError, InvalidTag) as e:
            record["error"] = repr(e)
            with self.lock:
                sub.errors.append(record)
            return self.answer(h, {"status": 400, "body": f"oracle refused: {e!r}"})
        self.answer(h, step)

    def answer(self, h, step):
        if step.get("delay"):
            time.sleep(step["delay"])
        if step.get("reset"):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        status = step.get("status", 201)
        body = step.get("body", "").encode() if isinstance(step.get("body", ""), str) else step["body"]
        h.send_response(status)
        for k, v in step.get("headers", {}).items():
            h.send_header(k, v)
        if step.get("huge"):
            h.send_header("Content-Length", str(step["huge"]))
            h.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(step["huge"] // len(chunk)):
                    h.wfile.write(chunk)
            except OSError:
                pass
            h.close_connection = True
            return
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
