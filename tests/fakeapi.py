#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A scriptable fake Kubernetes API server for nlproxy's watcher tests.

Python 3 standard library only. It serves, over TLS with bearer tokens,
LIST (limit/continue pages) and WATCH (chunked, events split across chunks)
for Services, EndpointSlices and Nodes, from a state and an event history
that a test drives through a plain-HTTP control port on 127.0.0.1:

  POST /put      {"kind": "services", "object": {...}}   add or replace
  POST /delete   {"kind": "services", "namespace": "default", "name": "x"}
  POST /fault    {"fault": NAME, "kind": "services"|null, "count": 1, ...}
  POST /tokens   {"tokens": ["t2"]}          only these are accepted (401 otherwise)
  POST /hold     {"kind": "endpointslices", "hold": true}   LISTs of kind wait
  POST /down     {"down": true}              outage: connections are reset
  POST /kick     {}                          open watches end normally (as at timeoutSeconds)
  POST /restart  {"drop": [[kind, ns, name]], "back": 0}
                                             new resourceVersion history; watches end;
                                             dropped objects vanish without an event. With
                                             back: N the history restarts N below (etcd
                                             restored from a backup): a watch from a newer
                                             resourceVersion hangs silently, as on a real one
  POST /bulk     {"services": N, "endpoints": E}  N Services with one E-endpoint slice each
  POST /burst    {"updates": M}              M EndpointSlice updates at once (benchmarks)
  POST /load     {"file": PATH}              the Services, EndpointSlices and Nodes of a JSON
                                             List file, present before any client lists
                                             (benchmarks: no watch history)
  GET  /stats                                request counts and times
  GET  /state                                resourceVersion and object names

Faults (one-shot, count times; kind null = any kind):
  watch_410        a watch sends an ERROR event 410 Expired, then ends
  watch_gone       a watch sends an ERROR event 410 Gone after its backlog
  continue_410     the next LIST continue request answers HTTP 410
  http_429         the next request answers 429 with Retry-After (retry_after)
  http_500         the next request answers 500
  http_504_rv      the next watch answers 504 "Too large resource version"
  reset            a watch sends half an event, then the connection is reset
  empty            a watch answers 200 with an empty body
  quiet            a watch sends nothing, not even bookmarks, for `seconds`
  split_bytes      a watch sends every byte of its events in its own chunk
"""
import argparse
import base64
import json
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = {
    "services": ("/api/v1/services", "v1", "Service", "ServiceList"),
    "endpointslices": ("/apis/discovery.k8s.io/v1/endpointslices", "discovery.k8s.io/v1", "EndpointSlice",
                       "EndpointSliceList"),
    "nodes": ("/api/v1/nodes", "v1", "Node", "NodeList"),
}
PATHS = {v[0]: k for k, v in KINDS.items()}
MAX_WAIT = 30.0  # no request thread waits longer than this for anything


class State:
    def __init__(self, tokens, bookmark_interval, page_size):
        self.cv = threading.Condition()
        self.rv = 100
        self.oldest = 100          # watches from an older resourceVersion get 410
        self.epoch = 0             # bumped by /restart and /down: open watches end
        self.objects = {k: {} for k in KINDS}   # kind -> (ns, name) -> object
        self.history = []          # (rv, kind, type, object)
        self.faults = []           # dicts
        self.tokens = set(tokens)
        self.held = set()
        self.down = False
        self.bookmark_interval = bookmark_interval
        self.page_size = page_size  # a server may return fewer items than limit
        self.snapshots = {}        # continue token -> (rv, items)
        self.stats = {"requests": [], "unauthorized": 0}

    def take_fault(self, kind, names):
        for f in self.faults:
            if f["fault"] in names and f.get("kind") in (None, kind) and f.get("count", 1) > 0:
                f["count"] = f.get("count", 1) - 1
                if f["count"] <= 0:
                    self.faults.remove(f)
                return dict(f)
        return None

    def bump(self, kind, typ, obj):
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, kind, typ, obj))
        self.cv.notify_all()
        return obj


def key_of(obj):
    md = obj.get("metadata", {})
    return (md.get("namespace", ""), md.get("name", ""))


def selected(obj, label_sel, field_sel):
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (label_sel or "").split(",")):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v:
                return False
        elif term not in labels:
            return False
    for term in filter(None, (field_sel or "").split(",")):
        k, v = term.split("=", 1)
        if k == "metadata.name" and obj.get("metadata", {}).get("name") != v:
            return False
    return True


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    st = None  # State

    def log_message(self, fmt, *args):
        if os.environ.get("FAKEAPI_DEBUG"):
            sys.stderr.write("fakeapi: " + (fmt % args) + "\n")

    def reset(self):
        """Abort the connection with a TCP RST."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def send_json(self, code, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self):
        st = self.st
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        kind = PATHS.get(u.path)
        watch = q.get("watch") in ("true", "1")
        rec = {"t": time.monotonic(), "kind": kind, "watch": watch, "continue": bool(q.get("continue")),
               "query": u.query}
        with st.cv:
            st.stats["requests"].append(rec)
            down = st.down
        if down:
            self.reset()
            return
        auth = self.headers.get("Authorization", "")
        try:
            # A client certificate the --client-ca signed authenticates too.
            cert = self.connection.getpeercert()
        except (AttributeError, ValueError, OSError):
            cert = None
        with st.cv:
            ok = (auth.startswith("Bearer ") and auth[7:] in st.tokens) or bool(cert)
            if cert:
                st.stats["client_cert"] = st.stats.get("client_cert", 0) + 1
            if not ok:
                st.stats["unauthorized"] += 1
                rec["unauthorized"] = True
        if not ok:
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return
        if kind is None:
            self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
            return
        with st.cv:
            f = st.take_fault(kind, ("http_429", "http_500") + (("http_504_rv",) if watch else ()))
        if f:
            if f["fault"] == "http_429":
                self.send_json(429, status(429, "TooManyRequests", "slow down"),
                               [("Retry-After", str(f.get("retry_after", 2)))])
            elif f["fault"] == "http_500":
                self.send_json(500, status(500, "InternalError", "injected failure"))
            else:
                self.send_json(504, status(504, "Timeout", "Too large resource version: 999999, current: 1"))
            return
        if watch:
            self.watch(kind, q)
        else:
            self.list(kind, q)

    def list(self, kind, q):
        st = self.st
        api, apiv, k, listkind = KINDS[kind]
        deadline = time.monotonic() + MAX_WAIT
        with st.cv:
            while kind in st.held and time.monotonic() < deadline:
                st.cv.wait(0.2)
            cont = q.get("continue")
            if cont:
                if st.take_fault(kind, ("continue_410",)) or cont not in st.snapshots:
                    self.send_json(410, status(410, "Expired", "The provided continue parameter is too old"))
                    return
                rv, items = st.snapshots.pop(cont)
            else:
                rv = st.rv
                items = [o for _, o in sorted(st.objects[kind].items())
                         if selected(o, q.get("labelSelector"), q.get("fieldSelector"))]
            limit = int(q.get("limit") or 0)
            if st.page_size and (limit <= 0 or limit > st.page_size):
                limit = st.page_size
            page, rest = (items[:limit], items[limit:]) if limit > 0 else (items, [])
            md = {"resourceVersion": str(rv)}
            if rest:
                token = base64.b64encode(os.urandom(9)).decode()
                st.snapshots[token] = (rv, rest)
                md["continue"] = token
                md["remainingItemCount"] = len(rest)
        # Real lists leave kind and apiVersion out of the items.
        out = []
        for o in page:
            o = dict(o)
            o.pop("kind", None)
            o.pop("apiVersion", None)
            out.append(o)
        self.send_json(200, {"kind": listkind, "apiVersion": apiv, "metadata": md, "items": out})

    def watch(self, kind, q):
        st = self.st
        try:
            since = int(q.get("resourceVersion") or 0)
        except ValueError:
            since = 0
        timeout = min(float(q.get("timeoutSeconds") or 600), 600)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        with st.cv:
            f = st.take_fault(kind, ("watch_410", "watch_gone", "reset", "empty", "quiet", "split_bytes"))
            epoch = st.epoch
            expired = since < st.oldest
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        split_bytes = f is not None and f["fault"] == "split_bytes"

        def send_batch(evs):
            # A backlog goes out as one byte stream cut into chunks of random
            # sizes, so events straddle chunk boundaries here too.
            data = b"".join(json.dumps({"type": typ, "object": obj}).encode() + b"\n" for typ, obj in evs)
            pos = 0
            while pos < len(data):
                n = random.randint(1, 65536)
                self.chunk(data[pos:pos + n])
                pos += n

        def send_event(typ, obj):
            data = json.dumps({"type": typ, "object": obj}).encode() + b"\n"
            if split_bytes:
                for i in range(len(data)):
                    self.chunk(data[i:i + 1])
                return
            # Two or three chunks, cut anywhere: the client must not care.
            cuts = sorted(random.sample(range(1, len(data)), min(2, len(data) - 1)))
            prev = 0
            for c in cuts + [len(data)]:
                self.chunk(data[prev:c])
                prev = c

        try:
            if f and f["fault"] == "empty":
                self.chunk(b"")
                return
            if f and f["fault"] == "reset":
                ev = json.dumps({"type": "ADDED", "object": {"metadata": {"name": "half"}}}).encode()
                self.chunk(ev[: len(ev) // 2])
                time.sleep(0.05)
                self.reset()
                return
            if expired or (f and f["fault"] == "watch_410"):
                send_event("ERROR", status(410, "Expired", "too old resource version: %d" % since))
                self.chunk(b"")
                return
            quiet_until = time.monotonic() + float(f.get("seconds", 5)) if f and f["fault"] == "quiet" else 0
            end = time.monotonic() + timeout
            last_bm = time.monotonic()
            sent = since
            while time.monotonic() < end:
                with st.cv:
                    if st.epoch != epoch or st.down:
                        break
                    now = time.monotonic()
                    if now < quiet_until:
                        st.cv.wait(min(0.2, quiet_until - now))
                        continue
                    evs = [(rv, typ, obj) for rv, k, typ, obj in st.history if k == kind and rv > sent]
                    if not evs:
                        st.cv.wait(0.2)
                        evs = [(rv, typ, obj) for rv, k, typ, obj in st.history if k == kind and rv > sent]
                    cur = st.rv
                if evs:
                    sent = evs[-1][0]
                evs = [(typ, obj) for _, typ, obj in evs
                       if selected(obj, q.get("labelSelector"), q.get("fieldSelector"))]
                if len(evs) > 1 and not split_bytes:
                    send_batch(evs)
                else:
                    for typ, obj in evs:
                        send_event(typ, obj)
                if f and f["fault"] == "watch_gone":
                    send_event("ERROR", status(410, "Gone", "the watch cache moved on"))
                    break
                # The watch cache sends a watcher only what is newer than
                # its resourceVersion, bookmarks too: a watch from the future
                # gets nothing at all.
                if bookmarks and time.monotonic() - last_bm >= st.bookmark_interval and cur > since:
                    last_bm = time.monotonic()
                    sent = max(sent, cur)
                    send_event("BOOKMARK", {"kind": KINDS[kind][2], "apiVersion": KINDS[kind][1],
                                            "metadata": {"resourceVersion": str(sent)}})
            if st.down:
                self.reset()
                return
            self.chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True


def bench_slice(service, i, n_eps, gen):
    eps = [{"addresses": ["10.%d.%d.%d" % (128 + (gen * 7 + e) % 64, (i // 256) % 256, i % 256)],
            "conditions": {"ready": True}, "nodeName": "node%d" % (e % 3)} for e in range(n_eps)]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": service + "-abcde", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"port": 8080, "name": "", "protocol": "TCP"}]}


class Control(BaseHTTPRequestHandler):
    st = None

    def log_message(self, fmt, *args):
        pass

    def reply(self, body, code=200):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        st = self.st
        with st.cv:
            if self.path == "/stats":
                self.reply(st.stats)
            elif self.path == "/state":
                self.reply({"rv": st.rv, "objects": {k: ["/".join(n) for n in v] for k, v in st.objects.items()}})
            else:
                self.reply({"error": "no such path"}, 404)

    def do_POST(self):
        st = self.st
        n = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            self.reply({"error": "bad json"}, 400)
            return
        with st.cv:
            if self.path == "/put":
                kind, obj = body["kind"], body["object"]
                typ = "MODIFIED" if key_of(obj) in st.objects[kind] else "ADDED"
                obj = st.bump(kind, typ, obj)
                st.objects[kind][key_of(obj)] = obj
            elif self.path == "/delete":
                kind, key = body["kind"], (body.get("namespace", ""), body["name"])
                obj = st.objects[kind].pop(key, None)
                if obj is not None:
                    st.bump(kind, "DELETED", obj)
            elif self.path == "/fault":
                st.faults.append(body)
            elif self.path == "/tokens":
                st.tokens = set(body["tokens"])
            elif self.path == "/hold":
                (st.held.add if body.get("hold") else st.held.discard)(body["kind"])
                st.cv.notify_all()
            elif self.path == "/down":
                st.down = bool(body.get("down"))
                st.epoch += 1
                st.cv.notify_all()
            elif self.path == "/bulk":
                for i in range(int(body["services"])):
                    name = "svc-%d" % i
                    ip = "10.%d.%d.%d" % (96 + i // 65536, (i // 256) % 256, i % 256)
                    svc = {"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": name, "namespace": "bench"},
                           "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": "TCP"}]}}
                    st.objects["services"][key_of(svc)] = st.bump("services", "ADDED", svc)
                    sl = bench_slice(name, i, int(body.get("endpoints", 2)), 0)
                    st.objects["endpointslices"][key_of(sl)] = st.bump("endpointslices", "ADDED", sl)
            elif self.path == "/burst":
                keys = sorted(st.objects["endpointslices"])
                n = len(keys)
                for u in range(int(body["updates"])):
                    old = st.objects["endpointslices"][keys[u % n]]
                    i = int(old["metadata"]["name"].split("-")[1])
                    sl = bench_slice("svc-%d" % i, i, len(old["endpoints"]), u // n + 1)
                    st.objects["endpointslices"][key_of(sl)] = st.bump("endpointslices", "MODIFIED", sl)
            elif self.path == "/load":
                with open(body["file"], encoding="utf-8") as f:
                    items = json.load(f).get("items", [])
                kinds = {v[2]: k for k, v in KINDS.items()}
                st.rv += 1
                for obj in items:
                    kind = kinds.get(obj.get("kind"))
                    if kind:
                        obj.setdefault("metadata", {})["resourceVersion"] = str(st.rv)
                        st.objects[kind][key_of(obj)] = obj
            elif self.path == "/kick":
                st.epoch += 1
                st.cv.notify_all()
            elif self.path == "/restart":
                for kind, ns, name in body.get("drop", []):
                    st.objects[kind].pop((ns, name), None)
                # An etcd replaced: a new, higher resourceVersion history;
                # nothing older can be watched from. Or, with back, one
                # restored from a backup: a lower one, where the API server
                # takes the resourceVersions it never reached for future ones.
                back = int(body.get("back", 0))
                st.rv = max(1, st.rv - back) if back > 0 else st.rv + 1000
                st.oldest = st.rv
                st.history = []
                for kind in st.objects:
                    for key, obj in st.objects[kind].items():
                        obj["metadata"]["resourceVersion"] = str(st.rv)
                st.snapshots = {}
                st.epoch += 1
                st.cv.notify_all()
            else:
                self.reply({"error": "no such path"}, 404)
                return
            self.reply({"rv": st.rv})


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, ctx):
        super().__init__(addr, handler)
        self.ctx = ctx

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake runs in the request's thread, not the accept loop.
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--ports-file", required=True, help="written once listening: 'API_PORT CONTROL_PORT'")
    ap.add_argument("--bookmark-interval", type=float, default=2.0)
    ap.add_argument("--page-size", type=int, default=0, help="at most this many items per LIST page")
    ap.add_argument("--client-ca", help="accept client certificates signed by this CA")
    args = ap.parse_args()

    st = State(args.token, args.bookmark_interval, args.page_size)
    Api.st = st
    Control.st = st
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(args.client_ca)
    api = TLSServer(("127.0.0.1", 0), Api, ctx)
    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    control.daemon_threads = True
    for srv in (api, control):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (api.server_address[1], control.server_address[1]))
    os.rename(tmp, args.ports_file)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
