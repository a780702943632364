#!/usr/bin/env bash
# bench/retry.sh ROOT NGINX: what llm_retry costs on a stream that does not
# fail (the header and the events before the first token are held and
# scanned once more): two gateways on the same mock, llm_retry off (A) and
# on (B), compared
#   1. by wrk, A/B alternating rounds (BENCH_SECONDS x BENCH_ROUNDS);
#   2. by callgrind: instructions per request of one nginx process (master
#      off) serving BENCH_CG_REQUESTS streams after a warm-up, counters
#      zeroed and dumped around them with callgrind_control.
# BENCH_PORT_BASE (default 18120): mock, A, B, then the callgrind nginx.

set -eo pipefail

root=$1
. "$root/bench/lib.sh"
bench_init retry "$root" "$2"

base=${BENCH_PORT_BASE:-18120}
mock=$base a=$((base + 1)) b=$((base + 2)) cg=$((base + 3))
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-4}
conns=${BENCH_CONNS:-16}
cgn=${BENCH_CG_REQUESTS:-200}

body=$BENCH_DIR/stream.json
printf '%s' '{"model":"m","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"bench the retry hold"}]}' \
    > "$body"

mock_start --listen "127.0.0.1:$mock,name=m" --ttft-ms 0 --itl-ms 0

# conf PORT RETRY: the inside of http{} of one gateway
conf() {
    cat <<EOC
    upstream llm {
        server 127.0.0.1:$mock;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$1;
        location /v1/ {
            llm_gateway on;
            llm_retry $2;
            proxy_next_upstream error timeout invalid_header non_idempotent;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://llm;
        }
    }
EOC
}

conf "$a" off | nginx_conf "$BENCH_DIR/a" 1
conf "$b" on | nginx_conf "$BENCH_DIR/b" 1
nginx_start "$BENCH_DIR/a" "$a"
nginx_start "$BENCH_DIR/b" "$b"

echo "retry: wrk, $conns connections, ${secs}s x $rounds rounds, streams of 16 tokens"
WRK_QUIET=1 wrk_post "$a" "$body" 1 "$conns" > /dev/null
WRK_QUIET=1 wrk_post "$b" "$body" 1 "$conns" > /dev/null
ab_rounds "$rounds" "off=wrk_post $a $body $secs $conns" \
                    "on=wrk_post $b $body $secs $conns"
awk -v x="${AB_MEAN[off]}" -v y="${AB_MEAN[on]}" \
    'BEGIN {printf "retry: mean off %.0f req/s, on %.0f req/s, on/off %.3f\n", x, y, y / x}'

nginx_stop "$BENCH_DIR/a"
nginx_stop "$BENCH_DIR/b"

# callgrind: instructions per request, one process, no master

command -v valgrind > /dev/null || bench_die "no valgrind (make deps-bench)"

# one request to the callgrind nginx; $1: its number
stream_one() {
    curl -sf -o /dev/null -H 'Content-Type: application/json' \
         --data-binary @"$body" "http://127.0.0.1:$cg/v1/chat/completions" \
        || bench_die "request $1 failed"
}

for mode in off on; do
    dir=$BENCH_DIR/cg-$mode
    conf "$cg" "$mode" | nginx_conf "$dir" 1
    callgrind_nginx "$dir" "$cg" stream_one "$cgn"
    ir=$CG_IR
    own=$(callgrind_sum "$CG_DUMP" no ngx_http_llm_retry_)
    declare "ir_$mode=$ir" "own_$mode=$own"
    awk -v ir="$ir" -v n="$cgn" -v own="$own" -v m="$mode" \
        'BEGIN {printf "retry: callgrind llm_retry %-3s %9.0f instructions per request (ngx_http_llm_retry_*: %.0f)\n", m, ir / n, own / n}'
done

awk -v x="$ir_off" -v y="$ir_on" -v n="$cgn" \
    'BEGIN {printf "retry: callgrind on - off: %+.0f instructions per request (%+.2f%%)\n", (y - x) / n, (y - x) * 100 / x}'
