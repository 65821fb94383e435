#!/usr/bin/env node
// tests/webpush/oracle.js - the Web Push tests' judge, sharing no code with
// fcmd: npm's http_ece decrypts bodies with the subscription's private key,
// and jws (web-push's own JWT library) verifies VAPID tokens with the public
// key their header names.  Before judging, it checks itself: RFC 8291's
// example decrypts to its plaintext, web-push's own encryption and VAPID
// headers pass, and a tampered body and token fail.
//
//   node oracle.js subscriptions N   prints N fresh subscriptions as JSON:
//                                    [{p256dh, auth, private}], base64url
//   node oracle.js judge < IN        IN: {"messages": [{body, private, p256dh,
//                                    auth}], "vapid": [header, ...]}; prints
//                                    {"self_check": {...}, "messages": [...],
//                                    "vapid": [...]}
//   node oracle.js send < IN         IN: {"subscription", "payload", "ttl",
//                                    "urgency", "topic"}: web-push sends it;
//                                    prints {"status", "publicKey"}
'use strict';

const crypto = require('crypto');
const ece = require('http_ece');
const jws = require('jws');
const webpush = require('web-push');

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const unb64 = (s) => Buffer.from(s, 'base64url');

function subscription() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  return {
    p256dh: b64(ecdh.getPublicKey()),
    auth: b64(crypto.randomBytes(16)),
    private: b64(ecdh.getPrivateKey()),
  };
}

// The plaintext of an aes128gcm body for the subscription, and what its
// header says.  Throws when it does not decrypt.
function decrypt(body, sub) {
  const receiver = crypto.createECDH('prime256v1');
  receiver.setPrivateKey(unb64(sub.private));
  const buf = unb64(body);
  const plaintext = ece.decrypt(buf, {
    version: 'aes128gcm',
    privateKey: receiver,
    authSecret: sub.auth,
  });
  return {
    plaintext: b64(plaintext),
    salt: b64(buf.subarray(0, 16)),
    rs: buf.readUInt32BE(16),
    idlen: buf[20],
    keyid: b64(buf.subarray(21, 21 + buf[20])),
    length: buf.length,
  };
}

function judgeMessage(m) {
  try {
    return decrypt(m.body, m);
  } catch (e) {
    return { error: String(e.message || e) };
  }
}

// "vapid t=<jwt>, k=<key>": whether the JWT's ES256 signature verifies with
// the key k names, and its header's and claims' JSON text (for the test to
// read strictly).
function judgeVapid(header) {
  const m = /^vapid t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+), k=([A-Za-z0-9_-]+)$/.exec(header);
  if (!m) return { valid: false, error: 'not "vapid t=<jwt>, k=<key>"' };
  const [, token, k] = m;
  const point = unb64(k);
  if (point.length !== 65 || point[0] !== 4) return { valid: false, error: 'k is not an uncompressed P-256 point' };
  let pem;
  try {
    pem = crypto.createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: b64(point.subarray(1, 33)), y: b64(point.subarray(33)) },
      format: 'jwk',
    }).export({ type: 'spki', format: 'pem' });
  } catch (e) {
    return { valid: false, error: 'k is not on P-256: ' + e.message };
  }
  const [head, claims] = token.split('.').slice(0, 2).map((part) => unb64(part).toString());
  return { valid: jws.verify(token, 'ES256', pem), k, header: head, claims };
}

// RFC 8291, Appendix A.
const RFC = {
  private: 'q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94',
  p256dh: 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4',
  auth: 'BTBZMqHH6r4Tts7J_aSIgg',
  body: 'DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_'
    + 'yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN',
  plaintext: 'When I grow up, I want to be a watermelon',
};

function selfCheck() {
  const out = {};
  out.rfc8291 = unb64(decrypt(RFC.body, RFC).plaintext).toString() === RFC.plaintext;
  const sub = subscription();
  const sent = webpush.encrypt(sub.p256dh, sub.auth, 'from web-push', 'aes128gcm');
  out.web_push_body = unb64(decrypt(b64(sent.cipherText), sub).plaintext).toString() === 'from web-push';
  const tampered = Buffer.from(sent.cipherText);
  tampered[tampered.length - 1] ^= 1;
  out.tampered_body_fails = 'error' in judgeMessage({ body: b64(tampered), ...sub });
  const keys = webpush.generateVAPIDKeys();
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const auth = webpush.getVapidHeaders('https://push.example', 'mailto:ops@example.com', keys.publicKey,
    keys.privateKey, 'aes128gcm', exp).Authorization;
  const judged = judgeVapid(auth);
  const claims = JSON.parse(judged.claims);
  out.web_push_vapid = judged.valid && claims.aud === 'https://push.example' && claims.exp === exp
    && judged.k === keys.publicKey;
  const other = webpush.generateVAPIDKeys();
  out.wrong_key_fails = !judgeVapid(auth.replace(/k=.*$/, 'k=' + other.publicKey)).valid;
  return out;
}

// Sends one message with web-push itself, to check the tests' push service
// (tests/integration/push_service.py) against the reference: input
// {subscription, payload, ttl, urgency, topic}; prints the answer's status
// and the VAPID public key web-push signed with.
async function send(input) {
  const keys = webpush.generateVAPIDKeys();
  const options = {
    TTL: input.ttl, urgency: input.urgency, topic: input.topic, contentEncoding: 'aes128gcm',
    vapidDetails: { subject: 'mailto:ops@example.com', publicKey: keys.publicKey, privateKey: keys.privateKey },
  };
  try {
    const r = await webpush.sendNotification(input.subscription, input.payload, options);
    return { status: r.statusCode, publicKey: keys.publicKey };
  } catch (e) {
    return { status: e.statusCode || 0, body: e.body || String(e), publicKey: keys.publicKey };
  }
}

function main() {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'send') {
    const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    send(input).then((out) => process.stdout.write(JSON.stringify(out) + '\n'));
    return 0;
  }
  if (cmd === 'subscriptions') {
    const n = parseInt(arg, 10) || 1;
    process.stdout.write(JSON.stringify(Array.from({ length: n }, subscription)) + '\n');
    return 0;
  }
  if (cmd === 'judge') {
    const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    process.stdout.write(JSON.stringify({
      self_check: selfCheck(),
      messages: (input.messages || []).map(judgeMessage),
      vapid: (input.vapid || []).map(judgeVapid),
    }) + '\n');
    return 0;
  }
  process.stderr.write('usage: node oracle.js subscriptions N | judge < input.json | send < message.json\n');
  return 2;
}

process.exitCode = main();
