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
