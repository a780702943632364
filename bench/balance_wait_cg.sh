#!/bin/bash
# The cost of llm_balance prefix wait= where it does not hold: callgrind
# instructions per request of one nginx process (master off) serving
# BENCH_CG_REQUESTS sequential requests after a warm-up, counters zeroed
# and dumped around them with callgrind_control (as bench/retry.sh).
#   off:   the location's group has llm_balance prefix, no wait= anywhere
#   other: the same, and another group with wait=20ms (not this one's)
#   idle:  the location's group has wait=20ms; idle mock, so every
#          request is checked (owner within its bound) and never held
#
#   bash bench/balance_wait_cg.sh ROOT NGINX
# BENCH_PORT_BASE (default 19816): the mock, then nginx; BENCH_CG_MODES
# (default "off other idle"; "off" alone runs on a module without wait=).
set -eo pipefail

root=$1
. "$root/bench/lib.sh"
bench_init balance_wait "$root" "$2"

base=${BENCH_PORT_BASE:-19816}
mock=$base cg=$((base + 1))
cgn=${BENCH_CG_REQUESTS:-300}
dir=$BENCH_DIR

command -v valgrind > /dev/null || bench_die "no valgrind (make deps-bench)"

mock_start --listen "127.0.0.1:$mock,name=r0" --tokens 4

body=$dir/body.json
mkdir -p "$dir"
printf '%s' '{"model":"mock","max_tokens":4,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about NGINX."}]}' \
    > "$body"

conf() {    # conf MODE
    local wait=
    [ "$1" = idle ] && wait=" wait=20ms"
    cat <<EOC
    upstream g {
        llm_balance prefix$wait;
        server 127.0.0.1:$mock;
        keepalive 8;
    }
EOC
    [ "$1" = other ] && cat <<EOC
    upstream w {
        llm_balance prefix wait=20ms;
        server 127.0.0.1:$mock;
    }
EOC
    cat <<EOC
    server {
        listen 127.0.0.1:$cg;
        location /v1/ {
            llm_gateway on;
            proxy_pass http://g;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOC
}

# one request to the callgrind nginx; $1: its number
run_one() {
    curl -sf -o /dev/null -H 'Content-Type: application/json' \
         --data-binary @"$body" "http://127.0.0.1:$cg/v1/chat/completions" \
        || bench_die "request $1 failed"
}

for mode in ${BENCH_CG_MODES:-off other idle}; do
    conf "$mode" | nginx_conf "$dir" 1
    callgrind_nginx "$dir" "$cg" run_one "$cgn"
    ir=$CG_IR
    hold=$(callgrind_sum "$CG_DUMP" yes ngx_http_llm_balancer_hold)
    awk -v ir="$ir" -v n="$cgn" -v h="$hold" -v m="$mode" \
        'BEGIN {printf "balance_wait: callgrind %-5s %9.0f instructions per request (ngx_http_llm_balancer_hold, inclusive: %.0f)\n", m, ir / n, h / n}'
done
