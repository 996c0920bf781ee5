"""A small HTTP/2 client over python3-h2 for the black-box tests: its own validation can be turned
off so that malformed requests reach the gateway as sent, and raw frames can be written too."""

import socket
import ssl
import struct
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from tlsutil import client_ctx


def tls_h2_socket(port, ca=None, sni="a.test", timeout=10.0):
    ctx = client_ctx(ca, alpn=("h2", "http/1.1"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    return s


class StreamResult:
    def __init__(self):
        self.headers = None
        self.status = None
        self.body = bytearray()
        self.ended = False
        self.reset = None            # RST_STREAM error code from the server
        self.trailers = None

    def header(self, name):
        for k, v in self.headers or ():
            if k == name:
                return v
        return None

    def header_values(self, name):
        return [v for k, v in self.headers or () if k == name]

    def __repr__(self):
        return "<stream status=%r reset=%r ended=%r body=%d bytes>" % (
            self.status, self.reset, self.ended, len(self.body))


class H2Client:
    """One HTTP/2 connection. strict=False sends headers exactly as given (no validation, no
    normalisation). window: the client's stream receive window (the data it acknowledges is
    only what the caller consumed when auto_ack is off)."""

    def __init__(self, port, ca=None, sni="a.test", strict=False, window=None, timeout=10.0):
        self.sock = tls_h2_socket(port, ca, sni, timeout)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=strict,
                                        normalize_outbound_headers=strict,
                                        validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.streams = {}
        self.goaway = None            # error code of a GOAWAY received
        self.closed = False
        self.remote_settings = {}
        self.auto_ack = True
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data):
        """Bytes written as they are (hand-built frames)."""
        self.sock.sendall(data)

    def encode(self, headers):
        """A header block from this connection's HPACK encoder (its table stays in step)."""
        return self.conn.encoder.encode(headers)

    def request(self, headers, body=None, end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = StreamResult()
        self.conn.send_headers(sid, headers, end_stream=end_stream and body is None)
        if body is not None:
            self.send_body(sid, body, end_stream)
        self.flush()
        return sid

    def send_body(self, sid, body, end_stream=True):
        """Sends as much as the windows allow, reading the server's WINDOW_UPDATEs meanwhile."""
        view = memoryview(body)
        while view:
            n = min(len(view), self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size)
            if n <= 0:
                self.flush()
                self.read_some()
                continue
            self.conn.send_data(sid, view[:n].tobytes())
            view = view[n:]
            self.flush()
        if end_stream:
            self.conn.end_stream(sid)
        self.flush()

    def read_some(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for ev in events:
            self._event(ev)
        self.flush()
        return True

    def _event(self, ev):
        st = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            st.headers = [(k if isinstance(k, str) else k.decode(),
                           v if isinstance(v, str) else v.decode()) for k, v in ev.headers]
            st.status = int(st.header(":status"))
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            pass
        elif isinstance(ev, h2.events.DataReceived):
            st.body += ev.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                st.unacked = getattr(st, "unacked", 0) + ev.flow_controlled_length
        elif isinstance(ev, h2.events.TrailersReceived):
            st.trailers = [(k if isinstance(k, str) else k.decode(),
                            v if isinstance(v, str) else v.decode()) for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            st.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if st is not None:
                st.reset = int(ev.error_code)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = int(ev.error_code)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[int(k)] = v.new_value

    def wait(self, sid, timeout=10.0):
        deadline = time.monotonic() + timeout
        st = self.streams[sid]
        while not (st.ended or st.reset is not None or self.closed):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("stream %d not done within %.0fs: %r" % (sid, timeout, st))
            self.read_some(left)
        return st

    def wait_closed(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.0fs" % timeout)
            self.read_some(left)

    def get(self, path, authority="a.test", headers=(), timeout=10.0):
        sid = self.request([(":method", "GET"), (":scheme", "https"), (":path", path),
                            (":authority", authority)] + list(headers))
        return self.wait(sid, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class H2Gw:
    """A gateway started with an HTTPS listener on `port`, its upstreams and its test CA."""

    def __init__(self, gw, port, ups, pki, cfg):
        self.gw, self.port, self.ups, self.pki, self.cfg = gw, port, ups, pki, cfg

    def __getattr__(self, name):
        return getattr(self.gw, name)

    def client(self, **kw):
        return H2Client(self.port, self.pki["ca"].cert, **kw)

    def url(self, path, host="a.test"):
        return "https://%s:%d%s" % (host, self.port, path)

    def curl(self, path, *args, host="a.test"):
        cmd = ["curl", "-s", "--http2", "--cacert", self.pki["ca"].cert,
               "--resolve", "%s:%d:127.0.0.1" % (host, self.port), "-D", "-", *args,
               self.url(path, host)]
        out = subprocess.run(cmd, capture_output=True, timeout=60)
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
        return lines[0], hdrs, body

    def started(self):
        return sum(len(u.started) for u in self.ups.values())

    def completed(self):
        return sum(len(u.requests) for u in self.ups.values())


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) \
        + payload


HEADERS, CONTINUATION, RST_STREAM, PING, SETTINGS, DATA = 0x1, 0x9, 0x3, 0x6, 0x4, 0x0
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
