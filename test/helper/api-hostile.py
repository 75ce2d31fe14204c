#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# api-hostile.py SOCKET ETCD-ENDPOINT PREFIX: test/suites/hardening.sh's table of hostile requests
# against fleetd's API on a unix socket (test only). Every endpoint, under /fleet/v1 and the
# /v1-alpha alias: hostile unit names (traversal, shell syntax, %00 and raw NUL, unicode, invalid
# UTF-8, 10 KB), malformed JSON, wrong types, unknown fields, huge values, NUL bytes, option
# injection through line breaks, oversized and mis-framed bodies, bad Content-Types, bad
# pagination tokens, bad PATCH operations, raw HTTP garbage. Each must get the expected status
# with a JSON error body {"error":{"code":N,"message":...}} (for N >= 400) and leave the raw etcd
# keys under PREFIX unchanged (keys, values and directories; TTL refreshes do not show). Bodies
# are sent both as a creation (a new name each) and as a replacement of an existing unit.
# Prints one line per failure, then a summary; exit status 1 on any failure.
#
# Accepted on purpose, like fleet, so not in the table: unit names fleet's rules allow that
# systemd would not run (".service", "a\\b.service"; the agent refuses to write those), and
# options with an empty section or name.
import json, socket, sys, urllib.request, time

SOCK, ETCD, PREFIX = sys.argv[1], sys.argv[2], sys.argv[3]

def dump():
    url = "%s/v2/keys%s?recursive=true&sorted=true" % (ETCD, PREFIX.rstrip("/"))
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise
    out = []
    def walk(n):
        if n.get("dir"):
            out.append(n["key"] + "/")
            for c in n.get("nodes", []):
                walk(c)
        else:
            out.append("%s=%s" % (n["key"], n.get("value")))
    walk(doc["node"])
    return sorted(out)

def exchange(raw, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(SOCK)
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close before taking everything
    data = b""
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not d:
            break
        data += d
        # one response is enough: stop once it is complete
        h = data.find(b"\r\n\r\n")
        if h >= 0:
            head = data[:h].decode("latin1")
            cl = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    cl = int(v.strip())
            if len(data) >= h + 4 + cl:
                break
    s.close()
    return data

def parse(data):
    h = data.find(b"\r\n\r\n")
    if h < 0:
        return None, None, None
    head = data[:h].decode("latin1").split("\r\n")
    try:
        status = int(head[0].split(" ")[1])
    except (IndexError, ValueError):
        return None, None, None
    hdrs = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, data[h + 4:]

def req(method, path, body=None, ctype="application/json", headers=(), raw=None):
    if raw is not None:
        return raw
    if isinstance(path, str):
        path = path.encode("latin1")
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: fleet", b"Connection: close"]
    if ctype is not None and body is not None:
        lines.append(b"Content-Type: " + ctype.encode("latin1"))
    for h in headers:
        lines.append(h.encode("latin1") if isinstance(h, str) else h)
    if body is not None:
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        if not any(h.lower().startswith(b"content-length") or h.lower().startswith(b"transfer-encoding")
                   for h in (x.encode("latin1") if isinstance(x, str) else x for x in headers)):
            lines.append(b"Content-Length: %d" % len(body))
    else:
        body = b""
    return b"\r\n".join(lines) + b"\r\n\r\n" + body

OPTS = '[{"section":"Service","name":"ExecStart","value":"/bin/true"}]'
GOOD = '{"options":%s}' % OPTS
cases = []
def case(name, expect, *a, **kw):
    cases.append((name, expect, req(*a, **kw)))

# Everything is asked under both API roots.
for root in ("/fleet/v1", "/v1-alpha"):
    R = root
    # ---- unit names, every method on /units/<name> and /state/<name> ----
    names = {
        "dotdot-raw": ("../../etc/passwd.service", 404, 404, 404),
        "dotdot-escaped": ("..%2F..%2Fetc%2Fpasswd.service", 404, 404, 404),
        "dotdot": ("%2E%2E", 404, "4xx", 404),
        "shell": ("a%3Brm%20-rf%20~.service", 404, 400, 404),
        "shell-raw": ("a;rm%20-rf%20$HOME.service", 404, 400, 404),
        "nul-escaped": ("a%00.service", 400, 400, 400),
        "bad-escape": ("a%zz.service", 400, 400, 400),
        "newline": ("a%0A.service", 404, 400, 404),
        "crlf-injection": ("a%0D%0AX-Evil:%201.service", 404, 400, 404),
        "unicode": ("%C3%A9t%C3%A9.service", 404, 400, 404),
        "unicode-rtl": ("%E2%80%AEecivres.service", 404, 400, 404),
        "invalid-utf8": ("%FF%FE.service", 404, 400, 404),
        "long-10k": ("a" * 10240 + ".service", 404, 400, 404),
        "no-dot": ("noextension", 404, 400, 404),
        "bad-type": ("x.exe", 404, 400, 404),
        "at-start": ("@x.service", 404, 400, 404),
        "dollar": ("%24%7Bx%7D.service", 404, 400, 404),
        "glob": ("%2A.service", 404, 400, 404),
    }
    for tag, (n, get, put, dele) in names.items():
        case("%s GET units/%s" % (R, tag), get, "GET", R + "/units/" + n)
        case("%s PUT units/%s" % (R, tag), put, "PUT", R + "/units/" + n, GOOD)
        case("%s DELETE units/%s" % (R, tag), dele, "DELETE", R + "/units/" + n)
        case("%s GET state/%s" % (R, tag), get if get != 404 else 404, "GET", R + "/state/" + n)
    case(R + " raw NUL in name", 400, None, None, raw=b"GET " + R.encode() + b"/units/a\x00.service HTTP/1.1\r\nHost: x\r\n\r\n")
    case(R + " 20k name (head too big)", "4xx", "GET", R + "/units/" + "a" * 20000 + ".service")

    # ---- PUT bodies ----
    # A new name per request, so each is a creation (the full validation); the same bodies
    # against an existing unit (a replacement) follow below.
    seq = [0]
    def U():
        seq[0] += 1
        return R + "/units/hostile-%d.service" % seq[0]
    bodies = {
        "truncated": "{", "unclosed-array": '{"options":[}', "missing-brace": GOOD[:-1],
        "array": "[]", "string": '"s"', "number": "123", "bool": "true", "garbage": "\x01\x02\x03",
        "trailing": GOOD + " {}", "two-values": GOOD + GOOD,
        "deep-array": "[" * 100000, "deep-object": '{"a":' * 50000 + "1" + "}" * 50000,
        "options-object": '{"options":{}}', "options-string": '{"options":"x"}',
        "options-number": '{"options":[1]}', "options-null-item": '{"options":[null]}',
        "section-number": '{"options":[{"section":5,"name":"ExecStart","value":"/bin/true"}]}',
        "value-bool": '{"options":[{"section":"Service","name":"ExecStart","value":true}]}',
        "value-object": '{"options":[{"section":"Service","name":"ExecStart","value":{}}]}',
        "desired-number": '{"desiredState":5,"options":%s}' % OPTS,
        "desired-bogus": '{"desiredState":"running","options":%s}' % OPTS,
        "desired-huge": '{"desiredState":"%s","options":%s}' % ("x" * 500000, OPTS),
        "desired-bignum": '{"desiredState":1e999999}',
        "name-array": '{"name":[],"options":%s}' % OPTS,
        "name-mismatch-huge": '{"name":"%s.service","options":%s}' % ("y" * 500000, OPTS),
        "name-traversal": '{"name":"../../etc/passwd.service","options":%s}' % OPTS,
        "unknown-only": '{"bogus":1,"evil":{"$where":"1"}}',
        "unknown-empty-options": '{"options":[],"evil":[1,2,3]}',
        "null": "null",
        "nul-escape": '{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true\\u0000rm"}]}',
        "nul-raw-in-string": '{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true\x00rm"}]}',
        "nul-raw-outside": GOOD + "\x00",
        "nul-in-name": '{"name":"hostile.service\\u0000x","options":%s}' % OPTS,
        "section-newline": '{"options":[{"section":"Service]\\n[Evil","name":"ExecStart","value":"/bin/true"}]}',
        "name-newline": '{"options":[{"section":"Service","name":"ExecStart=/bin/evil\\nX","value":"/bin/true"}]}',
        "xfleet-global-machineid": '{"options":[{"section":"X-Fleet","name":"Global","value":"true"},{"section":"X-Fleet","name":"MachineID","value":"abc"}]}',
        "xfleet-global-machineof": '{"options":[{"section":"X-Fleet","name":"Global","value":"true"},{"section":"X-Fleet","name":"MachineOf","value":"a.service"}]}',
        "xfleet-self-conflict": '{"options":[{"section":"X-Fleet","name":"MachineOf","value":"b.service"},{"section":"X-Fleet","name":"Conflicts","value":"b.service"}]}',
        "value-newline": '{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true\\nExecStartPre=/bin/evil"}]}',
        "value-cr": '{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true\\r\\n[Evil]"},{"section":"Service","name":"User","value":"root"}]}',
        "name-comment": '{"options":[{"section":"Service","name":"#ExecStart","value":"/bin/true"}]}',
        "line-too-long": '{"options":[{"section":"Service","name":"ExecStart","value":"%s"}]}' % ("x" * 3000),
    }
    replace_ok = ("unknown-only", "unknown-empty-options", "null", "xfleet-global-machineid",
                  "xfleet-global-machineof", "xfleet-self-conflict")
    for tag, b in bodies.items():
        want = 409 if tag in ("unknown-only", "unknown-empty-options", "null") else "4xx"
        case("%s PUT body %s" % (R, tag), want, "PUT", U(), b)
        # the same against an existing unit: a replacement (fleet validates no X-Fleet rules
        # there, and a body without options or desiredState is 409), never a broken unit
        if tag not in replace_ok:
            case("%s PUT existing body %s" % (R, tag), "4xx", "PUT", R + "/units/existing.service", b)
    for tag, b in {"utf8-value": b'{"options":[{"section":"Service","name":"ExecStart","value":"/bin/\xff\xfe"}]}',
                   "utf8-name": b'{"options":[{"section":"Service","name":"Exec\xc3","value":"/bin/true"}]}'}.items():
        case("%s PUT invalid %s" % (R, tag), "4xx", "PUT", U(), b)
        case("%s PUT existing invalid %s" % (R, tag), "4xx", "PUT", R + "/units/existing.service", b)
    U = R + "/units/hostile.service"
    # ---- sizes ----
    case(R + " PUT 1.1 MB body", 413, "PUT", U, '{"options":[{"section":"Service","name":"X","value":"%s"}]}' % ("v" * 1100000))
    case(R + " PUT Content-Length 10^12", 413, "PUT", U, "", headers=["Content-Length: 1000000000000"])
    case(R + " PUT Content-Length -1", 400, "PUT", U, "", headers=["Content-Length: -1"])
    case(R + " PUT Content-Length junk", 400, "PUT", U, "", headers=["Content-Length: 12abc"])
    case(R + " PUT two Content-Lengths", 400, None, None, raw=("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x" % U).encode())
    case(R + " PUT CL and chunked", 400, None, None, raw=("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" % U).encode())
    case(R + " PUT chunk size overflow", "4xx", None, None, raw=("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{}" % U).encode())
    case(R + " PUT chunked over limit", 413, None, None, raw=("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n" % U).encode() + b" " * 0x200000 + b"\r\n0\r\n\r\n")
    case(R + " PUT unknown transfer coding", "4xx5", None, None, raw=("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n" % U).encode())
    case(R + " PUT expect-continue over limit", 413, "PUT", U, "", headers=["Content-Length: 2000000", "Expect: 100-continue"])
    # ---- Content-Type ----
    for tag, ct in {"none": None, "text": "text/plain", "form": "application/x-www-form-urlencoded",
                    "jsonp": "application/jsonp", "list": "application/json, text/plain",
                    "empty": "", "nul": "application/json\x00", "utf16": "text/json; charset=utf-16"}.items():
        if ct is None:
            case("%s PUT Content-Type %s" % (R, tag), 415, "PUT", U, GOOD, ctype=None)
        else:
            case("%s PUT Content-Type %s" % (R, tag), "4xx", "PUT", U, GOOD, ctype=ct)
    case(R + " PUT two Content-Types", 415, "PUT", U, GOOD, headers=["Content-Type: application/json"])

    # ---- pagination ----
    for coll in ("units", "state", "machines"):
        for tag, tok in {"bang": "!!!!", "empty": "", "short": "AgA=", "nul": "%00", "high": "%FF%FF%FF%FF",
                         "long": "A" * 10000, "limit0": "AAAAAA==", "page0": "ZAAAAA==",
                         "two": "ZAABAA==&nextPageToken=ZAABAA==", "std-b64": "+/+/", "nopad": "ZAABAA"}.items():
            if tag == "nul":
                # a pair that does not decode is skipped (Go's ParseQuery): the first page
                case("%s GET %s token %s" % (R, coll, tag), 200, "GET", "%s/%s?nextPageToken=%s" % (R, coll, tok))
                continue
            case("%s GET %s token %s" % (R, coll, tag), 400, "GET", "%s/%s?nextPageToken=%s" % (R, coll, tok))
        case("%s GET %s token max page" % (R, coll), 200, "GET", "%s/%s?nextPageToken=ZAD__w==" % (R, coll))
        case("%s GET %s unknown query" % (R, coll), 200, "GET", "%s/%s?alt=xml&%%00=%%ff&x=%s" % (R, coll, "q" * 4000))
        case("%s POST %s" % (R, coll), 405, "POST", "%s/%s" % (R, coll), "{}")
        case("%s DELETE %s" % (R, coll), 405, "DELETE", "%s/%s" % (R, coll))
    case(R + " GET state filter traversal", 200, "GET", R + "/state?unitName=../../x&machineID=%00")

    # ---- PATCH /machines ----
    M = R + "/machines"
    patches = {
        "truncated": "[", "object": '{"op":"add"}', "string": '"x"', "number": "1",
        "op-number": '[{"op":5,"path":"/m/metadata/k","value":{"value":"v"}}]',
        "op-move": '[{"op":"move","path":"/m/metadata/k"}]',
        "op-test": '[{"op":"test","path":"/m/metadata/k","value":{"value":"v"}}]',
        "value-string": '[{"op":"add","path":"/m/metadata/k","value":"v"}]',
        "value-number": '[{"op":"add","path":"/m/metadata/k","value":{"value":5}}]',
        "value-empty": '[{"op":"add","path":"/m/metadata/k","value":{"value":""}}]',
        "path-traversal": '[{"op":"add","path":"/../metadata/k","value":{"value":"v"}}]',
        "path-dot": '[{"op":"add","path":"/./metadata/k","value":{"value":"v"}}]',
        "path-slashes": '[{"op":"add","path":"/m/metadata/a/b","value":{"value":"v"}}]',
        "path-key-space": '[{"op":"add","path":"/m/metadata/a b","value":{"value":"v"}}]',
        "path-key-dotdot": '[{"op":"add","path":"/m/metadata/..","value":{"value":"v"}}]',
        "path-machine-nl": '[{"op":"add","path":"/m\\n/metadata/k","value":{"value":"v"}}]',
        "path-nul": '[{"op":"add","path":"/m\\u0000/metadata/k","value":{"value":"v"}}]',
        "path-missing": '[{"op":"add","value":{"value":"v"}}]',
        "path-other": '[{"op":"add","path":"/m/object","value":{"value":"v"}}]',
        "second-bad": '[{"op":"add","path":"/m/metadata/k","value":{"value":"v"}},{"op":"add","path":"/m/x/k","value":{"value":"v"}}]',
        "deep": "[" * 100000,
        "item-null": "[null]",
        "item-array": "[[]]",
    }
    for tag, b in patches.items():
        case("%s PATCH machines %s" % (R, tag), 400, "PATCH", M, b)
    case(R + " PATCH machines 1.1 MB", 413, "PATCH", M, "[" + " " * 1100000 + "]")

    # ---- discovery, metrics, unknown ----
    for m in ("POST", "PUT", "DELETE", "PATCH"):
        case("%s %s discovery" % (R, m), 400, m, R + "/discovery", "{}")
    case(R + " GET discovery/x", 404, "GET", R + "/discovery/x")
    case(R + " GET unknown collection", 404, "GET", R + "/%2e%2e/%2e%2e/etc/passwd")
    case(R + " lowercase method", 405, "get", R + "/units")
    case(R + " unknown method", 405, "BREW", R + "/units/x.service")
for m in ("POST", "PUT", "DELETE"):
    case("%s metrics" % m, 405, m, "/metrics", "{}")
case("GET metrics/x", 404, "GET", "/metrics/x")

# ---- HTTP framing ----
raws = {
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n", 400),
    "no-version": (b"GET /fleet/v1/units\r\n\r\n", 400),
    "http2": (b"GET /fleet/v1/units HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "http09": (b"GET /fleet/v1/units HTTP/0.9\r\nHost: x\r\n\r\n", "4xx5"),
    "no-host": (b"GET /fleet/v1/units HTTP/1.1\r\n\r\n", 400),
    "header-no-colon": (b"GET /fleet/v1/units HTTP/1.1\r\nHost: x\r\nbogus\r\n\r\n", 400),
    "header-space-before-colon": (b"GET /fleet/v1/units HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "header-nul": (b"GET /fleet/v1/units HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    "obs-fold": (b"GET /fleet/v1/units HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    "bare-cr": (b"GET /fleet/v1/units HTTP/1.1\rHost: x\r\n\r\n", 400),
    "huge-header": (b"GET /fleet/v1/units HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    "many-headers": (b"GET /fleet/v1/units HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 5000 + b"\r\n", 431),
    "absolute-uri-evil": (b"GET http://evil/fleet/v1/units/../../x HTTP/1.1\r\nHost: x\r\n\r\n", "4xx"),
    "asterisk": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "4xx"),
    "space-in-target": (b"GET /fleet/v1/units/a b.service HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "tab-method": (b"GET\t/fleet/v1/units HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "utf8-in-target": ("GET /fleet/v1/units/\u00e9.service HTTP/1.1\r\nHost: x\r\n\r\n".encode(), "4xx"),
}
for tag, (raw, want) in raws.items():
    case("raw " + tag, want, None, None, raw=raw)

fails = 0
checked = 0
# the unit the replacement cases aim at
st, _, _ = parse(exchange(req("PUT", "/fleet/v1/units/existing.service", GOOD)))
if st not in (201, 204):
    print("FAIL cannot create existing.service: %r" % st)
    sys.exit(1)
time.sleep(0.5)
before = dump()
t0 = time.time()
for name, want, raw in cases:
    data = exchange(raw)
    status, hdrs, body = parse(data)
    why = None
    if status is None:
        why = "no valid HTTP response: %r" % data[:120]
    elif want == "4xx" and not 400 <= status < 500:
        why = "status %d, want 4xx" % status
    elif want == "4xx5" and not 400 <= status < 600:
        why = "status %d, want 4xx/5xx" % status
    elif isinstance(want, int) and status != want:
        why = "status %d, want %d" % (status, want)
    elif status >= 400:
        try:
            e = json.loads(body)
            if not (isinstance(e, dict) and isinstance(e.get("error"), dict) and e["error"].get("code") == status
                    and isinstance(e["error"].get("message"), str)):
                why = "error body %r" % body[:200]
            elif hdrs.get("content-type") != "application/json":
                why = "Content-Type %r" % hdrs.get("content-type")
        except ValueError:
            why = "error body is not JSON: %r" % body[:200]
    after = dump()
    if after != before:
        added = sorted(set(after) - set(before))
        gone = sorted(set(before) - set(after))
        why = (why + "; " if why else "") + "registry changed: +%s -%s" % ([a[:160] for a in added], [g[:160] for g in gone])
        before = after
    checked += 1
    if why:
        fails += 1
        print("FAIL %s: %s" % (name, why))
# the server is still fine
final = exchange(req("GET", "/fleet/v1/units"))
st, _, _ = parse(final)
if st != 200:
    fails += 1
    print("FAIL after the table: GET /fleet/v1/units -> %r" % st)
print("checked %d hostile requests in %.1fs, %d failures" % (checked, time.time() - t0, fails))
sys.exit(1 if fails else 0)
