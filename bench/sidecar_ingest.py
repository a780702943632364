#!/usr/bin/env python3
"""CPU of the sidecar per usage record, as the module sends them.

usage: sidecar_ingest.py SIDECAR_BINARY PRICES_JSON [BATCHES [BATCH]]

Starts the sidecar on a private unix socket and data directory, posts
BATCHES (default 400) batches of BATCH (default 500) records shaped like
the module's (one connection, keep-alive, one batch in flight, as
llm_sidecar does), and prints the sidecar's utime + stime per record
(all its threads, from /proc). Figures, not tests.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def batch_body(b, n):
    recs = []
    for i in range(n):
        recs.append(
            '{"request_id":"3f1c9a2b7d4e5f60-%08x%08x","key_hash":'
            '"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd6",'
            '"team":"bench","model":"gpt-4o-mini","served_model":'
            '"gpt-4o-mini","upstream":"mock_llm","prompt_tokens":27,'
            '"cached_tokens":0,"cache_write_tokens":0,"completion_tokens":16,'
            '"reasoning_tokens":0,"usage_source":"upstream","status":200,'
            '"ttft_ms":0,"duration_ms":1,"cache_status":"MISS",'
            '"tier":"primary"}' % (b, i))
    return ('{"records":[' + ",".join(recs) + "]}").encode()


def main():
    binary, prices = sys.argv[1], os.path.abspath(sys.argv[2])
    batches = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 500
    tmp = tempfile.mkdtemp(prefix="llm-ingest-bench.")
    sock = os.path.join(tmp, "s.sock")
    cfg = {"listen": {"unix": sock}, "threads": 1,
           "data_dir": os.path.join(tmp, "data"), "log_level": "warn",
           "admin_token": "bench-admin-token-0123456789abcdef",
           "price_table": prices,
           "models": [{"name": "gpt-4o-mini", "upstream": "mock_llm",
                       "tier": 1}],
           "classes": [{"name": "any", "min_tier": 1}],
           "teams": {"*": {"allow": ["*"]}}}
    with open(os.path.join(tmp, "c.json"), "w") as f:
        json.dump(cfg, f)
    bodies = [batch_body(b, size) for b in range(batches)]
    p = subprocess.Popen([binary, "--config", os.path.join(tmp, "c.json")])
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        f = s.makefile("rb")

        def post(body):
            s.sendall(b"POST /v1/usage HTTP/1.1\r\nHost: sidecar\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status = f.readline()
            length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            answer = f.read(length)
            if b" 200 " not in status or b'"accepted":%d' % size not in answer:
                sys.exit("bad answer: %r %r" % (status, answer))

        post(batch_body(999999, size))  # warm up
        t0, c0 = time.time(), ticks(p.pid)
        for body in bodies:
            post(body)
        c1, t1 = ticks(p.pid), time.time()
        hz = os.sysconf("SC_CLK_TCK")
        n = batches * size
        print("%d records in %d batches of %d: sidecar CPU %.2f us/record, "
              "%.0f records/s" % (n, batches, size,
                                  (c1 - c0) * 1e6 / hz / n, n / (t1 - t0)))
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(tmp)


main()
