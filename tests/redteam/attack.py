#!/usr/bin/env python3
"""Independent red-team attack script for a running Polity demo node.

Usage: python3 attack.py [--host 127.0.0.1] [--port 18080] [--data-dir /tmp/redteam/data]

Every attempt records: category, name, status, verdict. Verdict rules:
  FAIL  if the attack got data / a 2xx it should not, a 5xx, or a 401/403 refusal that left
        no new "denied" entry in DATA/audit/entries.
Results are printed as a table and written to /tmp/redteam/results.json.
"""
import argparse, base64, http.client, json, os, re, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=18080)
ap.add_argument("--data-dir", default="/tmp/redteam/data")
ap.add_argument("--bin", default="/tmp/redteam/polity")
ap.add_argument("--skip-dp", action="store_true", help="skip the DP-budget exhaustion attack")
A = ap.parse_args()
ENTRIES = os.path.join(A.data_dir, "audit", "entries")

# ---------------------------------------------------------------- helpers
def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def unb64u(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

_tok = {}
def tok(principal, ttl=None):
    key = (principal, ttl)
    if key not in _tok:
        cmd = [A.bin, "token", "--data-dir", A.data_dir, "--as", principal]
        if ttl: cmd += ["--ttl", str(ttl)]
        _tok[key] = subprocess.check_output(cmd, text=True).strip()
    return _tok[key]

def req(method, path, token=None, headers=None, body=None, scheme="Bearer"):
    """headers: list of (name, value) so that duplicates can be sent."""
    c = http.client.HTTPConnection(A.host, A.port, timeout=30)
    c.putrequest(method, path, skip_accept_encoding=True)
    hs = list(headers or [])
    if token is not None:
        hs.insert(0, ("Authorization", f"{scheme} {token}" if scheme else token))
    if body is not None:
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
            if not any(h[0].lower() == "content-type" for h in hs):
                hs.append(("Content-Type", "application/json"))
        hs.append(("Content-Length", str(len(body))))
    for k, v in hs:
        c.putheader(k, v)
    c.endheaders()
    t0 = time.perf_counter()
    if body is not None:
        c.send(body)
    r = c.getresponse()
    data = r.read() if method != "HEAD" else b""
    dt = time.perf_counter() - t0
    out = (r.status, dict((k.lower(), v) for k, v in r.getheaders()), data.decode("utf-8", "replace"), dt)
    c.close()
    return out

def audit_entries():
    """Every JSON entry of the audit log file, in order."""
    try:
        raw = open(ENTRIES, "rb").read()
    except FileNotFoundError:
        return []
    dec = json.JSONDecoder()
    out = []
    for m in re.finditer(rb'\{"at":', raw):
        s = raw[m.start():]
        try:
            txt = s.decode("utf-8", "ignore")
            obj, _ = dec.raw_decode(txt)
            out.append(obj)
        except Exception:
            pass
    return out

RESULTS = []
def record(cat, name, status, ok, note="", repro=""):
    RESULTS.append(dict(cat=cat, name=name, status=status, verdict="PASS" if ok else "FAIL", note=note, repro=repro))
    print(f"{'PASS' if ok else 'FAIL'} [{cat}] {name}: {status} {note}", flush=True)

def curl(method, path, token_desc, headers, body):
    parts = [f"curl -s -i -X {method}"]
    if token_desc:
        parts.append(f"-H \"Authorization: {token_desc}\"")
    for k, v in headers or []:
        parts.append(f"-H '{k}: {v}'")
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            parts.append("--data-binary '" + body.decode("utf-8", "replace") + "'")
        else:
            parts.append("-H 'Content-Type: application/json' --data '" + (body if isinstance(body, str) else json.dumps(body)) + "'")
    parts.append(f"'http://{A.host}:{A.port}{path}'")
    return " ".join(parts)

def attempt(cat, name, method, path, token=None, headers=None, body=None, expect=(401, 403),
            check=None, scheme="Bearer", token_desc=None, audited=None):
    """expect: acceptable statuses. check(status, hdrs, body) -> (ok, note) for extra checks.
    audited: True if a new denied entry must appear (default: status in 401/403)."""
    before = len(audit_entries())
    st, h, b, dt = req(method, path, token, headers, body, scheme)
    new = audit_entries()[before:]
    ok = st in expect and st < 500
    note = ""
    if st >= 500: note = "5xx! " + b[:120]
    elif st not in expect: note = f"expected {expect}; body: {b[:160]}"
    if ok and check:
        cok, cnote = check(st, h, b)
        ok = ok and cok
        note = (note + " " + cnote).strip()
    need_audit = audited if audited is not None else st in (401, 403)
    if need_audit:
        denied = [e for e in new if str(e.get("outcome", "")).startswith("denied")]
        if not denied:
            ok = False
            note = (note + " NO AUDIT ENTRY for this refusal").strip()
        else:
            note = (note + f" audited:{denied[0]['outcome'][:40]}").strip()
    if st == 401 and "www-authenticate" not in h:
        ok = False; note += " 401 without WWW-Authenticate"
    record(cat, name, st, ok, note, curl(method, path, token_desc or ("Bearer $TOKEN" if token else None), headers, body) if not ok else "")
    return st, h, b

def sign_ed(priv, header, payload):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    p = b64u(json.dumps(payload, separators=(",", ":")).encode())
    sig = priv.sign(f"{h}.{p}".encode())
    return f"{h}.{p}.{b64u(sig)}"

def node_key():
    """The node's own built-in issuer key (read from the data dir) - used ONLY to make
    otherwise-valid tokens with one defect, to test each claim check in isolation."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    d = json.load(open(os.path.join(A.data_dir, "identity", "keys.json")))
    k = d["keys"][0]
    raw = unb64u(k["pkcs8"])
    return k["kid"], Ed25519PrivateKey.from_private_bytes(raw[16:48]), raw[-32:]

def split(t):
    h, p, s = t.split(".")
    return json.loads(unb64u(h)), json.loads(unb64u(p)), s

def no_personal(st, h, b):
    bad = [w for w in ("accountNumber", "ACC", "pn1:", "owner") if w in b]
    return (not bad, "LEAK: " + ",".join(bad) if bad else "no personal attrs")

def has_personal(st, h, b):
    ok = "accountNumber" in b
    return (True, "personal attrs released (legit)" if ok else "no personal attrs")

T = lambda t: [("NGSILD-Tenant", t)]
ENT = "/ngsi-ld/v1/entities"
UPS = "/ngsi-ld/v1/entityOperations/upsert"
TYPES = "/ngsi-ld/v1/types"
TEMP = "/ngsi-ld/v1/temporal/entities/"
SENML = "/api/ingest/senml"

def wm(ident, owner, acct, val=10):
    return {"id": f"urn:ngsi-ld:WaterMeter:{ident}", "type": "WaterMeter",
            "owner": {"type": "Relationship", "object": f"urn:ngsi-ld:Person:{owner}"},
            "accountNumber": {"type": "Property", "value": acct},
            "waterConsumption": {"type": "Property", "value": val}}

# ---------------------------------------------------------------- setup (legitimate)
ADM = tok("city-admin:adelaide"); MADM = tok("city-admin:melbourne")
ANA = tok("city-analyst:adelaide"); OPR = tok("operator"); SEC = tok("security-analyst")
APP = tok("app:parking:adelaide"); APP2 = tok("app:other:adelaide")
BOB = tok("citizen:adelaide:bob"); ALICE = tok("citizen:adelaide:alice")
MAL = tok("citizen:adelaide:mallory")

s = req("POST", UPS, ADM, T("adelaide"), [wm("alice-1", "alice", "ACC 1111 2222", 11),
                                          wm("bob-1", "bob", "ACC 3333 4444", 22),
                                          wm("mallory-1", "mallory", "ACC 5555 6666", 33)])
print("setup adelaide upsert:", s[0], s[2][:200])
s = req("POST", UPS, MADM, T("melbourne"), [wm("carol-1", "carol", "ACC 7777 8888", 44)])
print("setup melbourne upsert:", s[0], s[2][:200])
time.sleep(1.5)
ALICE_ID = "urn:ngsi-ld:WaterMeter:alice-1"; BOB_ID = "urn:ngsi-ld:WaterMeter:bob-1"
MEL_ID = "urn:ngsi-ld:WaterMeter:carol-1"; NONE_ID = "urn:ngsi-ld:WaterMeter:nobody-xyz"
st, _, b, _ = req("GET", f"{ENT}?type=AirQualityObserved&limit=1", ADM, T("adelaide"))
ADL_PUB = json.loads(b)[0]["id"] if st == 200 and json.loads(b) else ALICE_ID
st, _, b, _ = req("GET", f"{ENT}?type=AirQualityObserved&limit=1", MADM, T("melbourne"))
MEL_PUB = json.loads(b)[0]["id"] if st == 200 and json.loads(b) else MEL_ID
print("ids:", ADL_PUB, MEL_PUB)
st, _, b, _ = req("GET", f"{ENT}/{ALICE_ID}", ADM, T("adelaide") + [("Polity-Purpose", "billing")])
print("admin+purpose alice-1:", st, b[:300])
st, _, b, _ = req("GET", "/api/audit/head", SEC)
HEAD0 = json.loads(b)["tree_size"] if st == 200 else None
N0 = len(audit_entries())
print("audit tree size before attacks:", HEAD0, "entries in file:", N0)

# ---------------------------------------------------------------- 1. token forgery
kid, NK, NPUB = node_key()
now = int(time.time())
H0, P0, S0 = split(ADM)
def claims(**kw):
    c = dict(P0); c.update(kw); c["jti"] = "redteam-" + str(time.time_ns()); return c
hdr = {"typ": "at+jwt", "alg": "EdDSA", "kid": kid}
TGT = (TYPES, T("adelaide"))
def forge(name, token, scheme="Bearer", headers=None):
    attempt("1-token", name, "GET", TGT[0], token, (headers or []) + TGT[1], expect=(401,),
            scheme=scheme, token_desc=f"{scheme} <forged: {name}>")

op_claims = claims(role="operator", sub="operator"); op_claims.pop("tenants", None)
forge("alg none, empty sig, role=operator",
      b64u(json.dumps({"typ": "at+jwt", "alg": "none"}).encode()) + "." + b64u(json.dumps(op_claims).encode()) + ".")
forge("alg none, original sig kept",
      b64u(json.dumps({"typ": "at+jwt", "alg": "none", "kid": kid}).encode()) + "." + ADM.split(".")[1] + "." + S0)
forge("alg NONE (case)", b64u(json.dumps({"typ": "at+jwt", "alg": "NONE"}).encode()) + "." + b64u(json.dumps(op_claims).encode()) + ".")
import hmac, hashlib
for label, secret in [("raw pubkey", NPUB), ("b64u pubkey", b64u(NPUB).encode()), ("kid string", kid.encode()),
                      ("PEM pubkey", b"-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(bytes.fromhex("302a300506032b6570032100") + NPUB) + b"\n-----END PUBLIC KEY-----\n")]:
    h = b64u(json.dumps({"typ": "at+jwt", "alg": "HS256", "kid": kid}).encode())
    p = b64u(json.dumps(op_claims).encode())
    sig = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    forge(f"HS256 keyed with {label} (alg confusion)", f"{h}.{p}.{b64u(sig)}")
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
MINE = Ed25519PrivateKey.generate()
forge("own Ed25519 key, spoofed kid", sign_ed(MINE, hdr, op_claims))
forge("own Ed25519 key, no kid", sign_ed(MINE, {"typ": "at+jwt", "alg": "EdDSA"}, op_claims))
forge("own key, kid=../../identity/keys.json", sign_ed(MINE, {**hdr, "kid": "../../identity/keys.json"}, op_claims))
forge("own key, jwk embedded in header", sign_ed(MINE, {**hdr, "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64u(MINE.public_key().public_bytes_raw())}}, op_claims))
forge("own key, iss=attacker", sign_ed(MINE, hdr, {**op_claims, "iss": "https://evil.example"}))
# otherwise-valid tokens (node key) with exactly one defect
forge("expired (exp now-120)", sign_ed(NK, hdr, claims(exp=now - 120, nbf=now - 3600, iat=now - 3600)))
forge("nbf in future (+3600)", sign_ed(NK, hdr, claims(nbf=now + 3600, iat=now, exp=now + 7200)))
forge("wrong aud", sign_ed(NK, hdr, claims(aud="not-polity")))
forge("aud missing", sign_ed(NK, hdr, {k: v for k, v in claims().items() if k != "aud"}))
forge("exp missing", sign_ed(NK, hdr, {k: v for k, v in claims().items() if k != "exp"}))
forge("wrong iss (same key)", sign_ed(NK, hdr, claims(iss="urn:polity:issuer:other")))
forge("typ JWT", sign_ed(NK, {**hdr, "typ": "JWT"}, claims()))
forge("typ absent", sign_ed(NK, {"alg": "EdDSA", "kid": kid}, claims()))
forge("crit header", sign_ed(NK, {**hdr, "crit": ["exp"]}, claims()))
forge("crit header (b64=false)", sign_ed(NK, {**hdr, "crit": ["b64"], "b64": False}, claims()))
forge("oversize (>8 KiB, validly signed)", sign_ed(NK, hdr, claims(pad="A" * 9000)))
forge("unknown role 'root'", sign_ed(NK, hdr, claims(role="root")))
# payload edits keeping the original signature
forge("payload edit role->operator, orig sig", ADM.split(".")[0] + "." + b64u(json.dumps(op_claims).encode()) + "." + S0)
forge("payload edit tenants->melbourne, orig sig",
      ADM.split(".")[0] + "." + b64u(json.dumps({**P0, "tenants": ["melbourne"], "sub": "city-admin:melbourne"}).encode()) + "." + S0)
forge("payload edit tenants->[adelaide,melbourne], orig sig",
      ADM.split(".")[0] + "." + b64u(json.dumps({**P0, "tenants": ["adelaide", "melbourne"]}).encode()) + "." + S0)
hb, pb, sb = split(BOB)
forge("citizen sub bob->alice, orig sig", BOB.split(".")[0] + "." + b64u(json.dumps({**pb, "sub": pb["sub"].replace("bob", "alice")}).encode()) + "." + sb)
forge("exp extended, orig sig", ADM.split(".")[0] + "." + b64u(json.dumps({**P0, "exp": P0["exp"] + 86400 * 365}).encode()) + "." + S0)
# signature malleability: S + L (non-canonical) must be rejected
L = 2**252 + 27742317777372353535851937790883648493
sig = unb64u(S0); Sv = int.from_bytes(sig[32:], "little") + L
forge("Ed25519 malleable sig (S+L)", ADM.rsplit(".", 1)[0] + "." + b64u(sig[:32] + Sv.to_bytes(32, "little")))
forge("sig truncated", ADM[:-10])
forge("sig bit-flipped", ADM[:-2] + ("A" if ADM[-2] != "A" else "B") + ADM[-1])
forge("4-part token", ADM + ".AAAA")
forge("JWS JSON serialization", json.dumps({"protected": ADM.split(".")[0], "payload": ADM.split(".")[1], "signature": S0}))
forge("garbage", "not-a-token")
forge("empty bearer", "")
forge("forged token, scheme 'bearer' lowercase", ADM.split(".")[0] + "." + b64u(json.dumps(op_claims).encode()) + "." + S0, scheme="bearer")
forge("valid token, scheme Basic", ADM, scheme="Basic")
attempt("1-token", "two Authorization headers (both valid)", "GET", TYPES, None,
        [("Authorization", f"Bearer {ADM}"), ("Authorization", f"Bearer {OPR}")] + T("adelaide"), expect=(401,),
        token_desc=None)
attempt("1-token", "two Authorization headers (forged + valid)", "GET", TYPES, None,
        [("Authorization", "Bearer x.y.z"), ("Authorization", f"Bearer {ADM}")] + T("adelaide"), expect=(401,))
attempt("1-token", "valid token, scheme 'bearer' lowercase (legit)", "GET", TYPES, ADM, T("adelaide"), expect=(200,), scheme="bearer")
attempt("1-token", "valid token, scheme 'BEARER' uppercase (legit)", "GET", TYPES, ADM, T("adelaide"), expect=(200,), scheme="BEARER")
attempt("1-token", "token in query string ?access_token=", "GET", f"{TYPES}?access_token={ADM}", None, T("adelaide"), expect=(401,))
attempt("1-token", "cookie polity_token on POST upsert (CSRF)", "POST", UPS, None,
        T("adelaide") + [("Cookie", f"polity_token={ADM}"), ("Origin", "https://evil.example")],
        [wm("csrf-1", "x", "ACC 0")], expect=(401,))
attempt("1-token", "cookie polity_token on POST senml (CSRF)", "POST", SENML, None,
        T("adelaide") + [("Cookie", f"polity_token={ADM}"), ("Content-Type", "application/senml+json")],
        b'[{"n":"urn:ngsi-ld:Device:csrf:temperature","v":1}]', expect=(401,))
attempt("1-token", "cookie polity_token on POST /api/me/erase (CSRF)", "POST", "/api/me/erase", None,
        [("Cookie", f"polity_token={MAL}")], expect=(401,))
attempt("1-token", "cookie on GET (legit page session)", "GET", TYPES, None, T("adelaide") + [("Cookie", f"polity_token={ADM}")], expect=(200,))
attempt("1-token", "forged cookie on GET", "GET", TYPES, None, T("adelaide") + [("Cookie", "polity_token=a.b.c")], expect=(401,))
attempt("1-token", "POST /login with forged token (token brute force)", "POST", "/login", None,
        [("Content-Type", "application/x-www-form-urlencoded")], b"token=eyJhbGciOiJub25lIn0.e30.", expect=(401,))
attempt("1-token", "anonymous GET /metrics", "GET", "/metrics", None, expect=(401,))
attempt("1-token", "anonymous on unrouted path /nope", "GET", "/nope", None, expect=(401,))

# ---------------------------------------------------------------- 2. cross-tenant
for ten in ("melbourne", "sydney"):
    h = T(ten)
    attempt("2-tenant", f"admin:adl GET entities?type {ten}", "GET", f"{ENT}?type=WaterMeter", ADM, h)
    attempt("2-tenant", f"admin:adl GET entity by id {ten}", "GET", f"{ENT}/{MEL_ID if ten=='melbourne' else MEL_PUB}", ADM, h)
    attempt("2-tenant", f"admin:adl POST entity {ten}", "POST", ENT, ADM, h, wm(f"x-{ten}", "x", "ACC 9"))
    attempt("2-tenant", f"admin:adl batch upsert {ten}", "POST", UPS, ADM, h, [wm(f"y-{ten}", "x", "ACC 9")])
    attempt("2-tenant", f"admin:adl types {ten}", "GET", TYPES, ADM, h)
    attempt("2-tenant", f"admin:adl temporal {ten}", "GET", f"{TEMP}{MEL_ID}", ADM, h)
    attempt("2-tenant", f"admin:adl senml ingest {ten}", "POST", SENML, ADM, h + [("Content-Type", "application/senml+json")],
            b'[{"n":"urn:ngsi-ld:Device:rt:temperature","v":1}]')
attempt("2-tenant", "app:parking:adelaide GET melbourne", "GET", f"{ENT}?type=WaterMeter", APP, T("melbourne"))
attempt("2-tenant", "citizen bob GET melbourne", "GET", f"{ENT}?type=WaterMeter", BOB, T("melbourne"))
attempt("2-tenant", "analyst:adl GET melbourne", "GET", f"{ENT}?type=WaterMeter", ANA, T("melbourne"))
TH = lambda v: [("NGSILD-Tenant", v)]
for label, hs in [("'MELBOURNE'", TH("MELBOURNE")), ("' melbourne' (lead space)", TH(" melbourne")),
                  ("'melbourne ' (trail space)", TH("melbourne ")), ("'adelaide,melbourne'", TH("adelaide,melbourne")),
                  ("'melbourne,adelaide'", TH("melbourne,adelaide")), ("'mel%62ourne' (url-enc)", TH("mel%62ourne")),
                  ("'melbourne\\t'", TH("melbourne\t")), ("'default'", TH("default")), ("'nosuchcity'", TH("nosuchcity")),
                  ("lowercase header name", [("ngsild-tenant", "melbourne")]),
                  ("two headers melbourne,adelaide", TH("melbourne") + TH("adelaide")),
                  ("no header (default tenant)", []), ("Fiware-Service: melbourne, no NGSILD", [("Fiware-Service", "melbourne")])]:
    exp = (400, 401, 403)
    attempt("2-tenant", f"admin:adl tenant {label} GET query", "GET", f"{ENT}?type=WaterMeter", ADM, hs, expect=exp,
            check=lambda st, h, b: ("carol" not in b, "LEAK melbourne data" if "carol" in b else ""))
    attempt("2-tenant", f"admin:adl tenant {label} upsert", "POST", UPS, ADM, hs, [wm("tenant-trick", "x", "ACC 1")], expect=exp)
# two headers adelaide first: gate and handler must agree (data must be adelaide's only)
attempt("2-tenant", "two headers adelaide,melbourne GET (first wins; must be adl data only)", "GET", f"{ENT}?type=WaterMeter&limit=100",
        ADM, TH("adelaide") + TH("melbourne"), expect=(200, 400, 403),
        check=lambda st, h, b: ("carol" not in b, "LEAK melbourne data" if "carol" in b else "adelaide data only"))
st_, _, _ = attempt("2-tenant", "two headers adelaide,melbourne upsert (first wins)", "POST", UPS, ADM,
                    TH("adelaide") + TH("melbourne"), [wm("twohdr-1", "x", "ACC 1")], expect=(201, 204, 400, 403))
s2 = req("GET", f"{ENT}/urn:ngsi-ld:WaterMeter:twohdr-1", MADM, T("melbourne"))
record("2-tenant", "  ...twohdr-1 did not land in melbourne", s2[0], s2[0] == 404, "" if s2[0] == 404 else "WRITTEN INTO MELBOURNE")
attempt("2-tenant", "admin:adl query id=<melbourne id> in adelaide", "GET", f"{ENT}?id={MEL_ID}", ADM, T("adelaide"), expect=(200,),
        check=lambda st, h, b: (b.strip() == "[]", "empty" if b.strip() == "[]" else "LEAK " + b[:80]))

# ---------------------------------------------------------------- 3. id enumeration
def timing(path, token, hs, n=25):
    ts = []; last = None
    for _ in range(n):
        st, h, b, dt = req("GET", path, token, hs); ts.append(dt); last = (st, b)
    return statistics.median(ts) * 1000, last
def norm(b, *ids):
    for i in ids: b = b.replace(i, "ID")
    return b
for label, p_exist, p_none in [("entity", f"{ENT}/{ALICE_ID}", f"{ENT}/{NONE_ID}"),
                               ("temporal", f"{TEMP}{ALICE_ID}", f"{TEMP}{NONE_ID}"),
                               ("public entity (no owner)", f"{ENT}/{ADL_PUB}", f"{ENT}/{NONE_ID}")]:
    te, (se, be) = timing(p_exist, BOB, T("adelaide"))
    tn, (sn, bn) = timing(p_none, BOB, T("adelaide"))
    same = se == sn == 404 and norm(be, ALICE_ID, ADL_PUB) == norm(bn, NONE_ID)
    record("3-enum", f"bob: other's {label} vs missing", f"{se}/{sn}", same,
           f"median {te:.1f}ms vs {tn:.1f}ms; bodies {'identical' if same else 'DIFFER: ' + be[:80] + ' | ' + bn[:80]}")
for label, q in [("id=alice-1", f"{ENT}?id={ALICE_ID}&count=true"), ("id=missing", f"{ENT}?id={NONE_ID}&count=true")]:
    st, h, b, _ = req("GET", q, BOB, T("adelaide"))
    record("3-enum", f"bob: query {label}", st, st == 200 and b.strip() == "[]" and h.get("ngsild-results-count") == "0",
           f"body {b[:60]} count {h.get('ngsild-results-count')}")
st, h, b, _ = req("GET", f"{ENT}?type=WaterMeter&count=true&limit=100", BOB, T("adelaide"))
ids = [e["id"] for e in json.loads(b)] if st == 200 else []
record("3-enum", "bob: query type=WaterMeter sees only own", st, st == 200 and ids == [BOB_ID] and h.get("ngsild-results-count") == "1",
       f"ids={ids} count={h.get('ngsild-results-count')}")
st, h, b, _ = req("GET", f"{ENT}?attrs=accountNumber&count=true&limit=100", BOB, T("adelaide"))
record("3-enum", "bob: query attrs=accountNumber sees only own", st, st == 200 and "alice" not in b and "mallory" not in b, b[:80])
st, h, b, _ = req("GET", f"{ENT}?type=AirQualityObserved&count=true", BOB, T("adelaide"))
record("3-enum", "bob: query public type (unowned) -> nothing", st, st == 200 and b.strip() == "[]", f"count={h.get('ngsild-results-count')}")
ra = req("GET", f"{ENT}/{MEL_ID}", ADM, T("melbourne")); rb = req("GET", f"{ENT}/{NONE_ID}", ADM, T("melbourne"))
record("3-enum", "admin:adl melbourne existing vs missing id", f"{ra[0]}/{rb[0]}", ra[0] == rb[0] == 403 and ra[2] == rb[2],
       "identical 403" if ra[2] == rb[2] else "DIFFER")
ra = req("GET", f"{ENT}/{MEL_ID}", ADM, T("melbourne")); rb = req("GET", f"{ENT}/{MEL_ID}", ADM, T("nosuchcity"))
record("3-enum", "admin:adl existing city vs non-existent city", f"{ra[0]}/{rb[0]}", ra[0] == rb[0] == 403, "both 403 before handler")

# ---------------------------------------------------------------- 4. privilege escalation
attempt("4-priv", "analyst POST entity", "POST", ENT, ANA, T("adelaide"), wm("ana-1", "x", "ACC 1"))
attempt("4-priv", "analyst batch upsert", "POST", UPS, ANA, T("adelaide"), [wm("ana-2", "x", "ACC 1")])
attempt("4-priv", "analyst senml ingest", "POST", SENML, ANA, T("adelaide") + [("Content-Type", "application/senml+json")],
        b'[{"n":"urn:ngsi-ld:Device:ana:temperature","v":1}]')
attempt("4-priv", "analyst GET alice-1 + purpose (no personal)", "GET", f"{ENT}/{ALICE_ID}", ANA,
        T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=no_personal)
attempt("4-priv", "analyst temporal alice-1 (no personal)", "GET", f"{TEMP}{ALICE_ID}", ANA, T("adelaide"), expect=(200,), check=no_personal)
attempt("4-priv", "admin GET alice-1 without purpose (no personal)", "GET", f"{ENT}/{ALICE_ID}", ADM, T("adelaide"), expect=(200,), check=no_personal)
attempt("4-priv", "app GET alice-1 + purpose, no consent", "GET", f"{ENT}/{ALICE_ID}", APP,
        T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=no_personal)
attempt("4-priv", "app query WaterMeter + purpose, no consent", "GET", f"{ENT}?type=WaterMeter", APP,
        T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=no_personal)
attempt("4-priv", "app temporal alice-1 + purpose, no consent", "GET", f"{TEMP}{ALICE_ID}", APP,
        T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=no_personal)
# alice consents to app:parking:adelaide billing/water-consumption
st, _, b, _ = req("POST", "/api/me/consents", ALICE, None, {"recipient": "app:parking:adelaide", "purpose": "billing",
                                                             "dataCategories": ["water-consumption"], "durationDays": 30})
ALICE_CONSENT = json.loads(b)["consent"]["consent_id"] if st == 201 and "consent_id" in b else (json.loads(b).get("consent", {}) if st == 201 else {})
if isinstance(ALICE_CONSENT, dict):
    ALICE_CONSENT = ALICE_CONSENT.get("consentId") or ALICE_CONSENT.get("id") or ""
print("alice consent:", st, ALICE_CONSENT, b[:200])
attempt("4-priv", "app WITH alice's consent, purpose billing (legit)", "GET", f"{ENT}/{ALICE_ID}", APP,
        T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=has_personal)
attempt("4-priv", "app with consent but other purpose (research)", "GET", f"{ENT}/{ALICE_ID}", APP,
        T("adelaide") + [("Polity-Purpose", "research")], expect=(200,), check=no_personal)
attempt("4-priv", "app with consent, purpose 'Billing' (case)", "GET", f"{ENT}/{ALICE_ID}", APP,
        T("adelaide") + [("Polity-Purpose", "Billing")], expect=(200,), check=no_personal)
attempt("4-priv", "other app (app:other) same purpose", "GET", f"{ENT}/{ALICE_ID}", APP2,
        T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=no_personal)
attempt("4-priv", "consented app reading bob-1 (no consent from bob)", "GET", f"{ENT}/{BOB_ID}", APP,
        T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=no_personal)
for p in ("/metrics", "/api/audit/head", "/api/aggregates/WaterConsumptionObserved", "/api/aggregates/AirQualityObserved"):
    attempt("4-priv", f"citizen GET {p}", "GET", p, BOB)
attempt("4-priv", "city-admin GET /api/audit/head", "GET", "/api/audit/head", ADM)
attempt("4-priv", "city-admin GET /metrics", "GET", "/metrics", ADM)
attempt("4-priv", "app GET /api/aggregates/ParkingSpot", "GET", "/api/aggregates/ParkingSpot", APP)
attempt("4-priv", "bob grant consent with extra field subject=alice", "POST", "/api/me/consents", BOB, None,
        {"recipient": "app:parking:adelaide", "purpose": "billing", "dataCategories": ["water-consumption"], "durationDays": 30,
         "subject": "alice"}, expect=(400, 403))
st_b, _, b_b, _ = req("POST", "/api/me/consents?subject=alice&tenant=melbourne", BOB, T("melbourne") + [("X-Subject", "alice")],
                  {"recipient": "app:parking:adelaide", "purpose": "billing", "dataCategories": ["water-consumption"], "durationDays": 30})
sub_of = lambda t: {c.get("piiPrincipalId") for c in json.loads(req("GET", "/api/me/consents", t)[2])}
bob_subs, alice_subs = sub_of(BOB), sub_of(ALICE)
made = json.loads(b_b).get("consent", {}) if st_b == 201 else {}
ok = st_b in (201, 400, 403) and (st_b != 201 or (made.get("piiPrincipalId") in bob_subs and made.get("piiPrincipalId") not in alice_subs
                                                  and made.get("tenant") == "adelaide"))
record("4-priv", "bob grant consent ?subject=alice, NGSILD-Tenant melbourne, X-Subject", st_b, ok,
       f"consent bound to bob ({made.get('piiPrincipalId','')[:22]}), tenant {made.get('tenant')}" if ok else "BOUND TO ALICE/MELBOURNE " + b_b[:100])
record("4-priv", "alice's and bob's consents are disjoint", 200, not (bob_subs & alice_subs) and len(alice_subs) == 1, f"alice {len(alice_subs)} subject(s)")
if ALICE_CONSENT:
    attempt("4-priv", "bob withdraws alice's consent id", "DELETE", f"/api/me/consents/{ALICE_CONSENT}", BOB, expect=(403, 404))
    attempt("4-priv", "admin:adl withdraws alice's consent id", "DELETE", f"/api/me/consents/{ALICE_CONSENT}", ADM)
    attempt("4-priv", "operator withdraws alice's consent id", "DELETE", f"/api/me/consents/{ALICE_CONSENT}", OPR)
st, _, b, _ = req("GET", "/api/me/export?subject=alice&id=alice", BOB, T("adelaide") + [("X-Subject", "alice")])
record("4-priv", "bob export ?subject=alice", st, st == 200 and ALICE_ID not in b and "1111" not in b, "own data only" if ALICE_ID not in b else "LEAK alice")
for who, t in [("city-admin", ADM), ("operator", OPR), ("analyst", ANA), ("app", APP), ("security-analyst", SEC)]:
    attempt("4-priv", f"{who} GET /api/me/export", "GET", "/api/me/export", t)
    attempt("4-priv", f"{who} GET /api/me/access-log", "GET", "/api/me/access-log", t)
attempt("4-priv", "city-admin POST /api/me/erase", "POST", "/api/me/erase", ADM)
attempt("4-priv", "operator POST /api/me/erase", "POST", "/api/me/erase", OPR)
st, _, b, _ = req("POST", "/api/me/erase?subject=alice", MAL, T("adelaide"), {"subject": "alice", "tenant": "adelaide"})
st2, _, b2, _ = req("GET", f"{ENT}/{ALICE_ID}", ALICE, T("adelaide"))
record("4-priv", "mallory erase ?subject=alice (body subject=alice)", st, st in (200, 400, 403) and "accountNumber" in b2,
       "alice's data still readable by alice" if "accountNumber" in b2 else "ALICE DATA GONE: " + b2[:100])
for path in (f"{ENT}/{ALICE_ID}", f"{ENT}?type=WaterMeter", f"{TEMP}{ALICE_ID}"):
    attempt("4-priv", f"operator + purpose GET {path.split('/')[-1][:30]} (no personal)", "GET", path, OPR,
            T("adelaide") + [("Polity-Purpose", "billing")], expect=(200,), check=no_personal)
attempt("4-priv", "operator batch upsert", "POST", UPS, OPR, T("adelaide"), [wm("op-1", "x", "ACC 1")])
attempt("4-priv", "operator POST entity", "POST", ENT, OPR, T("adelaide"), wm("op-2", "x", "ACC 1"))
attempt("4-priv", "security-analyst NGSI-LD query", "GET", f"{ENT}?type=WaterMeter", SEC, T("adelaide"))
attempt("4-priv", "citizen types", "GET", TYPES, BOB, T("adelaide"))
attempt("4-priv", "citizen batch [own bob-1, alice-1]", "POST", UPS, BOB, T("adelaide"),
        [wm("bob-1", "bob", "ACC 3333 4444", 99), wm("alice-1", "bob", "ACC 0", 0)])
attempt("4-priv", "citizen POST entity owned by self", "POST", ENT, BOB, T("adelaide"), wm("bob-new", "bob", "ACC 1"))
attempt("4-priv", "citizen senml ingest", "POST", SENML, BOB, T("adelaide") + [("Content-Type", "application/senml+json")],
        b'[{"n":"urn:ngsi-ld:WaterMeter:alice-1:waterConsumption","v":0}]')
st, _, b, _ = req("GET", f"{ENT}/{ALICE_ID}?options=keyValues", ADM, T("adelaide") + [("Polity-Purpose", "billing")])
record("4-priv", "alice-1 unchanged after citizen/analyst/operator writes", st, '"waterConsumption":11' in b.replace(" ", ""), b[:120])
# path tricks
attempt("4-priv", "citizen //ngsi-ld/v1/entities (double slash)", "GET", "//ngsi-ld/v1/entities?type=WaterMeter", BOB, T("adelaide"),
        expect=(400, 401, 403, 404), check=lambda st, h, b: ("alice" not in b, ""))
attempt("4-priv", "anon //ngsi-ld/v1/entities", "GET", "//ngsi-ld/v1/entities?type=WaterMeter", None, T("adelaide"), expect=(401,))
attempt("4-priv", "citizen entities/..%2F..%2Fapi%2Faudit%2Fhead", "GET", f"{ENT}/..%2F..%2F..%2Fapi%2Faudit%2Fhead", BOB, T("adelaide"),
        expect=(400, 403, 404), check=lambda st, h, b: ("root_hash" not in b, ""))
attempt("4-priv", "citizen /ngsi-ld/v1/entities/../../../metrics", "GET", "/ngsi-ld/v1/entities/../../../metrics", BOB, None,
        expect=(400, 403, 404, 422), check=lambda st, h, b: ("polity_" not in b, ""))
attempt("4-priv", "citizen /metrics/ (trailing slash)", "GET", "/metrics/", BOB, expect=(401, 403, 404))
attempt("4-priv", "citizen /METRICS (case)", "GET", "/METRICS", BOB, expect=(401, 403, 404))
attempt("4-priv", "citizen /api/audit/head/ (trailing slash)", "GET", "/api/audit/head/", BOB, expect=(401, 403, 404))
attempt("4-priv", "citizen /metrics%00", "GET", "/metrics%00", BOB, expect=(400, 403, 404))
attempt("4-priv", "citizen OPTIONS /metrics", "OPTIONS", "/metrics", BOB, expect=(403, 404, 405))
attempt("4-priv", "citizen PUT /api/audit/head", "PUT", "/api/audit/head", BOB, expect=(403, 404, 405))
for p in ("/metrics", "/api/audit/head", "/api/aggregates/AirQualityObserved", f"{ENT}/{ALICE_ID}", TYPES):
    attempt("4-priv", f"citizen HEAD {p[:40]}", "HEAD", p, BOB, T("adelaide"), expect=(401, 403, 404, 405))
attempt("4-priv", "admin:adl HEAD /api/audit/head", "HEAD", "/api/audit/head", ADM, expect=(401, 403, 404, 405))
attempt("4-priv", "admin:adl HEAD entity in melbourne", "HEAD", f"{ENT}/{MEL_ID}", ADM, T("melbourne"), expect=(401, 403, 404, 405))

# DP budget exhaustion through the HEAD bypass: a citizen spends the national budget
if not A.skip_dp:
    sts = [req("HEAD", "/api/aggregates/TrafficFlowObserved?epsilon=0.5", BOB)[0] for _ in range(9)]
    st, _, b, _ = req("GET", "/api/aggregates/TrafficFlowObserved?epsilon=0.5", OPR)
    record("4-priv", "citizen HEAD x9 /api/aggregates/TrafficFlowObserved?epsilon=0.5 then operator GET", f"{sts[0]}..{sts[-1]} -> op {st}",
           st == 200 and 200 not in sts, "OPERATOR LOCKED OUT: " + b[:120] if st == 429 else "")
    st2 = req("GET", "/api/aggregates/AirQualityObserved", SEC)[0]
    record("4-priv", "  ...security-analyst GET another dataset afterwards", st2, st2 == 200,
           "whole 'residents' population budget gone" if st2 == 429 else "")

# ---------------------------------------------------------------- 5. audit bookkeeping
st, _, b, _ = req("GET", "/api/audit/head", SEC)
HEAD1 = json.loads(b)["tree_size"] if st == 200 else None
N1 = len(audit_entries())
refusals = sum(1 for r in RESULTS if r["status"] in (401, 403))
entries = audit_entries()[N0:]
denied = sum(1 for e in entries if str(e.get("outcome", "")).startswith("denied"))
print(f"\naudit tree size {HEAD0} -> {HEAD1} (+{(HEAD1 or 0) - (HEAD0 or 0)}); refusals seen by the script: {refusals}; "
      f"new denied entries: {denied}; new entries total: {N1 - N0}")
alltoks = [v for v in _tok.values()]
raw = open(ENTRIES, "rb").read()
leaks = [t[:20] for t in alltoks if t.encode() in raw or t.split(".")[2].encode() in raw]
record("5-audit", "no token text in audit entries", len(leaks), not leaks, f"{len(leaks)} token(s) found")
clear = [w for w in (b"citizen:adelaide:bob", b"citizen:adelaide:alice", b"Person:alice", b"ACC 1111") if w in raw]
record("5-audit", "no clear citizen ids / identifiers in audit", len(clear), not clear, ",".join(c.decode() for c in clear))

rel = [e for e in audit_entries() if e.get("action") == "personal.read" and e.get("outcome") == "released"]
actors = {e.get("actor") for e in rel}
record("5-audit", "personal-data releases audited (admin+purpose, app w/ consent, owner)", len(rel),
       any("app:parking" in a for a in actors) and any(a.startswith("city-admin") for a in actors) and all("bob" not in a and "alice" not in a for a in actors),
       ",".join(sorted(a.split(":pn1")[0] for a in actors)))
npass = sum(r["verdict"] == "PASS" for r in RESULTS); nfail = len(RESULTS) - npass
print(f"\nTOTAL {len(RESULTS)} attempts: {npass} PASS, {nfail} FAIL")
for r in RESULTS:
    if r["verdict"] == "FAIL":
        print(f"FAIL [{r['cat']}] {r['name']} -> {r['status']} {r['note']}\n    {r['repro']}")
json.dump(dict(results=RESULTS, head_before=HEAD0, head_after=HEAD1, denied=denied, refusals=refusals),
          open("/tmp/redteam/results.json", "w"), indent=1)
