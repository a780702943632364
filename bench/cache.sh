#!/bin/bash
# make bench-cache: response cache figures (not tests), in one run:
#   1. hit path (B: gateway + llm_cache, entry warm) against plain nginx
#      proxy_pass (A) on the same mock, alternating A/B, wrk, JSON and SSE;
#   2. a replay trace with known repetition: hit rate against its maximum;
#   3. entries per MB of zone and memory per entry, measured by filling a
#      1 MB zone and counting the entries still there.
set -euo pipefail

root=$1 nginx=$2
. "$root/bench/lib.sh"
# BENCH_PORT_BASE: 4 ports from it (default 18094); BENCH_MODULE: the .so
bench_init cache "$root" "$nginx"
port=${BENCH_PORT_BASE:-18094}
dir=$BENCH_DIR
mock_port=$port plain_port=$((port + 1)) llm_port=$((port + 2))
small_port=$((port + 3))
rounds=${BENCH_ROUNDS:-3} secs=${BENCH_SECONDS:-5} conns=${BENCH_CONNS:-32}

mock_start --listen "127.0.0.1:$mock_port,name=bench" \
    --ttft-ms 0 --itl-ms 0 --tokens 16

nginx_conf "$dir" 1 <<EOC
    upstream mock { server 127.0.0.1:$mock_port; keepalive 64; }
    llm_cache_zone bench:64m;
    llm_cache_zone small:1m;
    server {
        listen 127.0.0.1:$plain_port;
        location /v1/ {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:$llm_port;
        location /v1/ {
            llm_gateway on;
            llm_cache bench;
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$small_port;
        location /v1/ {
            llm_gateway on;
            llm_cache small;
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOC
nginx_start "$dir" "$plain_port" "$llm_port" "$small_port"

printf '%s' '{"model":"mock","temperature":0,"max_tokens":16,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/small.json"
printf '%s' '{"model":"mock","temperature":0,"stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/stream.json"

# warm the entries (the key is the bearer token of post.lua)
for body in small stream; do
    curl -s -o /dev/null -H "Content-Type: application/json" \
        -H "Authorization: Bearer sk-bench" --data-binary "@$dir/$body.json" \
        "http://127.0.0.1:$llm_port/v1/chat/completions"
done
status=$(curl -s -o /dev/null -D - -H "Content-Type: application/json" \
    -H "Authorization: Bearer sk-bench" --data-binary "@$dir/small.json" \
    "http://127.0.0.1:$llm_port/v1/chat/completions" \
    | awk -F': ' 'tolower($1) == "x-cache-status" {print $2}' | tr -d '\r')
[ "$status" = HIT ] || bench_die "the warm entry does not hit"

echo "bench-cache: plain proxy_pass to the mock (A) vs a cache hit (B)," \
     "$rounds rounds x ${secs}s alternating, $conns connections, 1 worker"
for kind in small stream; do
    AB_LABEL=$(printf '%-6s' "$kind") ab_rounds "$rounds" \
        "A=wrk_post $plain_port $dir/$kind.json $secs $conns | cut -d' ' -f1" \
        "B=wrk_post $llm_port $dir/$kind.json $secs $conns | cut -d' ' -f1"
    awk -v k="$kind" -v a="${AB_MEAN[A]}" -v b="${AB_MEAN[B]}" 'BEGIN {
        printf "  %-6s mean:    A %9.0f req/s  B %9.0f req/s  B/A %.2fx\n",
               k, a, b, b / a }'
done

# 2. and 3. with keepalive connections from python3

python3 - "$llm_port" "$small_port" <<'EOPY'
import http.client, json, random, sys

llm_port, small_port = int(sys.argv[1]), int(sys.argv[2])

def ask(conn, prompt, extra=None):
    body = json.dumps({"model": "mock", "temperature": 0, "max_tokens": 16,
                       "messages": [{"role": "user", "content": prompt}]})
    headers = {"Content-Type": "application/json",
               "Authorization": "Bearer sk-trace"}
    headers.update(extra or {})
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
    return r.getheader("X-Cache-Status")

# a trace of 2000 requests over 200 distinct prompts (Zipf-like weights,
# fixed seed): every prompt misses once at most, the rest can hit
rng = random.Random(4)
prompts = ["trace prompt %d" % i for i in range(200)]
weights = [1.0 / (i + 1) for i in range(200)]
trace = rng.choices(prompts, weights, k=2000)
conn = http.client.HTTPConnection("127.0.0.1", llm_port)
hits = sum(ask(conn, p) == "HIT" for p in trace)
distinct = len(set(trace))
best = len(trace) - distinct
print("bench-cache: replay trace of %d requests, %d distinct: %d hits, "
      "hit rate %.4f, theoretical maximum %.4f"
      % (len(trace), distinct, hits, hits / len(trace), best / len(trace)))

# fill the 1 MB zone with distinct answers, then count, newest first and
# without storing, how many are still there
conn = http.client.HTTPConnection("127.0.0.1", small_port)
n = 6000
for i in range(n):
    ask(conn, "fill %d" % i)
kept = 0
for i in reversed(range(n)):
    if ask(conn, "fill %d" % i, {"Cache-Control": "no-store"}) != "HIT":
        break
    kept += 1
print("bench-cache: a 1 MB zone holds %d entries of a 16-token chat answer "
      "(%d bytes each in the zone, slab and tree included)"
      % (kept, (1 << 20) // kept))
EOPY
