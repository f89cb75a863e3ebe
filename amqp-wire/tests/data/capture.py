#!/usr/bin/env python3
"""Capture raw AMQP 0-9-1 frames from a live RabbitMQ broker as codec test fixtures.

Standard library only; every frame is encoded by hand over a raw TCP socket.

Usage (from the repository root):

    python3 amqp-wire/tests/data/capture.py [--force]

The fixtures are not reproducible byte-for-byte (random queue name, broker
generated reply_to token), and Rust tests assert their exact contents, so the
script refuses to overwrite existing .bin files unless --force is given.

Environment overrides: AMQP_HOST (default 127.0.0.1), AMQP_PORT (default 5672).

Writes, next to this script:
    connection_start.bin        first frame from the broker (connection.start)
    connection_tune.bin         connection.tune frame
    deliver_with_headers.bin    basic.deliver method frame + content header frame + body frame
    channel_close_404.bin       channel.close sent after a passive queue.declare on a missing queue

Before the real capture, each header field type is probed on its own
connection. A type the broker refuses (it closes the channel or connection) is
dropped from the final message and reported; a type the broker re-encodes
differently is reported as rewritten. The script ends by printing a decoded
listing of every fixture.
"""

import os
import secrets
import socket
import struct
import sys

HOST = os.environ.get("AMQP_HOST", "127.0.0.1")
PORT = int(os.environ.get("AMQP_PORT", "5672"))
USER, PASSWORD, VHOST = "guest", "guest", "/"
OUT_DIR = os.path.dirname(os.path.abspath(__file__))

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE

CONSUMER_TAG = "capture-ctag"
MISSING_QUEUE = "capture-no-such-queue"
BODY = b'{"msg":"hello from capture.py","n":1}'
assert len(BODY) == 37

# Header table entries, in wire order.  Each value is (type_tag, python_value);
# tables are lists of (name, (tag, value)); arrays are lists of (tag, value).
HEADER_ENTRIES = [
    ("t_bool", ("t", True)),
    ("b_i8", ("b", -100)),
    ("B_u8", ("B", 200)),
    ("s_i16", ("s", -30000)),
    ("u_u16", ("u", 60000)),
    ("I_i32", ("I", -2000000000)),
    ("i_u32", ("i", 4000000000)),
    ("l_i64", ("l", -9000000000000000000)),
    ("f_f32", ("f", 1.5)),
    ("d_f64", ("d", 2.25)),
    ("D_decimal", ("D", (2, 12345))),  # scale 2, unscaled 12345 -> 123.45
    ("S_longstr", ("S", b"hello longstr")),
    ("x_bytes", ("x", b"\x00\x01\xfe\xff")),
    ("A_array", ("A", [("I", 1), ("S", b"two"), ("t", True), ("d", 2.25)])),
    ("T_timestamp", ("T", 1700000001)),
    ("F_table", ("F", [("k1", ("S", b"v1")), ("k2", ("I", -1))])),
    ("V_void", ("V", None)),
]

BASE_PROPERTIES = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "delivery_mode": 2,
    "priority": 5,
    "correlation_id": "corr-1",
    "reply_to": "amq.rabbitmq.reply-to",
    "expiration": "60000",
    "message_id": "msg-1",
    "timestamp": 1700000000,
    "type": "test.type",
    "user_id": "guest",
    "app_id": "capture",
}

# Basic class properties: (name, flag bit, kind), in wire order.
BASIC_PROPS = [
    ("content_type", 15, "shortstr"),
    ("content_encoding", 14, "shortstr"),
    ("headers", 13, "table"),
    ("delivery_mode", 12, "octet"),
    ("priority", 11, "octet"),
    ("correlation_id", 10, "shortstr"),
    ("reply_to", 9, "shortstr"),
    ("expiration", 8, "shortstr"),
    ("message_id", 7, "shortstr"),
    ("timestamp", 6, "timestamp"),
    ("type", 5, "shortstr"),
    ("user_id", 4, "shortstr"),
    ("app_id", 3, "shortstr"),
    ("cluster_id", 2, "shortstr"),
]

# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def enc_shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    assert len(b) < 256
    return bytes([len(b)]) + b


def enc_longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def enc_value(tag, v):
    t = tag.encode()
    if tag == "t":
        return t + bytes([1 if v else 0])
    simple = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I",
              "l": ">q", "f": ">f", "d": ">d", "T": ">Q"}
    if tag in simple:
        return t + struct.pack(simple[tag], v)
    if tag == "D":
        return t + struct.pack(">BI", v[0], v[1])
    if tag in ("S", "x"):
        return t + enc_longstr(v)
    if tag == "A":
        return t + enc_longstr(b"".join(enc_value(et, ev) for et, ev in v))
    if tag == "F":
        return t + enc_table(v)
    if tag == "V":
        return t
    raise ValueError("unknown field type %r" % tag)


def enc_table(entries):
    body = b"".join(enc_shortstr(k) + enc_value(tag, v) for k, (tag, v) in entries)
    return enc_longstr(body)


def frame(ftype, channel, payload):
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes([FRAME_END])


def method_frame(channel, class_id, method_id, args=b""):
    return frame(FRAME_METHOD, channel, struct.pack(">HH", class_id, method_id) + args)


def content_header_frame(channel, body_size, props):
    flags = 0
    plist = b""
    for name, bit, kind in BASIC_PROPS:
        if name not in props:
            continue
        flags |= 1 << bit
        v = props[name]
        if kind == "shortstr":
            plist += enc_shortstr(v)
        elif kind == "octet":
            plist += struct.pack(">B", v)
        elif kind == "timestamp":
            plist += struct.pack(">Q", v)
        elif kind == "table":
            plist += enc_table(v)
    payload = struct.pack(">HHQH", 60, 0, body_size, flags) + plist
    return frame(FRAME_HEADER, channel, payload)


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))

    def octet(self):
        return self.unpack(">B")[0]

    def short(self):
        return self.unpack(">H")[0]

    def long(self):
        return self.unpack(">I")[0]

    def longlong(self):
        return self.unpack(">Q")[0]

    def shortstr(self):
        return self.take(self.octet())

    def longstr(self):
        return self.take(self.long())

    def value(self):
        tag = self.take(1).decode()
        if tag == "t":
            return (tag, self.octet() != 0)
        simple = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I",
                  "l": ">q", "f": ">f", "d": ">d", "T": ">Q"}
        if tag in simple:
            return (tag, self.unpack(simple[tag])[0])
        if tag == "D":
            return (tag, self.unpack(">BI"))
        if tag in ("S", "x"):
            return (tag, self.longstr())
        if tag == "A":
            sub = Reader(self.longstr())
            items = []
            while sub.pos < len(sub.data):
                items.append(sub.value())
            return (tag, items)
        if tag == "F":
            return (tag, self.table())
        if tag == "V":
            return (tag, None)
        raise ValueError("unknown field type %r" % tag)

    def table(self):
        sub = Reader(self.longstr())
        entries = []
        while sub.pos < len(sub.data):
            k = sub.shortstr().decode()
            entries.append((k, sub.value()))
        return entries


def decode_properties(payload):
    """Content header payload -> (class_id, weight, body_size, flags, props)."""
    r = Reader(payload)
    class_id, weight, body_size, flags = r.unpack(">HHQH")
    props = {}
    for name, bit, kind in BASIC_PROPS:
        if not flags & (1 << bit):
            continue
        if kind == "shortstr":
            props[name] = r.shortstr().decode()
        elif kind == "octet":
            props[name] = r.octet()
        elif kind == "timestamp":
            props[name] = r.longlong()
        elif kind == "table":
            props[name] = r.table()
    assert r.pos == len(payload), "trailing bytes in content header"
    return class_id, weight, body_size, flags, props


def split_frames(data):
    """Split raw bytes into [(type, channel, payload, raw)]; validates frame-end."""
    out = []
    pos = 0
    while pos < len(data):
        ftype, channel, size = struct.unpack(">BHI", data[pos:pos + 7])
        end = pos + 7 + size
        assert data[end] == FRAME_END, "bad frame end at %d" % end
        out.append((ftype, channel, data[pos + 7:end], data[pos:end + 1]))
        pos = end + 1
    return out


# --------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------


class BrokerClosed(Exception):
    def __init__(self, kind, code, text, class_id, method_id, raw):
        super().__init__("%s %d %s (class %d method %d)" % (kind, code, text, class_id, method_id))
        self.kind, self.code, self.text = kind, code, text
        self.class_id, self.method_id, self.raw = class_id, method_id, raw


class Conn:
    def __init__(self):
        self.sock = socket.create_connection((HOST, PORT), timeout=10)
        self.buf = b""
        self.tune = None

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("socket closed by broker")
            self.buf += chunk

    def read_frame(self):
        """Return (type, channel, payload, raw_bytes) of the next complete frame."""
        self._fill(7)
        ftype, channel, size = struct.unpack(">BHI", self.buf[:7])
        self._fill(7 + size + 1)
        raw = self.buf[:7 + size + 1]
        self.buf = self.buf[7 + size + 1:]
        if raw[-1] != FRAME_END:
            raise ValueError("bad frame end byte 0x%02x" % raw[-1])
        return ftype, channel, raw[7:7 + size], raw

    def read_method(self, channel, expect):
        """Read frames until a method frame on `channel`; raise BrokerClosed on close."""
        while True:
            ftype, ch, payload, raw = self.read_frame()
            if ftype == FRAME_HEARTBEAT:
                continue
            if ftype != FRAME_METHOD:
                raise ValueError("unexpected frame type %d on channel %d" % (ftype, ch))
            cls, mth = struct.unpack(">HH", payload[:4])
            if (cls, mth) in ((10, 50), (20, 40)):
                r = Reader(payload, 4)
                code = r.short()
                text = r.shortstr().decode()
                c, m = r.short(), r.short()
                kind = "connection.close" if cls == 10 else "channel.close"
                if cls == 10:
                    self.send(method_frame(0, 10, 51))
                else:
                    self.send(method_frame(ch, 20, 41))
                raise BrokerClosed(kind, code, text, c, m, raw)
            if ch != channel or (cls, mth) != expect:
                raise ValueError("expected %r on ch %d, got %r on ch %d" % (expect, channel, (cls, mth), ch))
            return payload, raw

    def handshake(self):
        self.send(PROTOCOL_HEADER)
        ftype, ch, payload, start_raw = self.read_frame()
        assert ftype == FRAME_METHOD and ch == 0 and payload[:4] == b"\x00\x0a\x00\x0a", "not connection.start"
        client_props = [
            ("product", ("S", b"amqp-wire capture.py")),
            ("platform", ("S", b"Python 3")),
        ]
        args = (enc_table(client_props) + enc_shortstr("PLAIN")
                + enc_longstr(b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode())
                + enc_shortstr("en_US"))
        self.send(method_frame(0, 10, 11, args))
        payload, tune_raw = self.read_method(0, (10, 30))
        channel_max, frame_max, heartbeat = struct.unpack(">HIH", payload[4:])
        self.tune = (channel_max, frame_max, heartbeat)
        self.send(method_frame(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
        self.send(method_frame(0, 10, 40, enc_shortstr(VHOST) + enc_shortstr("") + b"\x00"))
        self.read_method(0, (10, 41))
        return start_raw, tune_raw

    def channel_open(self, ch):
        self.send(method_frame(ch, 20, 10, enc_shortstr("")))
        self.read_method(ch, (20, 11))

    def channel_close(self, ch):
        self.send(method_frame(ch, 20, 40, struct.pack(">H", 200) + enc_shortstr("Normal shutdown")
                               + struct.pack(">HH", 0, 0)))
        self.read_method(ch, (20, 41))

    def queue_declare(self, ch, name, passive=False, durable=False, exclusive=False, auto_delete=False):
        bits = (passive << 0) | (durable << 1) | (exclusive << 2) | (auto_delete << 3)
        self.send(method_frame(ch, 50, 10, struct.pack(">H", 0) + enc_shortstr(name)
                               + bytes([bits]) + enc_table([])))
        return self.read_method(ch, (50, 11))

    def queue_delete(self, ch, name):
        self.send(method_frame(ch, 50, 40, struct.pack(">H", 0) + enc_shortstr(name) + b"\x00"))
        payload, _ = self.read_method(ch, (50, 41))
        return struct.unpack(">I", payload[4:8])[0]

    def publish(self, ch, routing_key, props, body):
        frame_max = self.tune[1]
        assert len(body) + 8 <= frame_max
        self.send(method_frame(ch, 60, 40, struct.pack(">H", 0) + enc_shortstr("")
                               + enc_shortstr(routing_key) + b"\x00")
                  + content_header_frame(ch, len(body), props)
                  + frame(FRAME_BODY, ch, body))

    def consume(self, ch, queue, tag, no_ack=True):
        bits = (no_ack << 1)
        self.send(method_frame(ch, 60, 20, struct.pack(">H", 0) + enc_shortstr(queue)
                               + enc_shortstr(tag) + bytes([bits]) + enc_table([])))
        self.read_method(ch, (60, 21))

    def cancel(self, ch, tag):
        self.send(method_frame(ch, 60, 30, enc_shortstr(tag) + b"\x00"))
        self.read_method(ch, (60, 31))

    def basic_get(self, ch, queue):
        """Return (header_payload, body) or None if empty."""
        self.send(method_frame(ch, 60, 70, struct.pack(">H", 0) + enc_shortstr(queue) + b"\x01"))
        while True:
            ftype, c, payload, raw = self.read_frame()
            if ftype != FRAME_METHOD:
                raise ValueError("unexpected frame")
            cls, mth = struct.unpack(">HH", payload[:4])
            if (cls, mth) == (60, 72):
                return None
            if (cls, mth) in ((10, 50), (20, 40)):
                # reuse close handling
                self.buf = raw + self.buf
                self.read_method(ch, (60, 71))
            if (cls, mth) == (60, 71):
                break
        _, _, hdr, _ = self.read_frame()
        body_size = struct.unpack(">Q", hdr[4:12])[0]
        body = b""
        while len(body) < body_size:
            _, _, chunk, _ = self.read_frame()
            body += chunk
        return hdr, body

    def close(self):
        self.send(method_frame(0, 10, 50, struct.pack(">H", 200) + enc_shortstr("Goodbye")
                               + struct.pack(">HH", 0, 0)))
        self.read_method(0, (10, 51))
        self.sock.close()


def delete_queue_on_new_connection(queue):
    """Best-effort cleanup after the broker killed a connection."""
    try:
        c = Conn()
        c.handshake()
        c.channel_open(1)
        c.queue_delete(1, queue)
        c.close()
    except Exception as e:  # pragma: no cover - diagnostic only
        print("warning: could not delete queue %s: %s" % (queue, e))


def fresh_queue_name():
    return "pika-capture-" + secrets.token_hex(6)


def setup_reply_to(conn, ch, props, use_direct_reply_to):
    """Publishing with reply_to=amq.rabbitmq.reply-to requires a direct reply-to consumer."""
    if use_direct_reply_to:
        conn.consume(ch, "amq.rabbitmq.reply-to", "capture-reply-to", no_ack=True)


# --------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------


def probe(entries, use_direct_reply_to, props_override=None):
    """Publish one message with the given headers; return ('ok', received_headers)
    or ('refused', BrokerClosed)."""
    conn = Conn()
    conn.handshake()
    conn.channel_open(1)
    q = fresh_queue_name()
    conn.queue_declare(1, q, auto_delete=True)
    props = dict(BASE_PROPERTIES if props_override is None else props_override)
    props["headers"] = entries
    try:
        setup_reply_to(conn, 1, props, use_direct_reply_to)
        conn.publish(1, q, props, BODY)
        got = conn.basic_get(1, q)
    except BrokerClosed as e:
        try:
            if e.kind == "channel.close":
                conn.channel_open(2)
                conn.queue_delete(2, q)
                conn.close()
            else:
                conn.sock.close()
                delete_queue_on_new_connection(q)
        except Exception:
            conn.sock.close()
            delete_queue_on_new_connection(q)
        return "refused", e
    except (ConnectionError, socket.timeout) as e:
        conn.sock.close()
        delete_queue_on_new_connection(q)
        return "refused", e
    conn.queue_delete(1, q)
    conn.close()
    if got is None:
        return "refused", "message not routed/stored (basic.get-empty)"
    _, _, _, _, rprops = decode_properties(got[0])
    return "ok", rprops


# --------------------------------------------------------------------------
# Pretty printing
# --------------------------------------------------------------------------


def fmt_value(tag, v):
    if tag in ("S", "x"):
        return "%s %r" % (tag, v)
    if tag == "D":
        return "D (scale=%d, value=%d)" % tuple(v)
    if tag in ("f", "d"):
        return "%s %r (hex %s)" % (tag, v, struct.pack(">f" if tag == "f" else ">d", v).hex())
    if tag == "A":
        return "A [" + ", ".join(fmt_value(t, x) for t, x in v) + "]"
    if tag == "F":
        return "F {" + ", ".join("%r: %s" % (k, fmt_value(t, x)) for k, (t, x) in v) + "}"
    if tag == "V":
        return "V (void)"
    return "%s %r" % (tag, v)


def describe_method(payload):
    r = Reader(payload)
    cls, mth = r.short(), r.short()
    lines = ["  method class=%d method=%d" % (cls, mth)]
    if (cls, mth) == (10, 10):
        lines.append("  version_major=%d version_minor=%d" % (r.octet(), r.octet()))
        lines.append("  server_properties:")
        for k, (t, v) in r.table():
            lines.append("    %r: %s" % (k, fmt_value(t, v)))
        lines.append("  mechanisms=%r" % r.longstr())
        lines.append("  locales=%r" % r.longstr())
    elif (cls, mth) == (10, 30):
        lines.append("  channel_max=%d frame_max=%d heartbeat=%d" % (r.short(), r.long(), r.short()))
    elif (cls, mth) == (60, 60):
        lines.append("  consumer_tag=%r" % r.shortstr())
        lines.append("  delivery_tag=%d" % r.longlong())
        lines.append("  redelivered=%d" % r.octet())
        lines.append("  exchange=%r" % r.shortstr())
        lines.append("  routing_key=%r" % r.shortstr())
    elif (cls, mth) == (20, 40):
        lines.append("  reply_code=%d" % r.short())
        lines.append("  reply_text=%r" % r.shortstr())
        lines.append("  class_id=%d method_id=%d" % (r.short(), r.short()))
    assert r.pos == len(payload), "trailing bytes in method payload"
    return lines


def describe_file(path):
    data = open(path, "rb").read()
    print("== %s (%d bytes)" % (os.path.basename(path), len(data)))
    for ftype, ch, payload, raw in split_frames(data):
        print(" frame type=%d channel=%d payload_size=%d total=%d" % (ftype, ch, len(payload), len(raw)))
        if ftype == FRAME_METHOD:
            for line in describe_method(payload):
                print(line)
        elif ftype == FRAME_HEADER:
            class_id, weight, body_size, flags, props = decode_properties(payload)
            print("  class_id=%d weight=%d body_size=%d property_flags=0x%04x" % (class_id, weight, body_size, flags))
            for name, _, _ in BASIC_PROPS:
                if name not in props:
                    continue
                if name == "headers":
                    print("  headers:")
                    for k, (t, v) in props[name]:
                        print("    %r: %s" % (k, fmt_value(t, v)))
                else:
                    print("  %s=%r" % (name, props[name]))
        elif ftype == FRAME_BODY:
            print("  body=%r" % payload)


def write(name, data):
    with open(os.path.join(OUT_DIR, name), "wb") as f:
        f.write(data)
    print("wrote %s (%d bytes)" % (name, len(data)))


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


FIXTURES = ("connection_start.bin", "connection_tune.bin", "deliver_with_headers.bin", "channel_close_404.bin")


def main():
    existing = [n for n in FIXTURES if os.path.exists(os.path.join(OUT_DIR, n))]
    if existing and "--force" not in sys.argv[1:]:
        sys.exit("refusing to overwrite %s (tests assert their exact bytes); pass --force and "
                 "update README.md afterwards" % ", ".join(existing))
    # 0. Does the broker accept reply_to=amq.rabbitmq.reply-to without a direct
    #    reply-to consumer on the publishing channel?
    status, res = probe([], use_direct_reply_to=False)
    use_drt = status != "ok"
    print("reply_to without direct reply-to consumer: %s %s" % (status, "" if status == "ok" else res))
    if use_drt:
        status, res = probe([], use_direct_reply_to=True)
        print("reply_to with direct reply-to consumer: %s" % status)
        if status != "ok":
            sys.exit("broker refuses the base property set: %s" % res)

    # 1. Probe every header field type on its own.
    accepted, refused, rewritten = [], [], []
    for name, (tag, value) in HEADER_ENTRIES:
        status, res = probe([(name, (tag, value))], use_drt)
        if status != "ok":
            refused.append((name, tag, str(res)))
            print("probe %-12s %s: REFUSED (%s)" % (name, tag, res))
            continue
        accepted.append((name, (tag, value)))
        got = res.get("headers")
        if got != [(name, (tag, value))]:
            rewritten.append((name, tag, got))
            print("probe %-12s %s: accepted, REWRITTEN to %r" % (name, tag, got))
        else:
            print("probe %-12s %s: accepted unchanged" % (name, tag))

    # 2. Real capture, retrying with offending types dropped if needed.
    entries = list(accepted)
    while True:
        conn = Conn()
        start_raw, tune_raw = conn.handshake()
        print("broker tune: channel_max=%d frame_max=%d heartbeat=%d" % conn.tune)
        conn.channel_open(1)
        queue = fresh_queue_name()
        conn.queue_declare(1, queue, auto_delete=True)
        props = dict(BASE_PROPERTIES)
        props["headers"] = entries
        try:
            setup_reply_to(conn, 1, props, use_drt)
            conn.publish(1, queue, props, BODY)
            conn.consume(1, queue, CONSUMER_TAG, no_ack=True)
            # basic.deliver, content header, body: exactly as received.
            while True:
                ftype, ch, payload, deliver_raw = conn.read_frame()
                if ftype == FRAME_METHOD and payload[:4] in (b"\x00\x0a\x00\x32", b"\x00\x14\x00\x28"):
                    conn.buf = deliver_raw + conn.buf
                    conn.read_method(1, (60, 60))
                if ftype == FRAME_METHOD and ch == 1 and payload[:4] == b"\x00\x3c\x00\x3c":
                    break
            ftype, ch, hdr_payload, header_raw = conn.read_frame()
            assert ftype == FRAME_HEADER and ch == 1
            body_size = struct.unpack(">Q", hdr_payload[4:12])[0]
            ftype, ch, body_payload, body_raw = conn.read_frame()
            assert ftype == FRAME_BODY and ch == 1 and len(body_payload) == body_size == len(BODY)
        except BrokerClosed as e:
            conn.sock.close()
            delete_queue_on_new_connection(queue)
            if not entries:
                sys.exit("capture failed even without headers: %s" % e)
            dropped = entries.pop()
            refused.append((dropped[0], dropped[1][0], "dropped after final capture failed: %s" % e))
            print("final capture refused (%s); dropping %s and retrying" % (e, dropped[0]))
            continue
        break

    write("connection_start.bin", start_raw)
    write("connection_tune.bin", tune_raw)
    write("deliver_with_headers.bin", deliver_raw + header_raw + body_raw)

    _, _, _, _, got = decode_properties(hdr_payload)
    if got.get("headers") != entries:
        print("NOTE: broker re-encoded headers differently from what was sent")
    for k in BASE_PROPERTIES:
        if got.get(k) != BASE_PROPERTIES[k]:
            print("NOTE: property %s sent %r, delivered %r" % (k, BASE_PROPERTIES[k], got.get(k)))

    # 3. Channel error: passive declare of a missing queue on channel 2.
    conn.channel_open(2)
    try:
        conn.queue_declare(2, MISSING_QUEUE, passive=True)
        sys.exit("passive declare of %r unexpectedly succeeded" % MISSING_QUEUE)
    except BrokerClosed as e:
        assert e.kind == "channel.close" and e.code == 404, e
        write("channel_close_404.bin", e.raw)  # channel.close-ok already sent

    # 4. Clean up: cancel consumers, delete the queue, close everything.
    conn.cancel(1, CONSUMER_TAG)
    if use_drt:
        conn.cancel(1, "capture-reply-to")
    conn.queue_delete(1, queue)
    conn.channel_close(1)
    conn.close()

    print()
    print("refused types: %s" % (refused or "none"))
    print("rewritten types: %s" % (rewritten or "none"))
    print()
    for name in FIXTURES:
        describe_file(os.path.join(OUT_DIR, name))
        print()


if __name__ == "__main__":
    main()
