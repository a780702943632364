#!/usr/bin/env python3
"""Integration tests for llm-sidecar: start the real binary, talk to it over
its unix socket with curl (and a unix-socket HTTP client for bulk traffic).

usage: run.py --binary PATH --source DIR TEST
TEST: config api durability reload admin webhook redis
Ports: 18300-18399 (TCP), Redis on 18379. Only PIDs started here are
signalled.
"""
import argparse
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ADMIN = "integration-admin-token-0123456789"
ARGS = None


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for " + what)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.sock_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.sock_path)
        self.sock = s


def base_config(tmp, **over):
    cfg = {
        "listen": {"unix": os.path.join(tmp, "sidecar.sock"),
                   "unix_mode": "0600"},
        "threads": 2,
        "data_dir": os.path.join(tmp, "data"),
        "admin_token": ADMIN,
        "log_level": "info",
        "price_table": os.path.join(ARGS.source, "..", "conf",
                                    "prices.json"),
        "models": [
            {"name": "gpt-4.1-nano", "upstream": "openai_pool", "tier": 1},
            {"name": "gpt-4o-mini", "upstream": "openai_pool", "tier": 1},
            {"name": "gpt-4o", "upstream": "openai_pool", "tier": 3},
            {"name": "gpt-4.1", "upstream": "openai_pool", "tier": 3},
            {"name": "claude-sonnet-4-5", "upstream": "anthropic_pool",
             "tier": 3},
        ],
        "classes": [
            {"name": "small", "min_tier": 1, "max_prompt_tokens": 4000,
             "complexity": ["low", "medium"], "tools": False},
            {"name": "large", "min_tier": 3},
        ],
        "aliases": {"auto": {}, "fast": {"class": "small"},
                    "smart": {"class": "large"}},
        "teams": {"*": {"allow": ["*"]},
                  "interns": {"allow": ["gpt-4.1-nano", "gpt-4o-mini"]}},
        "ledger": {"snapshot_every_records": 1000,
                   "snapshot_interval_s": 2},
        "alerts": {"check_interval_ms": 50},
    }
    cfg.update(over)
    return cfg


class Sidecar:
    def __init__(self, tmp, cfg, name="sidecar"):
        self.tmp = tmp
        self.cfg = cfg
        self.name = name
        self.conf_path = os.path.join(tmp, name + ".json")
        self.log_path = os.path.join(tmp, name + ".log")
        self.sock = cfg["listen"]["unix"]
        self.proc = None
        self.write_config(cfg)

    def write_config(self, cfg):
        self.cfg = cfg
        with open(self.conf_path, "w") as f:
            json.dump(cfg, f, indent=1)

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([ARGS.binary, "--config",
                                      self.conf_path],
                                     stdout=self.log, stderr=self.log)

        def ready():
            if self.proc.poll() is not None:
                fail(self.name + " exited early:\n" + self.read_log())
            try:
                return self.get("/health")[0] == 200
            except OSError:
                return False
        wait_for(ready, 10, self.name + " to become ready")
        return self

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                fail(self.name + " did not stop on " + str(sig))
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def curl(self, method, path, body=None, token=None):
        cmd = ["curl", "-sS", "--max-time", "10", "--unix-socket", self.sock,
               "-X", method, "-w", "\n%{http_code}"]
        if token:
            cmd += ["-H", "Authorization: Bearer " + token]
        if body is not None:
            body_path = os.path.join(self.tmp, self.name + ".body")
            with open(body_path, "w") as f:
                f.write(body if isinstance(body, str) else json.dumps(body))
            cmd += ["-H", "Content-Type: application/json", "--data-binary",
                    "@" + body_path]
        cmd.append("http://localhost" + path)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        if out.returncode != 0:
            raise OSError("curl failed: " + out.stderr)
        text, _, code = out.stdout.rpartition("\n")
        return int(code), text

    def get(self, path, token=None):
        return self.curl("GET", path, token=token)

    def json(self, method, path, body=None, token=None, status=200):
        code, text = self.curl(method, path, body, token)
        check(code == status, "%s %s: want %d, got %d: %s" %
              (method, path, status, code, text))
        return json.loads(text) if text else None

    def spend(self, q=""):
        return self.json("GET", "/v1/spend" + q)


def record(i, cost_tokens=1000, team="t1", key="k1", model="gpt-4o-mini",
           prefix="r"):
    return {"request_id": "%s%d" % (prefix, i), "key_hash": key,
            "team": team, "model": "auto", "served_model": model,
            "upstream": "openai_pool", "prompt_tokens": cost_tokens,
            "cached_tokens": 0, "completion_tokens": 10, "status": 200,
            "ttft_ms": 120, "duration_ms": 900, "usage_source": "upstream",
            "tier": "fallback",  # the module's field the ledger ignores
            "ts": "2026-11-22T10:00:00.123Z"}


def mini_cost(prompt, completion):
    # gpt-4o-mini: 150000 / 600000 micro-USD per 1M tokens, rounded half up
    return (prompt * 150000 + completion * 600000 + 500000) // 1000000


# ---------------------------------------------------------------- tests

def test_config(tmp):
    def run_check(cfg_text, name="c.json"):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(cfg_text)
        p = subprocess.run([ARGS.binary, "--check", "--config", path],
                           capture_output=True, text=True, timeout=10)
        return p.returncode, p.stdout + p.stderr

    good = base_config(tmp)
    rc, out = run_check(json.dumps(good))
    check(rc == 0, "good config rejected: " + out)

    bad = base_config(tmp)
    bad["models"][2] = {"name": "custom", "upstream": "x",
                        "input_per_mtok": -1, "output_per_mtok": 1,
                        "cache_read_per_mtok": 0, "cache_write_per_mtok": 0,
                        "context_window": 1000}
    rc, out = run_check(json.dumps(bad))
    check(rc == 1, "negative price accepted")
    check("config: models[2].input_per_mtok: must be a non-negative integer"
          in out, "error does not name the field: " + out)

    cases = [
        (dict(base_config(tmp), threads=0),
         "config: threads: must be an integer in [1, 64]"),
        (dict(base_config(tmp), admin_token="short"),
         "config: admin_token: must be at least 16 characters"),
        (dict(base_config(tmp), listn={}), "config: listn: unknown field"),
        (dict(base_config(tmp), aliases={"x": {"model": "nope"}}),
         "config: aliases.x: names an unknown model or class"),
        (dict(base_config(tmp), routing={"budget_downgrade_share": 2}),
         "config: routing.budget_downgrade_share: must be a number in [0, 1]"),
        (dict(base_config(tmp), alerts={"webhook_url": "ftp://x"}),
         "config: alerts.webhook_url: must be an http(s) URL"),
    ]
    for cfg, want in cases:
        rc, out = run_check(json.dumps(cfg))
        check(rc == 1 and want in out, "want %r, got rc=%d %r" %
              (want, rc, out))
    rc, out = run_check("{\"listen\": ")
    check(rc == 1 and "config: invalid JSON" in out, out)

    prices = os.path.join(tmp, "prices.json")
    with open(prices, "w") as f:
        json.dump({"models": [{"name": "m", "provider": "openai",
                               "input_per_mtok": 1, "output_per_mtok": 1,
                               "cache_read_per_mtok": 1,
                               "cache_write_per_mtok": 1,
                               "context_window": 10, "date": "2025-01-01"}]},
                  f)
    rc, out = run_check(json.dumps(dict(base_config(tmp),
                                        price_table=prices)))
    check(rc == 1 and "models[0].source: required" in out, out)

    # The shipped example config and price table are valid.
    p = subprocess.run([ARGS.binary, "--check", "--config",
                        os.path.join(ARGS.source, "..", "conf", "sidecar",
                                     "sidecar.json")],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode == 0, "conf/sidecar/sidecar.json: " + p.stderr)


def test_api(tmp):
    cfg = base_config(tmp)
    cfg["listen"]["tcp"] = "127.0.0.1:18301"
    sc = Sidecar(tmp, cfg).start()
    try:
        mode = os.stat(sc.sock).st_mode & 0o777
        check(mode == 0o600, "socket mode %o" % mode)
        d = sc.json("POST", "/v1/route", {
            "key_hash": "ab12cd34", "team": "t1", "model": "auto",
            "prompt_tokens": 1234, "max_tokens": 256, "stream": True,
            "features": {"tools": False}, "prefix_hash": "ff00",
            "messages": 3, "api": "openai"})
        check(d["action"] == "allow" and d["model"] == "gpt-4.1-nano" and
              d["class"] == "small" and d["upstream"] == "openai_pool", d)
        check(d["prompt_cache"]["prompt_cache_key"].startswith("pck_"), d)
        check(d["fallbacks"][0]["model"] == "gpt-4o-mini", d)

        d = sc.json("POST", "/v1/route", {
            "team": "t1", "model": "smart", "prompt_tokens": 6000,
            "api": "anthropic", "messages": 5,
            "prompt_shape": {"system_blocks": 1, "system_tokens": 3000,
                             "tools_count": 2, "tools_tokens": 1500,
                             "last_user_index": 4, "last_user_blocks": 2}})
        check(d["model"] == "claude-sonnet-4-5", d)
        check(d["prompt_cache"]["breakpoints"] ==
              ["/system/0", "/messages/4/content/1", "/tools/1"], d)

        d = sc.json("POST", "/v1/route", {"team": "interns",
                                          "model": "gpt-4o",
                                          "prompt_tokens": 10})
        check(d["action"] == "deny" and d["code"] == "model_not_allowed", d)
        d = sc.json("POST", "/v1/route", {"team": "t1", "model": "gpt-4o",
                                          "prompt_tokens": 500000,
                                          "max_tokens": 1000})
        check(d["action"] == "allow" and d["model"] == "gpt-4.1" and
              "context_fallback" in d["reason"], d)
        d = sc.json("POST", "/v1/route", {"team": "t1", "model": "gpt-4o",
                                          "prompt_tokens": 2000000})
        check(d["action"] == "deny" and
              d["code"] == "context_length_exceeded", d)
        code, text = sc.curl("POST", "/v1/route", {"model": "auto"})
        check(code == 400 and "prompt_tokens: required" in text, text)
        code, text = sc.curl("POST", "/v1/route", "{nope")
        check(code == 400 and "invalid JSON" in text, text)

        batch = {"records": [record(i) for i in range(5)]}
        r = sc.json("POST", "/v1/usage", batch)
        check(r == {"accepted": 5, "duplicates": 0, "rejected": 0}, r)
        batch["records"].append(record(5, team="t2", key="k2",
                                       model="gpt-4o"))
        batch["records"].append({"request_id": "bad", "model": "m",
                                 "prompt_tokens": "many"})
        r = sc.json("POST", "/v1/usage", batch)
        check(r["accepted"] == 1 and r["duplicates"] == 5 and
              r["rejected"] == 1 and
              "records[6].prompt_tokens" in r["errors"][0], r)

        s = sc.spend("?group_by=team")
        teams = {row["team"]: row for row in s["rows"]}
        check(teams["t1"]["requests"] == 5 and
              teams["t1"]["cost_usd_micros"] == 5 * mini_cost(1000, 10), s)
        check(teams["t2"]["cost_usd_micros"] ==
              (1000 * 2500000 + 10 * 10000000 + 500000) // 1000000, s)
        s = sc.spend("?group_by=model&team=t1")
        check([r["model"] for r in s["rows"]] == ["gpt-4o-mini"], s)
        s = sc.spend("?group_by=day&from=2026-11-23")
        check(s["rows"] == [], s)
        s = sc.spend("?group_by=key&from=2026-11-22T00:00:00Z"
                     "&to=2026-11-22T23:59:59Z")
        check(len(s["rows"]) == 2 and s["total"]["requests"] == 6, s)
        code, csv = sc.get("/v1/spend?group_by=team&format=csv")
        lines = csv.strip().split("\n")
        check(code == 200 and lines[0].startswith("team,requests") and
              lines[1].startswith("t1,5,0,5000,"), csv)
        code, _ = sc.get("/v1/spend?group_by=planet")
        check(code == 400, "bad group_by accepted")

        code, text = sc.get("/health")
        check(code == 200 and '"embedded"' in text, text)
        code, metrics = sc.get("/metrics")
        check(code == 200 and
              'llm_sidecar_route_decisions_total{outcome="allow"} 3'
              in metrics and
              'llm_sidecar_usage_records_total{result="duplicate"} 5'
              in metrics, metrics)
        if shutil.which("promtool"):
            p = subprocess.run(["promtool", "check", "metrics"],
                               input=metrics, capture_output=True,
                               text=True)
            check(p.returncode == 0, "promtool: " + p.stdout + p.stderr)
        # The one-pass record parser reuses its records' strings from
        # batch to batch, and hands anything unusual (null, a float, a
        # repeated member, a range error) to the exact path.
        long_team = "team-with-a-name-longer-than-sso-0123456789"
        r = sc.json("POST", "/v1/usage", {"records": [
            record(200, team=long_team, key="k-long-key-hash-0123456789")]})
        check(r["accepted"] == 1, r)
        r = sc.json("POST", "/v1/usage", {"records": [
            record(201, team="s", key="k"),
            dict(record(202, team="s", key="k"), cache_status=None,
                 prompt_tokens=1000.0),
            dict(record(203, team="s", key="k"), status=1000)]})
        check(r["accepted"] == 2 and r["rejected"] == 1 and
              "records[2].status" in r["errors"][0], r)
        code, text = sc.curl("POST", "/v1/usage",
                             '{"records":[{"request_id":"r204","model":"m",'
                             '"team":"s","team":"x"}]}')
        check(code == 200 and '"accepted":1' in text, text)
        s = sc.spend("?group_by=team")
        teams = {row["team"]: row for row in s["rows"]}
        check(teams[long_team]["requests"] == 1 and
              teams["s"]["requests"] == 3 and "x" not in teams and
              teams["s"]["prompt_tokens"] == 2000, s)
        s = sc.spend("?group_by=key")
        keys = {row["key"]: row for row in s["rows"]}
        check(keys["k-long-key-hash-0123456789"]["requests"] == 1 and
              keys["k"]["requests"] == 2, s)

        code, _ = sc.get("/nowhere")
        check(code == 404, "404 expected")
        code, _ = sc.curl("DELETE", "/v1/route")
        check(code == 405, "405 expected")

        # Loopback TCP serves the same API; keep-alive reuses connections.
        c = http.client.HTTPConnection("127.0.0.1", 18301, timeout=5)
        for _ in range(3):
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            check(r.status == 200, "tcp health")
        c.close()
    finally:
        sc.stop()


def test_durability(tmp):
    sc = Sidecar(tmp, base_config(tmp)).start()
    acked = set()
    sent = []
    lock = threading.Lock()
    stop = threading.Event()

    # recent timestamps: the replay forgets ids older than the dedup
    # window (24 h), and the redelivery below must find every id again
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def writer(wid):
        n = 0
        while not stop.is_set():
            recs = [dict(record(n * 100 + i, prefix="w%d-" % wid), ts=ts)
                    for i in range(100)]
            with lock:
                sent.extend(recs)
            n += 1
            try:
                c = UnixHTTP(sc.sock, timeout=5)
                c.request("POST", "/v1/usage", json.dumps({"records": recs}))
                r = c.getresponse()
                body = r.read()
                c.close()
            except OSError:
                return  # the sidecar died under us: not acknowledged
            if r.status == 200:
                j = json.loads(body)
                check(j["accepted"] + j["duplicates"] == len(recs), j)
                with lock:
                    acked.update(x["request_id"] for x in recs)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 20000, 60,
             "20000 acknowledged records")
    sc.proc.send_signal(signal.SIGKILL)
    sc.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    sc.log.close()
    sc.proc = None
    n_acked = len(acked)

    sc.start()
    total = sc.spend()["total"]
    print("durability: sent %d, acknowledged %d, recovered %d" %
          (len(sent), n_acked, total["requests"]))
    check(total["requests"] >= n_acked,
          "lost acknowledged records: %d < %d" % (total["requests"], n_acked))
    check(total["requests"] <= len(sent), "more records than sent")
    # Redeliver everything (as the module's spool would): exact totals.
    for i in range(0, len(sent), 500):
        sc.json("POST", "/v1/usage", {"records": sent[i:i + 500]})
    total = sc.spend()["total"]
    check(total["requests"] == len(sent),
          "after redelivery %d != %d" % (total["requests"], len(sent)))
    check(total["cost_usd_micros"] == len(sent) * mini_cost(1000, 10),
          total)
    # A graceful stop + restart keeps the totals (snapshot path).
    check(sc.stop() == 0, "graceful stop failed")
    sc.start()
    check(sc.spend()["total"] == total, "totals changed across restart")
    sc.stop()
    files = os.listdir(os.path.join(tmp, "data"))
    check("snapshot" in files, "no snapshot written: %s" % files)


def test_reload(tmp):
    cfg = base_config(tmp)
    sc = Sidecar(tmp, cfg).start()
    try:
        q = {"team": "t1", "model": "gpt-4o", "prompt_tokens": 100}
        check(sc.json("POST", "/v1/route", q)["action"] == "allow", "pre")
        sc.json("POST", "/v1/usage", {"records": [record(1)]})
        cfg2 = json.loads(json.dumps(cfg))
        cfg2["teams"]["t1"] = {"allow": ["gpt-4o-mini"]}
        sc.write_config(cfg2)
        sc.send(signal.SIGHUP)
        wait_for(lambda: sc.json("POST", "/v1/route", q)["action"] == "deny",
                 5, "reloaded allow-list")
        check(sc.spend()["total"]["requests"] == 1, "state lost on reload")
        with open(sc.conf_path, "w") as f:
            f.write('{"listen": {"unix": "x"}, "models": 7}')
        sc.send(signal.SIGHUP)
        wait_for(lambda: "keeping the running configuration" in
                 sc.read_log(), 5, "bad reload to be logged")
        d = sc.json("POST", "/v1/route", q)
        check(d["action"] == "deny" and d["code"] == "model_not_allowed", d)
        check(sc.proc.poll() is None, "sidecar died on a bad reload")
    finally:
        sc.stop()


def test_admin(tmp):
    sc = Sidecar(tmp, base_config(tmp)).start()
    try:
        code, _ = sc.get("/v1/budgets")
        check(code == 401, "no token: %d" % code)
        code, _ = sc.get("/v1/budgets", token="wrong-token")
        check(code == 401, "wrong token: %d" % code)
        code, _ = sc.curl("PUT", "/v1/budgets/team/t1",
                          {"limit_usd_micros": 1}, token=ADMIN + "x")
        check(code == 401, "PUT with wrong token: %d" % code)

        one = mini_cost(1000, 10)
        limit = 10 * one
        b = sc.json("PUT", "/v1/budgets/team/t1",
                    {"scope": "team", "id": "t1", "limit_usd_micros": limit,
                     "window": "day", "alert_thresholds": [50, 80, 100]},
                    token=ADMIN)
        check(b["limit_usd_micros"] == limit and b["window"] == "day" and
              b["spent_usd_micros"] == 0, b)
        code, text = sc.curl("PUT", "/v1/budgets/team/t2",
                             {"limit_usd_micros": 5, "window": "year"},
                             token=ADMIN)
        check(code == 400 and "window" in text, text)
        lst = sc.json("GET", "/v1/budgets", token=ADMIN)
        check(len(lst["budgets"]) == 1, lst)

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        recs = [dict(record(i, prefix="adm"), ts=now) for i in range(8)]
        sc.json("POST", "/v1/usage", {"records": recs})
        q = {"team": "t1", "model": "gpt-4o", "prompt_tokens": 100}
        d = sc.json("POST", "/v1/route", q)
        check(d["action"] == "allow" and d["downgraded"] and
              d["model"] == "gpt-4.1-nano" and
              "budget_downgrade" in d["reason"], d)
        recs = [dict(record(i, prefix="adm2"), ts=now) for i in range(2)]
        sc.json("POST", "/v1/usage", {"records": recs})
        d = sc.json("POST", "/v1/route", q)
        check(d["action"] == "deny" and d["code"] == "budget_exceeded", d)
        b = sc.json("GET", "/v1/budgets/team/t1", token=ADMIN)
        check(b["spent_usd_micros"] == limit and
              b["remaining_usd_micros"] == 0, b)
        # Budgets survive a restart (journaled).
        sc.stop()
        sc.start()
        d = sc.json("POST", "/v1/route", q)
        check(d["code"] == "budget_exceeded", d)
        sc.json("DELETE", "/v1/budgets/team/t1", token=ADMIN)
        sc.json("DELETE", "/v1/budgets/team/t1", token=ADMIN, status=404)
        d = sc.json("POST", "/v1/route", q)
        check(d["action"] == "allow" and d["model"] == "gpt-4o", d)
    finally:
        sc.stop()


class Receiver(http.server.BaseHTTPRequestHandler):
    posts = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(500)
            self.end_headers()
            return
        Receiver.posts.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_webhook(tmp):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 18310), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Receiver.fail_first = 1  # the first delivery fails and is retried
    cfg = base_config(tmp, alerts={
        "webhook_url": "http://127.0.0.1:18310/hook", "check_interval_ms": 50,
        "backoff_ms": 100, "max_attempts": 5, "timeout_ms": 1000})
    sc = Sidecar(tmp, cfg).start()
    try:
        one = mini_cost(1000, 10)
        sc.json("PUT", "/v1/budgets/key/k1",
                {"limit_usd_micros": 10 * one, "window": "month",
                 "alert_thresholds": [50, 80, 100]}, token=ADMIN)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sc.json("POST", "/v1/usage", {"records": [
            dict(record(i, prefix="wh"), ts=now) for i in range(6)]})
        wait_for(lambda: len(Receiver.posts) >= 1, 10, "first alert")
        sc.json("POST", "/v1/usage", {"records": [
            dict(record(i, prefix="wh2"), ts=now) for i in range(5)]})
        wait_for(lambda: len(Receiver.posts) >= 3, 10, "three alerts")
        time.sleep(0.5)
        got = sorted(p["threshold_percent"] for p in Receiver.posts)
        check(got == [50, 80, 100], "alerts: %s" % Receiver.posts)
        p = Receiver.posts[0]
        check(p["scope"] == "key" and p["id"] == "k1" and
              p["window"] == "month" and p["type"] == "budget_threshold", p)
        code, metrics = sc.get("/metrics")
        check('llm_sidecar_alerts_total{result="retried"} 1' in metrics,
              "retry not counted")
        # Once per window, also across a restart.
        sc.stop()
        sc.start()
        sc.json("POST", "/v1/usage", {"records": [
            dict(record(i, prefix="wh3"), ts=now) for i in range(3)]})
        time.sleep(1.0)
        check(len(Receiver.posts) == 3, "duplicate alerts: %s" %
              Receiver.posts)
    finally:
        sc.stop()
        srv.shutdown()


def test_redis(tmp):
    redis_bin = shutil.which("redis-server")
    if not redis_bin:
        print("SKIP: redis-server not installed")
        return
    redis = subprocess.Popen([redis_bin, "--port", "18379", "--save", "",
                              "--appendonly", "no", "--daemonize", "no",
                              "--bind", "127.0.0.1", "--dir", tmp],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    sidecars = []
    try:
        def redis_up():
            try:
                socket.create_connection(("127.0.0.1", 18379), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(redis_up, 10, "redis")
        rcfg = {"host": "127.0.0.1", "port": 18379, "timeout_ms": 200,
                "prefix": "itest:", "sync_interval_ms": 100}
        for name in ("a", "b"):
            d = os.path.join(tmp, name)
            os.mkdir(d)
            cfg = base_config(d, redis=rcfg)
            sidecars.append(Sidecar(d, cfg, name).start())
        a, b = sidecars
        code, text = a.get("/health")
        check('"redis"' in text, text)

        ra = [record(i) for i in range(50)]
        rb = [record(i) for i in range(50, 100)] + ra[:10]  # cross-dups
        check(a.json("POST", "/v1/usage", {"records": ra})["accepted"] == 50,
              "a")
        b.json("POST", "/v1/usage", {"records": rb})

        def total(sc):
            return sc.spend()["total"]
        wait_for(lambda: total(a)["requests"] == 100 and
                 total(b)["requests"] == 100, 10, "shared totals of 100")
        check(total(a)["cost_usd_micros"] == 100 * mini_cost(1000, 10),
              total(a))
        check(a.spend("?group_by=team") == b.spend("?group_by=team"),
              "sidecars disagree")

        # Budgets are shared.
        a.json("PUT", "/v1/budgets/team/t9",
               {"limit_usd_micros": 1000, "window": "day"}, token=ADMIN)
        wait_for(lambda: b.get("/v1/budgets/team/t9", token=ADMIN)[0] == 200,
                 5, "budget visible on b")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        a.json("POST", "/v1/usage", {"records": [
            dict(record(i, team="t9", prefix="b9-"), ts=now)
            for i in range(10)]})
        q = {"team": "t9", "model": "gpt-4o", "prompt_tokens": 100}
        wait_for(lambda: b.json("POST", "/v1/route", q).get("code") ==
                 "budget_exceeded", 5, "b to enforce a's spend")

        # Outage: Redis stops answering. Usage is still acknowledged
        # (journaled locally), spend reports are refused with 503, and the
        # backlog is pushed once Redis is back.
        redis.send_signal(signal.SIGSTOP)
        t0 = time.time()
        r = a.json("POST", "/v1/usage",
                   {"records": [record(i) for i in range(100, 120)]})
        check(r["accepted"] == 20 and time.time() - t0 < 2,
              "usage during outage: %s" % r)
        code, text = a.get("/v1/spend")
        check(code == 503 and "ledger_unavailable" in text,
              "spend during outage: %d %s" % (code, text))
        code, metrics = a.get("/metrics")
        check("llm_sidecar_redis_pending_records 20" in metrics or
              "llm_sidecar_redis_pending_records" in metrics, metrics)
        redis.send_signal(signal.SIGCONT)
        wait_for(lambda: a.get("/v1/spend")[0] == 200 and
                 total(b)["requests"] == 130, 15, "reconciled totals")
        # Crash of a sidecar while Redis is down loses nothing either.
        redis.send_signal(signal.SIGSTOP)
        a.json("POST", "/v1/usage",
               {"records": [record(i) for i in range(120, 130)]})
        a.stop(signal.SIGKILL)
        redis.send_signal(signal.SIGCONT)
        a.proc = None
        a.start()
        wait_for(lambda: total(b)["requests"] == 140, 15,
                 "records journaled during the outage pushed after restart")
    finally:
        for sc in sidecars:
            try:
                sc.stop()
            except Exception as e:  # keep cleaning up
                print("cleanup:", e)
        redis.send_signal(signal.SIGCONT)
        redis.terminate()
        redis.wait(10)


TESTS = {"config": test_config, "api": test_api,
         "durability": test_durability, "reload": test_reload,
         "admin": test_admin, "webhook": test_webhook, "redis": test_redis}


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("test", choices=sorted(TESTS))
    ARGS = ap.parse_args()
    ARGS.binary = os.path.abspath(ARGS.binary)
    ARGS.source = os.path.abspath(ARGS.source)
    tmp = tempfile.mkdtemp(prefix="llm-sidecar-%s." % ARGS.test)
    try:
        TESTS[ARGS.test](tmp)
    except AssertionError as e:
        print("FAIL %s: %s" % (ARGS.test, e))
        for root, _, files in os.walk(tmp):
            for f in files:
                if f.endswith(".log"):
                    print("---- " + f)
                    print(open(os.path.join(root, f)).read()[-4000:])
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS " + ARGS.test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
