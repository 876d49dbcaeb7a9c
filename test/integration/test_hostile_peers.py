"""Hostile peers on both sides at once, generated from fixed seeds.

Each case is one downstream connection that sends a mutated HTTP/1.1 request,
a run of random HTTP/2 frames, or a well-formed request whose upstream answers
with a mutated HTTP/1.1 response or random HTTP/2 frames (the origins below read
the seed from the request path); or it goes to a TLS listener with a mutated
ClientHello, or with a finished handshake and then a mutated request. Bytes are flipped, inserted and cut, framing
fields contradict each other, connections close half-way or reset.

What is asserted is what "bad input" means for a proxy: after every batch of
cases skiff still answers a well-formed request on a fresh connection, its
process is alive, and at the end it drains and exits 0 on SIGTERM. The
sanitizer build (CI's second stage) turns any memory error or undefined
behaviour into an abort that these checks see, and LeakSanitizer's report into
a non-zero exit. The seeds are fixed, so a failure names the case that found it
and replays (HOSTILE_SEED, HOSTILE_CASES widen a local run)."""

import os
import random
import signal
import socket
import socketserver
import ssl
import struct
import threading
import unittest

import h2frames as f
import skiffharness as h
from skiffharness import LOCALHOST

SEED = int(os.environ.get("HOSTILE_SEED", "20261128"))
CASES = int(os.environ.get("HOSTILE_CASES", "250"))
BATCH = 40

H2_UPSTREAM = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}

REQUESTS = [
    b"GET /good HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /good HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /good HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
    b"GET /good HTTP/1.1\r\nHost: a\r\n\r\nGET /good HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /good HTTP/1.0\r\n\r\n",
    b"CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\n\r\n",
    b"GET /good HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nxx",
]
INSERTS = [b"\r", b"\n", b"\0", b" ", b":", b"\t", b"\r\n", b"\r\n\r\n", b",", b";", b"\x7f", b"\xff"]
FIELD_LINES = [b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"Content-Length: -1\r\n",
               b"Content-Length: 99999999999999999999\r\n", b"Transfer-Encoding: gzip, chunked\r\n",
               b"Connection: close\r\n", b"Upgrade: websocket\r\nConnection: upgrade\r\n",
               b"Host: a\r\n", b"Expect: 100-continue\r\n", b"TE: trailers\r\n"]


def mutate(data, r):
    """data with one to six random edits: bytes flipped, inserted, cut or repeated."""
    b = bytearray(data)
    for _ in range(r.randint(1, 6)):
        op = r.randint(0, 7)
        pos = r.randint(0, len(b))
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = r.randint(0, 255)
        elif op == 1:
            b[pos:pos] = r.choice(INSERTS)
        elif op == 2:
            del b[pos:pos + r.randint(1, 8)]
        elif op == 3:
            b[pos:pos] = r.choice(FIELD_LINES) if r.random() < 0.9 else b"x" * r.randint(1, 70000)
        elif op == 4 and b:
            b[pos:pos] = b[r.randint(0, len(b) - 1):][:r.randint(1, 40)]
        elif op == 5:
            b[pos:pos] = str(r.choice([0, 1, 0xFFFFFFFF, 2**63, -5, r.randint(0, 2**40)])).encode()
        elif op == 6:
            b[pos:pos] = bytes(r.randint(0, 255) for _ in range(r.randint(1, 20)))
        elif op == 7:
            b = b + b
    return bytes(b)


def frame(type_, flags, stream_id, payload=b""):
    return f.frame(type_ & 0xFF, flags & 0xFF, stream_id & 0xFFFFFFFF, payload)


def random_fields(r, request):
    fields = ([(":method", "GET"), (":scheme", "http"), (":path", "/good"), (":authority", "a")]
              if request else [(":status", "200"), ("content-length", "2")])
    odd = [("content-length", str(r.choice([0, 2, 5, -1, 99]))), ("connection", "close"),
           ("te", "gzip"), ("te", "trailers"), (":status", "99"), (":path", ""),
           (":method", "CONNECT"), (":protocol", "websocket"), ("Upper", "x"), ("x-a", " lead"),
           ("x-b", "a\x00b"), ("x-c", "a\r\nb"), ("", "empty"), ("host", "b"), (":authority", "a b"),
           ("transfer-encoding", "chunked"), ("x" * r.randint(1, 20000), "v"), (":unknown", "1"),
           (":status", "101"), (":status", "1000"), (":status", "abc"), ("keep-alive", "1")]
    for _ in range(r.randint(0, 4)):
        fields.insert(r.randint(0, len(fields)), r.choice(odd))
    if r.random() < 0.3:
        del fields[r.randint(0, len(fields) - 1)]
    return fields


def random_frames(r, request, stream_id=1):
    """One to eight frames: HEADERS (some split into CONTINUATION, padded or with a
    priority), DATA on open, closed or idle streams, control frames with random
    lengths, and mutated frames of any type."""
    out = []
    for _ in range(r.randint(1, 8)):
        k = r.random()
        if k < 0.45:
            block = f.block(random_fields(r, request))
            flags = r.choice([f.END_HEADERS, f.END_HEADERS | f.END_STREAM, 0, f.END_STREAM,
                              f.END_HEADERS | f.PADDED, f.END_HEADERS | f.PRIORITY_FLAG])
            if flags & f.PADDED:
                block = b"\x03" + block + b"pad"
            if flags & f.PRIORITY_FLAG:
                block = b"\x00\x00\x00\x00\x10" + block
            if r.random() < 0.2 and len(block) > 2:
                half = len(block) // 2
                out.append(frame(f.HEADERS, flags & ~f.END_HEADERS, stream_id, block[:half]))
                out.append(frame(f.CONTINUATION, f.END_HEADERS,
                                 r.choice([stream_id, stream_id + 2]), block[half:]))
            else:
                out.append(frame(f.HEADERS, flags, stream_id, block))
            if r.random() < 0.5:
                stream_id += 2
        elif k < 0.6:
            payload = b"\0" * r.randint(0, 300) if r.random() < 0.9 else b"\x05ab"
            out.append(frame(f.DATA, r.choice([0, f.END_STREAM, f.PADDED | f.END_STREAM]),
                             r.choice([stream_id, stream_id - 2, 0, 99]), payload))
        elif k < 0.9:
            type_ = r.choice([f.PRIORITY, f.RST_STREAM, f.SETTINGS, f.PING, f.GOAWAY,
                              f.WINDOW_UPDATE, f.CONTINUATION, f.PUSH_PROMISE, 0x10])
            size = r.choice([0, 4, 5, 6, 8, 13, r.randint(0, 100)])
            out.append(frame(type_, r.randint(0, 255) if r.random() < 0.3 else 0,
                             r.choice([0, stream_id, stream_id - 2, 2**31 - 1]),
                             bytes(r.randint(0, 255) for _ in range(size))))
        else:
            b = frame(r.randint(0, 12), r.randint(0, 255), r.randint(0, 2**31),
                      bytes(r.randint(0, 255) for _ in range(r.randint(0, 40))))
            out.append(mutate(b, r) if r.random() < 0.5 else b)
    return out


def seed_in(data, marker):
    """The decimal seed after marker in data, or 0."""
    i = data.find(marker)
    if i < 0:
        return 0
    j = k = i + len(marker)
    while k < len(data) and data[k:k + 1].isdigit():
        k += 1
    return int(data[j:k]) if k > j else 0


def drain(sock, quiet=0.05, limit=1 << 20):
    """Reads until the peer closes, is quiet for `quiet` seconds, or sent `limit` bytes."""
    sock.settimeout(quiet)
    got = b""
    try:
        while len(got) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return got


class _Origin:
    """A threaded TCP server on 127.0.0.1, port 0, serving each connection with
    the handler class the subclass defines."""

    class _Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    def __init__(self, handler):
        self.server = self._Server((LOCALHOST, 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class HostileH1Origin(_Origin):
    """HTTP/1.1 origin: /good gets a plain 200; /bad/<seed> gets a response built
    from the seed (mostly mutated), sent in pieces, sometimes cut short."""

    def __init__(self):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                sock.settimeout(2)
                buf = b""
                try:
                    while True:
                        while b"\r\n\r\n" not in buf:
                            chunk = sock.recv(65536)
                            if not chunk:
                                return
                            buf += chunk
                        head, buf = buf.split(b"\r\n\r\n", 1)
                        if b" /bad/" not in head.split(b"\r\n", 1)[0]:
                            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            continue
                        r = random.Random(seed_in(head, b"/bad/"))
                        resp = r.choice(RESPONSES)
                        if r.random() < 0.9:
                            resp = mutate(resp, r)
                        step = r.randint(1, 64) if r.random() < 0.3 else len(resp)
                        for i in range(0, len(resp), max(step, 1)):
                            sock.sendall(resp[i:i + step])
                            if r.random() < 0.1:
                                return  # Cut short.
                        if r.random() < 0.5:
                            return
                except OSError:
                    pass

        super().__init__(Handler)


class HostileH2Origin(_Origin):
    """h2c origin: answers the first request's HEADERS with random frames built from
    the seed in its :path (/h2up/<seed>), then reads until quiet and closes."""

    def __init__(self):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                sock.settimeout(1)
                buf = b""
                try:
                    while len(buf) < len(f.PREFACE) + 9 or b"/h2up/" not in buf:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    sock.sendall(f.settings())
                    # The stream id of the first HEADERS frame after the preface.
                    stream_id, pos = 1, len(f.PREFACE)
                    while pos + 9 <= len(buf):
                        size = int.from_bytes(buf[pos:pos + 3], "big")
                        if buf[pos + 3] == f.HEADERS:
                            stream_id = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
                            break
                        pos += 9 + size
                    r = random.Random(seed_in(buf, b"/h2up/"))
                    for fr in random_frames(r, False, stream_id):
                        sock.sendall(fr)
                    drain(sock, 0.2)
                except OSError:
                    pass

        super().__init__(Handler)


class HostilePeersTest(h.SkiffTestCase):
    def setUp(self):
        self.h1 = HostileH1Origin()
        self.addCleanup(self.h1.stop)
        self.h2 = HostileH2Origin()
        self.addCleanup(self.h2.stop)
        routes = [
            {"match": {"prefix": "/h2up"}, "route": {"cluster": "h2", "timeout": "2s"}},
            {"match": {"connect_matcher": {}},
             "route": {"cluster": "h1", "timeout": "2s",
                       "upgrade_configs": [{"upgrade_type": "CONNECT"}]}},
            {"match": {"prefix": "/"},
             "route": {"cluster": "h1", "timeout": "2s",
                       "retry_policy": {"retry_on": "5xx,reset,connect-failure",
                                        "num_retries": 1}}},
        ]
        self.certs = h.Certificates()
        self.addCleanup(self.certs.cleanup)
        cert, key = self.certs.leaf("hostile.test")
        tls = h.listener("tls", routes)
        tls["filter_chains"][0]["transport_socket"] = h.downstream_tls(
            cert, key, alpn=["h2", "http/1.1"])
        config = h.bootstrap(
            [h.listener("ingress", routes,
                        hcm_extra={"upgrade_configs": [{"upgrade_type": "websocket"}]}), tls],
            [h.cluster("h1", [(LOCALHOST, self.h1.port)]),
             h.cluster("h2", [(LOCALHOST, self.h2.port)],
                       extra={"typed_extension_protocol_options": H2_UPSTREAM})])
        self.skiff = self.start_skiff(config, concurrency=1)
        self.port = self.skiff.port()
        self.tls_port = self.skiff.port("tls")
        self.tls_client = ssl.create_default_context(cafile=self.certs.ca)
        self.tls_client.set_alpn_protocols(["h2", "http/1.1"])

    def client_hello(self):
        """The first flight of a TLS client to this listener (a ClientHello)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.tls_client.wrap_bio(incoming, outgoing, server_hostname="hostile.test")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return outgoing.read()

    def run_tls_case(self, r):
        if r.random() < 0.5:
            with socket.create_connection((LOCALHOST, self.tls_port), timeout=5) as sock:
                sock.sendall(mutate(self.client_hello(), r))
                drain(sock)
            return
        raw = socket.create_connection((LOCALHOST, self.tls_port), timeout=5)
        try:
            tls = self.tls_client.wrap_socket(raw, server_hostname="hostile.test")
        except (ssl.SSLError, OSError):
            raw.close()
            raise
        try:
            if tls.selected_alpn_protocol() == "h2":
                tls.sendall(f.PREFACE + f.settings() + b"".join(random_frames(r, True)))
            else:
                tls.sendall(mutate(r.choice(REQUESTS), r))
            drain(tls)
        finally:
            if r.random() < 0.5:
                try:
                    tls.settimeout(0.2)
                    tls.unwrap()  # close_notify first
                except (ssl.SSLError, OSError):
                    pass
            tls.close()  # Otherwise no close_notify: the TCP connection just ends.

    def assert_serving(self, case):
        self.assertIsNone(self.skiff.proc.poll(),
                          f"skiff exited by case {case}\n{self.skiff.log_tail()}")
        status, _, body = h.http_request(self.port, path="/good", timeout=10)
        self.assertEqual((status, body), (200, b"ok"),
                         f"a well-formed request after case {case}\n{self.skiff.log_tail()}")

    def run_case(self, kind, r):
        if kind == "tls":
            try:
                self.run_tls_case(r)
            except (ssl.SSLError, OSError):
                pass  # skiff may end the handshake or the connection: one right answer.
            return
        sock = socket.create_connection((LOCALHOST, self.port), timeout=5)
        try:
            if kind == "h1 downstream":
                data = mutate(r.choice(REQUESTS), r)
                pos = 0
                while pos < len(data):
                    n = r.randint(1, len(data)) if r.random() < 0.5 else len(data)
                    sock.sendall(data[pos:pos + n])
                    pos += n
                if r.random() < 0.3:
                    sock.shutdown(socket.SHUT_WR)
                drain(sock)
            elif kind == "h1 upstream":
                paths = [f"/bad/{r.randint(0, 10**9)}" if r.random() < 0.7 else "/good"
                         for _ in range(r.randint(1, 3))]
                sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                                      for p in paths))
                if r.random() < 0.3:
                    # Gone before the answers: an abortive close (RST).
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    drain(sock, 0.1)
            elif kind == "h2 downstream":
                frames = random_frames(r, True)
                for k in range(r.randint(0, 4)):
                    path = f"/h2up/{r.randint(0, 10**9)}" if r.random() < 0.5 else "/good"
                    fields = f.request_fields(path, method=r.choice(["GET", "POST"]))
                    frames.insert(r.randint(0, len(frames)),
                                  frame(f.HEADERS, f.END_HEADERS | r.choice([0, f.END_STREAM]),
                                        1 + 2 * k, f.block(fields)))
                    if r.random() < 0.5:
                        frames.insert(r.randint(0, len(frames)),
                                      frame(f.DATA, r.choice([0, f.END_STREAM]), 1 + 2 * k,
                                            b"x" * r.randint(0, 70000)))
                    if r.random() < 0.3:
                        frames.insert(r.randint(0, len(frames)),
                                      f.rst_stream(1 + 2 * k, f.CANCEL))
                sock.sendall(f.PREFACE + f.settings() + b"".join(frames))
                drain(sock)
            elif kind == "h2 upstream":
                fields = f.request_fields(f"/h2up/{r.randint(0, 10**9)}")
                sock.sendall(f.PREFACE + f.settings() + f.headers(1, fields))
                drain(sock, 0.1)
        except OSError:
            pass  # skiff may close on us mid-send: that is one right answer.
        finally:
            sock.close()

    def test_hostile_peers_leave_skiff_serving(self):
        kinds = ["h1 downstream", "h1 upstream", "h2 downstream", "h2 upstream", "tls"]
        for case in range(CASES):
            if os.environ.get("HOSTILE_TRACE"):
                print("case", case, kinds[case % len(kinds)], flush=True)
            self.run_case(kinds[case % len(kinds)], random.Random(SEED * 1000003 + case))
            if case % BATCH == BATCH - 1:
                self.assert_serving(case)
        self.assert_serving(CASES)
        # Drains and exits cleanly: under the sanitizers, LeakSanitizer's report
        # at exit would make this non-zero.
        self.skiff.signal(signal.SIGTERM)
        rc = self.skiff.wait(60)
        self.assertEqual(rc, 0, f"exit status after SIGTERM\n{self.skiff.log_tail()}")


if __name__ == "__main__":
    unittest.main()
