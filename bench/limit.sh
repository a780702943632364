#!/bin/bash
# make bench-limit: rate limiting figures (not tests), in one run:
#   a. admitted rate at >= 10x overload against the configured rpm, one
#      key, 2 workers, after the initial burst (a full bucket holds one
#      minute's worth) has drained;
#   b. the same with two nginx instances sharing one global limit through
#      one redis-server;
#   c. throughput of the gateway with a limit that admits everything (B)
#      against the same gateway without it (A), alternating A/B with wrk;
#   d. keys per MB: distinct keys fill a 1 MB zone, then the keys still
#      there are counted.
# The upstream is the mock LLM server with zero delays.
set -euo pipefail

root=$1 nginx=$2
. "$root/bench/lib.sh"

# BENCH_PORT_BASE: 8 ports from it (default 18950); BENCH_REDIS_PORT
# (default 18979); BENCH_MODULE: the .so; BENCH_DIR: configs and logs
port=${BENCH_PORT_BASE:-18950}
redis_port=${BENCH_REDIS_PORT:-18979}

# BENCH_SECONDS: measurement window of a. and b. (default 60);
# BENCH_AB_SECONDS x BENCH_ROUNDS: c.; BENCH_RPM: a.'s limit (default:
# calibrated so that wrk offers at least 10x); BENCH_CONNS: wrk connections
secs=${BENCH_SECONDS:-60}
ab_secs=${BENCH_AB_SECONDS:-5} rounds=${BENCH_ROUNDS:-4}
conns=${BENCH_CONNS:-64}

mock_port=$port a_port=$((port + 1)) b_port=$((port + 2))
acc_port=$((port + 3)) probe_port=$((port + 4)) keys_port=$((port + 5))
node1_port=$((port + 6)) node2_port=$((port + 7))

for bin in wrk curl python3 redis-server; do
    command -v "$bin" > /dev/null \
        || { echo "bench-limit: $bin is missing (make deps-bench)" >&2; exit 1; }
done

bench_init limit "$root" "$nginx"
dir=$BENCH_DIR
rm -rf "${dir:?}"/*
redis_pid=
bench_on_exit '[ -z "$redis_pid" ] || kill "$redis_pid" 2>/dev/null'

# start_nginx NAME HTTP PORT...: runs $dir/NAME/conf/nginx.conf, 2
# workers, HTTP in its http{}, and waits for its PORTs
start_nginx() {
    local name=$1 http=$2
    shift 2
    {
        echo "    upstream mock { server 127.0.0.1:$mock_port; keepalive 64; }"
        echo "$http"
    } | nginx_conf "$dir/$name" 2
    nginx_start "$dir/$name" "$@"
}

# a server{} on PORT whose /v1/ location holds the gateway and the
# directives given
server() {
    cat <<EOC
    server {
        listen 127.0.0.1:$1 reuseport;
        location /v1/ {
            llm_gateway on;
            $2
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            llm_limit_log_level info;
        }
        location = /status {
            stub_status;
        }
    }
EOC
}

# the requests the mock has answered (the admitted ones)
admitted() {
    curl -s -m 5 "http://127.0.0.1:$mock_port/stats" \
        | grep -o '"requests_total":[0-9]*' | cut -d: -f2
}

# wrk_run PORT SECONDS: prints "req/s p99_ms requests non2xx" (429s
# expected: not reported)
wrk_run() {
    WRK_QUIET=1 wrk_post "$1" "$dir/chat.json" "$2" "$conns" 2
}

# the requests an nginx has received (stub_status), from its PORTs
received() {
    local p n=0
    for p in "$@"; do
        n=$((n + $(curl -s -m 5 "http://127.0.0.1:$p/status" \
                   | awk 'NR == 3 {print $3}')))
    done
    echo "$n"
}

# overload WINDOW RPM LABEL PORT...: wrk on every PORT (the connections
# shared out); once the initial burst has drained (the admitted rate over
# one second is below 1.2 x the limit; at most 40 s), the admitted
# (mock) and offered (nginx) requests are counted over WINDOW seconds
overload() {
    local window=$1 rpm=$2 label=$3 c0 c1 o0 o1 t0 t1 prev now p i
    local wpids=()
    shift 3
    for p in "$@"; do
        WRK_BODY=$dir/chat.json wrk -t2 -c"$((conns / $#))" \
            -d"$((window + 60))s" -s "$root/bench/post.lua" \
            "http://127.0.0.1:$p/v1/chat/completions" > /dev/null &
        wpids+=($!)
    done
    prev=$(admitted) t0=$(date +%s%N)
    for i in $(seq 40); do
        sleep 1
        now=$(admitted) t1=$(date +%s%N)
        # per minute over the last second, against 1.2 x rpm
        [ "$i" -gt 1 ] \
            && [ $(( (now - prev) * 600000000000 / (t1 - t0) )) -le $((rpm * 12)) ] \
            && break
        prev=$now t0=$t1
    done
    o0=$(received "$@") c0=$(admitted) t0=$(date +%s.%N)
    sleep "$window"
    o1=$(received "$@") c1=$(admitted) t1=$(date +%s.%N)
    kill "${wpids[@]}" 2>/dev/null || true
    wait "${wpids[@]}" 2>/dev/null || true
    awk -v c0="$c0" -v c1="$c1" -v o0="$o0" -v o1="$o1" -v t0="$t0" \
        -v t1="$t1" -v rpm="$rpm" -v label="$label" -v warm="$i" 'BEGIN {
        t = t1 - t0; got = (c1 - c0) / t * 60; off = (o1 - o0) / t * 60;
        printf "  %s: configured %d/min, offered %.0f/min (%.1fx),"        \
               " admitted %d in %.2f s = %.0f/min, error %+.2f %%"         \
               " (burst drained in %d s)\n",
               label, rpm, off, off / rpm, c1 - c0, t, got,
               (got - rpm) / rpm * 100, warm;
        if (off < 10 * rpm)
            print "  (offered below 10x the limit: set a lower BENCH_RPM)" }'
}

printf '%s' '{"model":"mock","max_tokens":16,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' \
    > "$dir/chat.json"

mock_start --listen "127.0.0.1:$mock_port,name=bench" \
    --ttft-ms 0 --itl-ms 0 --tokens 16

# calibration: how fast are requests answered when nearly all are rejected

start_nginx probe "$(
    echo "    llm_limit_zone probe:1m;"
    server "$probe_port" "llm_limit zone=probe key=\$http_authorization rpm=1;"
)" "$probe_port"

read -r probe_rps _ < <(wrk_run "$probe_port" 3)
nginx_stop "$dir/probe"

# admitted requests cost more than rejected ones: aim at 16x
rpm=${BENCH_RPM:-$(awk -v r="$probe_rps" 'BEGIN {
    x = r * 60 / 16; m = 10 ^ int(log(x) / log(10)); print int(x / m) * m }')}

echo "bench-limit: mock with zero delays, 2 workers per nginx, wrk -t2" \
     "-c$conns, one key; the rejection path answers $probe_rps req/s"

# a. accuracy on one node; the full bucket (rpm) drains at (offered - rate)

start_nginx acc "$(
    echo "    llm_limit_zone acc:1m;"
    server "$acc_port" "llm_limit zone=acc key=\$http_authorization rpm=$rpm;"
)" "$acc_port"

echo "a. admitted rate at overload, one node, ${secs} s window after the" \
     "burst drained:"
overload "$secs" "$rpm" "one node" "$acc_port"
nginx_stop "$dir/acc"

# b. two nodes, one redis-server, one global limit, half the load each

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --dir "$dir" --loglevel warning \
    > "$dir/redis.log" 2>&1 &
redis_pid=$!
wait_port "$redis_port"

for n in 1 2; do
    p=$((node1_port + n - 1))
    start_nginx "node$n" "$(
        echo "    llm_limit_zone glob:1m sync=redis://127.0.0.1:$redis_port" \
             "sync_interval=100ms;"
        server "$p" "llm_limit zone=glob key=\$http_authorization rpm=$rpm;"
    )" "$p"
done

echo "b. admitted rate at overload, two nodes sharing one limit through" \
     "redis (sync_interval=100ms):"
overload "$secs" "$rpm" "two nodes" "$node1_port" "$node2_port"
grep -h 'llm ' "$dir"/node*/logs/error.log | grep -v '\[notice\]' | head -5 \
    || true

# c. throughput cost: A without a limit, B with one that admits everything
#    (one key: every request takes the same node lock twice)

start_nginx ab "$(
    echo "    llm_limit_zone ab:1m;"
    server "$a_port" ""
    server "$b_port" "llm_limit zone=ab key=\$http_authorization rpm=4000000000 tpm=4000000000;"
)" "$a_port" "$b_port"

echo "c. throughput, gateway without (A) and with (B) llm_limit rpm= tpm=," \
     "$rounds rounds x ${ab_secs} s alternating:"
# wrk_post warns of non-2xx answers itself
ab_rounds "$rounds" \
    "A=wrk_post $a_port $dir/chat.json $ab_secs $conns 2 | cut -d' ' -f1" \
    "B=wrk_post $b_port $dir/chat.json $ab_secs $conns 2 | cut -d' ' -f1"
awk -v a="${AB_MEAN[A]}" -v b="${AB_MEAN[B]}" 'BEGIN {
    printf "  mean:    A %9.0f req/s  B %9.0f req/s  cost %.1f %%\n",
           a, b, (a - b) / a * 100 }'

# d. keys per MB: rpm=1 keeps every key's bucket busy (never idle), so
#    keys leave a full zone only by eviction of the oldest. Newest first,
#    the keys still there answer 429; the first that passes was evicted.

start_nginx keys "$(
    echo "    llm_limit_zone keys:1m;"
    server "$keys_port" "llm_limit zone=keys key=\$http_x_key rpm=1;"
)" "$keys_port"

python3 - "$keys_port" "$dir/chat.json" <<'EOPY'
import http.client, sys

port, body = int(sys.argv[1]), open(sys.argv[2], "rb").read()
conn = http.client.HTTPConnection("127.0.0.1", port)

def ask(i):
    global conn
    for _ in range(2):
        try:
            conn.request("POST", "/v1/chat/completions", body,
                         {"Content-Type": "application/json",
                          "X-Key": "key-%d" % i})
            r = conn.getresponse()
            r.read()
            return r.status
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port)
    raise SystemExit("bench-limit: the keys server does not answer")

n = 12000
for i in range(n):
    assert ask(i) == 200, i
kept = 0
for i in reversed(range(n)):
    if ask(i) != 429:
        break
    kept += 1
assert kept < n, "the 1 MB zone did not fill: raise n"
print("d. a 1 MB llm_limit_zone holds %d keys before eviction starts "
      "(%d bytes per key, slab and tree included); %.2fM keys in 128 MB"
      % (kept, (1 << 20) // kept, kept * 128 / 1e6))
EOPY
