"""A raw HTTP/2 frame client and server for tests that must send exactly the
frames a hostile or broken peer would (RFC 9113), which real clients refuse to.

Frames are encoded here by hand, so a test can send any length, flag, stream id
or payload. Header blocks are sent as HPACK literals without indexing and
without Huffman coding (RFC 7541 6.2.2), so a name can be uppercase, repeated
or out of order; header blocks received are decoded with Debian's python3-hpack.
Every read is bounded by a timeout.
"""

import socket
import struct
import sys
import time

try:
    import hpack
except ImportError:
    # Debian's python3-hpack (.ci/setup), when the interpreter running the
    # tests is not Debian's own.
    sys.path.append("/usr/lib/python3/dist-packages")
    import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
TYPE_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
              "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes (RFC 9113 7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, \
    ENHANCE_YOUR_CALM, INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(14)

# Settings (RFC 9113 6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)


def frame(type_, flags, stream_id, payload=b"", length=None):
    """One frame; `length` overrides the length field (to lie about it)."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + struct.pack(">BBI", type_, flags, stream_id) + payload


def _int(value, prefix_bits, first=0):
    """An HPACK integer (RFC 7541 5.1) with `first` in the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _str(s):
    b = s.encode("latin-1") if isinstance(s, str) else s
    return _int(len(b), 7) + b  # H = 0: no Huffman


def block(fields):
    """A header block of literals without indexing, new names, in this order."""
    return b"".join(b"\x00" + _str(k) + _str(v) for k, v in fields)


def request_fields(path="/", method="GET", authority="test", scheme="http", extra=()):
    out = [(":method", method), (":scheme", scheme), (":path", path)]
    if authority is not None:
        out.append((":authority", authority))
    return out + list(extra)


def headers(stream_id, fields, end_stream=True, end_headers=True):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, stream_id, block(fields))


def data(stream_id, payload, end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, payload)


def settings(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def ping(payload=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, payload)


def rst_stream(stream_id, code):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def goaway(last_stream_id, code, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id, code) + debug)


def window_update(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def priority(stream_id, depends_on=0, weight=16):
    return frame(PRIORITY, 0, stream_id, struct.pack(">IB", depends_on, weight - 1))


def push_promise(stream_id, promised_id, fields):
    return frame(PUSH_PROMISE, END_HEADERS, stream_id, struct.pack(">I", promised_id) + block(fields))


class Frame:
    def __init__(self, type_, flags, stream_id, payload):
        self.type, self.flags, self.stream_id, self.payload = type_, flags, stream_id, payload
        self.headers = None  # Decoded fields, for HEADERS / PUSH_PROMISE ending a block.

    def error_code(self):
        """RST_STREAM's or GOAWAY's error code."""
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        raise ValueError(f"{self} has no error code")

    def last_stream_id(self):
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF

    def __repr__(self):
        name = TYPE_NAMES[self.type] if self.type < len(TYPE_NAMES) else str(self.type)
        extra = ""
        if self.type in (RST_STREAM, GOAWAY):
            extra = f" code={self.error_code()}"
        if self.type == GOAWAY:
            extra += f" last={self.last_stream_id()}"
        if self.headers is not None:
            extra += f" {self.headers}"
        return f"<{name} flags={self.flags:#x} stream={self.stream_id} len={len(self.payload)}{extra}>"


class Peer:
    """One end of an HTTP/2 connection over a socket: send raw bytes, read
    frames (decoding header blocks in order, so HPACK state stays right)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 16
        self.frames = []  # Everything read so far, in order.
        self.closed = False  # The peer closed (EOF or reset).
        self.auto_ack = True  # Answer SETTINGS (not ACK) with SETTINGS ACK.
        self._block = None  # (frame, fragments) of a header block in progress.

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def read_frame(self, timeout=5.0):
        """The next frame, or None on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    t, flags, sid = struct.unpack(">BBI", self.buf[3:9])
                    f = Frame(t, flags, sid & 0x7FFFFFFF, self.buf[9:9 + n])
                    self.buf = self.buf[9 + n:]
                    self._on_frame(f)
                    return f
            if self.closed or not self._fill(deadline):
                return None

    def _on_frame(self, f):
        self.frames.append(f)
        if f.type == SETTINGS and not f.flags & ACK and self.auto_ack and not self.closed:
            try:
                self.send(settings(ack=True))
            except OSError:
                pass
        fragment = None
        if f.type in (HEADERS, PUSH_PROMISE):
            p = f.payload
            pad = 0
            if f.flags & PADDED:
                pad = p[0]
                p = p[1:]
            if f.type == HEADERS and f.flags & PRIORITY_FLAG:
                p = p[5:]
            if f.type == PUSH_PROMISE:
                p = p[4:]
            fragment = p[:len(p) - pad]
            self._block = (f, [fragment])
        elif f.type == CONTINUATION and self._block:
            self._block[1].append(f.payload)
            fragment = f.payload
        if fragment is not None and f.flags & END_HEADERS:
            first, fragments = self._block
            self._block = None
            first.headers = [(k.decode("latin-1") if isinstance(k, bytes) else k,
                              v.decode("latin-1") if isinstance(v, bytes) else v)
                             for k, v in self.decoder.decode(b"".join(fragments), raw=True)]

    def read_until(self, predicate, timeout=5.0):
        """Reads frames until one matches (returned) or EOF/timeout (None)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return None
            if predicate(f):
                return f

    def read_to_close(self, timeout=5.0):
        """Every frame until the peer closes; raises if it does not close in time."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if self.read_frame(max(0.0, deadline - time.monotonic())) is None and not self.closed:
                raise TimeoutError(f"the peer did not close within {timeout}s; frames: {self.frames}")
        return self.frames

    def response(self, stream_id, timeout=5.0):
        """(status, headers, body, end) of stream_id: its final HEADERS, then DATA
        until END_STREAM, from the frames received so far and then the socket. end is the frame that ended it (HEADERS/DATA with
        END_STREAM, RST_STREAM, GOAWAY) or None."""
        status, fields, body = None, None, b""
        deadline = time.monotonic() + timeout
        # Frames already received count too: waiting for another stream (or
        # a reset) may have read this stream's answer.
        seen = 0
        while True:
            if seen < len(self.frames):
                f = self.frames[seen]
                seen += 1
            else:
                f = self.read_frame(max(0.0, deadline - time.monotonic()))
                if f is None:
                    return status, fields, body, None
                seen = len(self.frames)
            if f.type == GOAWAY and f.last_stream_id() < stream_id:
                return status, fields, body, f
            if f.stream_id != stream_id:
                continue
            if f.type == RST_STREAM:
                return status, fields, body, f
            if f.type == HEADERS and f.headers is not None:
                d = dict(f.headers)
                if fields is None and not d.get(":status", "200").startswith("1"):
                    status, fields = int(d[":status"]), f.headers
            if f.type == DATA:
                body += f.payload[1 + f.payload[0]:len(f.payload) - f.payload[0]] \
                    if f.flags & PADDED else f.payload
            if f.type in (HEADERS, DATA) and f.flags & END_STREAM:
                return status, fields, body, f

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(port, preface=True, client_settings=(), host="127.0.0.1", rcvbuf=None):
    """A client connection to port; by default the preface and a SETTINGS frame
    are sent (the server's SETTINGS are acknowledged as they are read)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect((host, port))
    p = Peer(s)
    if preface:
        p.send(PREFACE + settings(client_settings))
    return p
