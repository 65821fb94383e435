"""APNs signing keys for tests, made with the openssl command line: a P-256
key in PKCS#8 PEM as Apple's .p8 files are, and the wrong kinds of key."""

import subprocess

KEY_ID = "ABCDE12345"
TEAM_ID = "TEAM987654"
TOPIC = "com.example.fcmd"


def make_key(directory, name, *genpkey_args):
    """Writes a private key (PKCS#8 PEM) and its public key; returns both paths."""
    priv, pub = directory / f"{name}.p8", directory / f"{name}.pub.pem"
    subprocess.run(["openssl", "genpkey", *genpkey_args, "-out", str(priv)], check=True, capture_output=True,
                   timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True, timeout=60)
    return priv, pub


def make_p256(directory, name="AuthKey"):
    return make_key(directory, name, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")


def apns_args(key, url=None, topic=TOPIC, key_id=KEY_ID, team_id=TEAM_ID):
    args = ["--apns-key", str(key), "--apns-key-id", key_id, "--apns-team-id", team_id]
    if topic:
        args += ["--apns-topic", topic]
    if url:
        args += ["--apns-url", url]
    return args


def b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    import base64
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def python_jwt(priv_path, key_id=KEY_ID, team_id=TEAM_ID, iat=None):
    """An ES256 provider token made with Python's cryptography, not fcmd."""
    import json
    import time
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    key = serialization.load_pem_private_key(open(priv_path, "rb").read(), password=None)
    head = b64url(json.dumps({"alg": "ES256", "kid": key_id}).encode())
    claims = b64url(json.dumps({"iss": team_id, "iat": int(time.time()) if iat is None else iat}).encode())
    r, s = decode_dss_signature(key.sign(f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{head}.{claims}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def python_verify(jwt, pub_path):
    """Checks an ES256 JWT with Python's cryptography; returns (header, claims)."""
    import json
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    head, claims, sig = jwt.split(".")
    raw = unb64url(sig)
    assert len(raw) == 64, "the signature is not JOSE's 64-byte r||s"
    pub = serialization.load_pem_public_key(open(pub_path, "rb").read())
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises when it does not verify
    return json.loads(unb64url(head)), json.loads(unb64url(claims))
