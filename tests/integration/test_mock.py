"""The mock upstream reads JSON as strictly as FCM does: a body that jansson
refuses (a repeated key, invalid UTF-8, an escaped lone surrogate) gets a 400
that says why, and nothing in it is counted as a target."""

import base64
import json
import subprocess
import time

import requests

BAD_BODIES = [
    b'{"registration_ids":["a"],"registration_ids":["b"]}',
    b'{"registration_ids":["a\xc0\x80"]}',
    b'{"registration_ids":["\\ud800"]}',
    b'{"registration_ids":["a"],"data":{"k":1,"\\u006b":2}}',
]


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assertion(key_file, claims_text):
    """A JWT over claims_text as given (so it can repeat a key), signed RS256."""
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k"}).encode()) + "." + b64url(claims_text)
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_file)], input=head.encode(),
                         capture_output=True, check=True, timeout=30).stdout
    return head + "." + b64url(sig)


def claims(base, repeat_iss=False):
    now = int(time.time())
    text = json.dumps({"iss": "t@example", "scope": "https://www.googleapis.com/auth/firebase.messaging",
                       "aud": base + "/token", "iat": now, "exp": now + 3600})
    return (text[:-1] + ', "iss": "other@example"}' if repeat_iss else text).encode()


def get_token(base, key_file, claims_text):
    return requests.post(base + "/token", timeout=5, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion(key_file, claims_text)})


def test_legacy_refuses_what_jansson_refuses(mock):
    for body in BAD_BODIES:
        r = requests.post(mock.url(), data=body, timeout=5)
        assert r.status_code == 400, body
        assert "JSON_PARSING_ERROR" in r.text
    assert "duplicate" in requests.post(mock.url(), data=BAD_BODIES[0], timeout=5).text
    assert mock.stats(summary=True)["targets"] == 0
    ok = requests.post(mock.url(), data=b'{"registration_ids":["a"],"data":{"k":"\\u0000"}}', timeout=5)
    assert ok.status_code == 200 and ok.json()["success"] == 1


def test_v1_and_oauth_refuse_what_jansson_refuses(start_mock, signing_key, tmp_path):
    private_pem, public = signing_key
    key_file = tmp_path / "key.pem"
    key_file.write_text(private_pem)
    mock = start_mock("--oauth-public-key", str(public))
    refused = get_token(mock.base, key_file, claims(mock.base, repeat_iss=True))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    token = get_token(mock.base, key_file, claims(mock.base))
    assert token.status_code == 200, token.text
    auth = {"Authorization": "Bearer " + token.json()["access_token"]}
    send = mock.base + "/v1/projects/p/messages:send"
    r = requests.post(send, headers=auth, timeout=5, data=b'{"message":{"token":"a","token":"b"}}')
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT" and "duplicate" in err["message"]
    assert mock.stats(summary=True)["targets"] == 0
    r = requests.post(send, headers=auth, timeout=5, data=b'{"message":{"token":"a","data":{"k":"v"}}}')
    assert r.status_code == 200
    assert mock.token("a")["message"] == {"token": "a", "data": {"k": "v"}}


def test_legacy_huge_and_endless_answers(start_mock):
    """The long answers fcmd's tests rely on are as long as they say."""
    mock = start_mock("--huge-body", "100000")
    r = requests.post(mock.url(), json={"registration_ids": ["hugeafter-1", "notreg-2"]}, timeout=5)
    body = r.json()
    assert r.status_code == 200 and len(r.content) > 100000 and len(body["padding"]) == 100000
    assert [x.get("error") for x in body["results"]] == [None, "NotRegistered"]
    r = requests.post(mock.url(), json={"registration_ids": ["hugebefore-1"]}, timeout=5)
    assert r.status_code == 200 and r.text.index('"padding"') < r.text.index('"results"') and len(r.content) > 100000
    r = requests.post(mock.url(), json={"registration_ids": ["huge503once-1"]}, timeout=5)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and len(r.content) > 100000
    assert requests.post(mock.url(), json={"registration_ids": ["huge503once-1"]}, timeout=5).status_code == 200
    got = b""
    with requests.post(mock.url(), json={"registration_ids": ["endless-1"]}, stream=True, timeout=5) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(65536):
            got += chunk
            if len(got) > 4 << 20:
                break
    assert len(got) > 4 << 20  # far past --huge-body: it does not end
    assert got.startswith(b'{"multicast_id":1,"results":[{"message_id":') and b'"padding":"xxxx' in got
    s = mock.stats(summary=True)
    assert s["huge_answers"] == 3 and s["endless_answers"] == 1 and s["endless_bytes"] > 4 << 20
