"""Regressions found in the project's own testing, each pinned by a deterministic case."""
import hashlib
import time

from helpers import build_request, chunked, header, pattern_bytes


def test_chunked_request_whose_head_arrives_alone(retro):
    """A chunked request head that arrived before any body byte was taken for a request
    without a body: the upstream got the head, never the body, and the client a 504."""
    body = pattern_bytes(50000, seed=5)
    head = build_request("POST", "/echo", "plain.test", [("Transfer-Encoding", "chunked")], b"")
    c = retro.raw(timeout=10)
    try:
        c.send(head)
        time.sleep(0.3)  # the gateway sees the head on its own
        c.send(chunked(body, 4096))
        r = c.read_response()
    finally:
        c.close()
    assert r.status == 200, r
    rec = retro.ups["plain"].requests[-1]
    assert rec["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert header(rec["headers"], "transfer-encoding") == "chunked"


def test_content_length_request_whose_head_arrives_alone(retro):
    body = pattern_bytes(30000, seed=6)
    head = build_request("POST", "/echo", "plain.test", [("Content-Length", str(len(body)))], b"")
    c = retro.raw(timeout=10)
    try:
        c.send(head)
        time.sleep(0.3)
        c.send(body)
        r = c.read_response()
    finally:
        c.close()
    assert r.status == 200, r
    assert retro.ups["plain"].requests[-1]["body_sha256"] == hashlib.sha256(body).hexdigest()
