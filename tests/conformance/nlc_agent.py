#!/usr/bin/env python3
"""Traffic agent for tests/conformance/run (stdlib only).

Runs inside one test network namespace (started with `ip netns exec NS`):

  nlc_agent.py serve SPEC_JSON
      SPEC_JSON: [[ip, port, proto], ...] with proto tcp|udp|sctp.  Binds every
      listener, prints "READY" (or "ERROR <reason>") on stdout and answers
      each TCP connection / UDP datagram with "<ident> <peer ip>\\n", where
      ident is the listener's own address ("10.0.0.1:80", "[fd00::1]:80").
      Exits when stdin reaches EOF (the runner went away) or after
      --lifetime seconds.

  nlc_agent.py probe
      Reads one JSON object {"probes": [...]} from stdin, runs the probes
      concurrently (one thread per probe, attempts within a probe in order)
      and prints one JSON object {"results": {id: [outcome, ...]}}.
      A probe: {"id", "proto", "src", "dst", "dport", "attempts",
      "timeout", "max_failures", "parallel"}; "timeout" bounds a whole
      attempt, within which an unanswered UDP datagram or SCTP INIT is sent
      again on the same 5-tuple (SENDS sends in all; TCP has the kernel's
      SYN retransmissions).  An outcome is
        {"kind": "answer", "ident": ..., "peer": ..., "ms": ...}
        {"kind": "error", "errno": "ECONNREFUSED", "ms": ...}
        {"kind": "timeout", "ms": ...}
"""
import errno
import json
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time


def family(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def ident(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# ------------------------------------------------------------ raw SCTP
# Kernels without SCTP sockets (CONFIG_IP_SCTP off) still track and NAT SCTP
# (nf_conntrack_proto_sctp).  Then an SCTP "connection" is emulated with raw
# sockets: the client sends an INIT, a listener answers with an INIT-ACK whose
# state cookie carries "<ident> <peer>".  That exercises DNAT, reverse NAT and
# masquerade through conntrack's SCTP state machine; ICMP errors are not seen.

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_packet(sport, dport, vtag, chunk):
    pkt = struct.pack("!HHII", sport, dport, vtag, 0) + chunk
    return pkt[:8] + struct.pack("<I", crc32c(pkt)) + pkt[12:]


def sctp_init(sport, dport, itag):
    return sctp_packet(sport, dport, 0, struct.pack("!BBHIIHHI", 1, 0, 20, itag, 65535, 1, 1, itag))


def sctp_init_ack(sport, dport, vtag, cookie):
    cookie += b" " * (-len(cookie) % 4)
    param = struct.pack("!HH", 7, 4 + len(cookie)) + cookie
    itag = random.randint(1, 0xFFFFFFFF)
    chunk = struct.pack("!BBHIIHHI", 2, 0, 20 + len(param), itag, 65535, 1, 1, itag) + param
    return sctp_packet(sport, dport, vtag, chunk)


def sctp_parse(data, fam):
    """-> (src ip or None, sport, dport, vtag, chunk type, chunk body) or None."""
    src = None
    if fam == socket.AF_INET:
        if len(data) < 20:
            return None
        ihl = (data[0] & 0xF) * 4
        src = socket.inet_ntop(socket.AF_INET, data[12:16])
        data = data[ihl:]
    if len(data) < 16:
        return None
    sport, dport, vtag, _ = struct.unpack("!HHII", data[:12])
    ctype, _, clen = struct.unpack("!BBH", data[12:16])
    return src, sport, dport, vtag, ctype, data[16:12 + clen]


def sctp_cookie(body):
    """State cookie of an INIT-ACK chunk body (after the chunk header)."""
    off = 16
    while off + 4 <= len(body):
        ptype, plen = struct.unpack("!HH", body[off:off + 4])
        if plen < 4:
            break
        if ptype == 7:
            return body[off + 4:off + plen]
        off += plen + (-plen % 4)
    return None


def sctp_sockets_available():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        return True
    except OSError:
        return False


def raw_sctp_socket(ip):
    s = socket.socket(family(ip), socket.SOCK_RAW, socket.IPPROTO_SCTP)
    s.bind((ip, 0))
    return s


def serve(spec, lifetime):
    sel = selectors.DefaultSelector()
    socks = []
    raw = {}          # ip -> raw SCTP socket (emulation)
    raw_ports = {}    # (ip, port) -> ident
    emulate = any(p == "sctp" for _, _, p in spec) and not sctp_sockets_available()
    try:
        for ip, port, proto in spec:
            fam = family(ip)
            if proto == "sctp" and emulate:
                if ip not in raw:
                    raw[ip] = raw_sctp_socket(ip)
                    sel.register(raw[ip], selectors.EVENT_READ, ("rawsctp", ip))
                raw_ports[(ip, port)] = ident(ip, port)
                continue
            if proto == "tcp":
                s = socket.socket(fam, socket.SOCK_STREAM)
            elif proto == "sctp":
                s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            elif proto == "udp":
                s = socket.socket(fam, socket.SOCK_DGRAM)
            else:
                raise ValueError(f"unsupported protocol {proto}")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # FREEBIND: addresses are configured before we start, but this
            # avoids a spurious failure if one is still being set up.
            try:
                s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
            except OSError:
                pass
            s.bind((ip, port))
            if proto in ("tcp", "sctp"):
                s.listen(128)
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, (proto, ident(ip, port)))
    except Exception as e:  # report and exit: the runner fails the case
        print(f"ERROR bind {ip} {port}/{proto}: {e}", flush=True)
        return 1
    sel.register(sys.stdin, selectors.EVENT_READ, ("stdin", None))
    print("READY", flush=True)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            proto, me = key.data
            if proto == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    return 0
                continue
            s = key.fileobj
            try:
                if proto == "rawsctp":
                    data, addr = s.recvfrom(4096)
                    pk = sctp_parse(data, s.family)
                    if pk is None:
                        continue
                    src, sport, dport, vtag, ctype, body = pk
                    me = raw_ports.get((me, dport))
                    if ctype != 1 or me is None or len(body) < 4:   # INITs to ours only
                        continue
                    itag = struct.unpack("!I", body[:4])[0]       # initiate tag
                    peer = src or addr[0]
                    s.sendto(sctp_init_ack(dport, sport, itag, f"{me} {peer}\n".encode()), (peer, 0))
                    continue
                if proto in ("tcp", "sctp"):
                    c, peer = s.accept()
                    c.settimeout(1.0)
                    try:
                        c.sendall(f"{me} {peer[0]}\n".encode())
                    finally:
                        c.close()
                else:
                    data, peer = s.recvfrom(2048)
                    s.sendto(f"{me} {peer[0]}\n".encode(), peer)
            except OSError:
                pass
    return 0


def errname(e):
    n = e.errno if isinstance(e, OSError) and e.errno else None
    if n is None:
        return type(e).__name__
    return errno.errorcode.get(n, str(n))


def resend_times(t0, p):
    """When an unanswered datagram (UDP, SCTP INIT) is sent again: every
    timeout/SENDS seconds, SENDS sends in all.  The same packet on the same
    5-tuple, as a DNS client or the kernel's SYN retransmission does: it
    meets the same conntrack entry (same endpoint), and a rule that drops
    or rejects the flow drops or rejects every copy, so a resend cannot
    turn a failure into a pass; it only survives a packet lost to load."""
    step = p["timeout"] / SENDS
    return [t0 + step * i for i in range(1, SENDS)]


SENDS = 4


def attempt_raw_sctp(p):
    t0 = time.monotonic()
    s = raw_sctp_socket(p["src"])
    try:
        sport = random.randint(20000, 60999)
        itag = random.randint(1, 0xFFFFFFFF)
        init = sctp_init(sport, p["dport"], itag)
        s.sendto(init, (p["dst"], 0))
        resends = resend_times(t0, p)
        deadline = t0 + p["timeout"]
        while True:
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                return {"kind": "timeout", "ms": round((time.monotonic() - t0) * 1000, 1)}
            if resends and now >= resends[0]:
                resends.pop(0)
                s.sendto(init, (p["dst"], 0))
                continue
            s.settimeout(min(left, resends[0] - now) if resends else left)
            try:
                data, addr = s.recvfrom(4096)
            except socket.timeout:
                continue
            pk = sctp_parse(data, s.family)
            if pk is None:
                continue
            src, rsport, rdport, vtag, ctype, body = pk
            if ctype != 2 or rsport != p["dport"] or rdport != sport or vtag != itag:
                continue
            ms = round((time.monotonic() - t0) * 1000, 1)
            parts = (sctp_cookie(body) or b"").decode(errors="replace").split()
            if len(parts) != 2:
                return {"kind": "error", "errno": f"bad INIT-ACK cookie {parts!r}", "ms": ms}
            return {"kind": "answer", "ident": parts[0], "peer": parts[1], "ms": ms, "emulated": True}
    except OSError as e:
        return {"kind": "error", "errno": errname(e), "ms": round((time.monotonic() - t0) * 1000, 1)}
    finally:
        s.close()


def attempt(p):
    if p["proto"] == "sctp" and not SCTP_SOCKETS:
        return attempt_raw_sctp(p)
    t0 = time.monotonic()
    # one deadline for the whole attempt: connect (TCP: the kernel resends
    # the SYN meanwhile), the datagram's resends (UDP) and the answer
    deadline = t0 + p["timeout"]
    fam = family(p["dst"])
    if p["proto"] == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
    elif p["proto"] == "sctp":
        s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.settimeout(p["timeout"])
        s.bind((p["src"], 0))
        s.connect((p["dst"], p["dport"]))
        resends = []
        if p["proto"] == "udp":
            s.send(b"probe\n")
            resends = resend_times(t0, p)
        buf = b""
        while b"\n" not in buf and len(buf) < 512:
            now = time.monotonic()
            if now >= deadline:
                raise socket.timeout()
            if resends and now >= resends[0]:
                resends.pop(0)
                s.send(b"probe\n")
                continue
            s.settimeout(min(deadline, resends[0]) - now if resends else deadline - now)
            try:
                chunk = s.recv(512)
            except socket.timeout:
                continue
            if not chunk:
                break
            buf += chunk
        ms = round((time.monotonic() - t0) * 1000, 1)
        parts = buf.decode(errors="replace").split()
        if len(parts) != 2:
            return {"kind": "error", "errno": f"bad answer {buf!r}", "ms": ms}
        return {"kind": "answer", "ident": parts[0], "peer": parts[1], "ms": ms}
    except socket.timeout:
        return {"kind": "timeout", "ms": round((time.monotonic() - t0) * 1000, 1)}
    except OSError as e:
        return {"kind": "error", "errno": errname(e), "ms": round((time.monotonic() - t0) * 1000, 1)}
    finally:
        s.close()


def run_probe(p, out):
    if p.get("parallel"):   # attempts at once (DROP: each waits the full timeout)
        res = [None] * int(p["attempts"])

        def one(i):
            res[i] = attempt(p)
        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(res))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(p["timeout"] + 5)
        out[p["id"]] = [r if r is not None else {"kind": "error", "errno": "attempt hung", "ms": 0} for r in res]
        return
    res = []
    failures = 0
    for _ in range(int(p["attempts"])):
        r = attempt(p)
        res.append(r)
        if r["kind"] != "answer":
            failures += 1
            if failures >= p.get("max_failures", 1 << 30):
                break
    out[p["id"]] = res


SCTP_SOCKETS = True


def probe():
    global SCTP_SOCKETS
    SCTP_SOCKETS = sctp_sockets_available()
    req = json.loads(sys.stdin.read())
    out = {}
    threads = []
    for p in req["probes"]:
        t = threading.Thread(target=run_probe, args=(p, out), daemon=True)
        t.start()
        threads.append(t)
    bound = time.monotonic() + float(req.get("deadline", 120))
    for t in threads:
        t.join(max(0.0, bound - time.monotonic()))
    print(json.dumps({"results": out}), flush=True)
    return 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        lifetime = float(sys.argv[3]) if len(sys.argv) > 3 else 1800.0
        return serve(json.loads(sys.argv[2]), lifetime)
    if len(sys.argv) == 2 and sys.argv[1] == "probe":
        return probe()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
