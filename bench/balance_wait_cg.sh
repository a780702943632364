#!/bin/bash
# The cost of llm_balance prefix wait= where it does not hold: callgrind
# instructions per request of one nginx process (master off) serving
# BENCH_CG_REQUESTS sequential requests after a warm-up, counters zeroed
# and dumped around them with callgrind_control (as bench/retry.sh).
#   rr:    the location's group has nginx's round robin (the baseline)
#   off:   the location's group has llm_balance prefix, no wait= anywhere
#   other: the same, and another group with wait=20ms (not this one's)
#   idle:  the location's group has wait=20ms; idle mock, so every
#          request is checked (owner within its bound) and never held
# and under saturation, where it does hold: one prompt (one home) on four
# servers of the zero-work mock, wrk with 32 connections for
# BENCH_CG_SECONDS (4) against the callgrind nginx, instructions divided
# by the requests wrk counted:
#   hot_rr: round robin   hot_off: llm_balance prefix
#   hot:    llm_balance prefix wait=160ms
#
#   bash bench/balance_wait_cg.sh ROOT NGINX
# BENCH_PORT_BASE (default 19816): the mock, then nginx; BENCH_CG_MODES
# (default "rr off other idle hot_rr hot_off hot"; "rr off" alone runs on
# a module without wait=).
set -eo pipefail

root=$1
. "$root/bench/lib.sh"
bench_init balance_wait "$root" "$2"

base=${BENCH_PORT_BASE:-19816}
mock=$base cg=$((base + 1))
cgn=${BENCH_CG_REQUESTS:-300}
dir=$BENCH_DIR

command -v valgrind > /dev/null || bench_die "no valgrind (make deps-bench)"

mock_start $(for r in 0 1 2 3; do
                 echo --listen "127.0.0.1:$((mock + 10 + r)),name=r$r"; done) \
    --listen "127.0.0.1:$mock,name=r" --tokens 4

body=$dir/body.json
mkdir -p "$dir"
printf '%s' '{"model":"mock","max_tokens":4,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about NGINX."}]}' \
    > "$body"

conf() {    # conf MODE
    local wait= r
    [ "$1" = idle ] && wait=" wait=20ms"
    [ "$1" = hot ] && wait=" wait=160ms"
    echo "    upstream g {"
    case $1 in
        rr|hot_rr) ;;
        *) echo "        llm_balance prefix$wait;" ;;
    esac
    case $1 in
        hot*) for r in 0 1 2 3; do
                  echo "        server 127.0.0.1:$((mock + 10 + r));"
              done ;;
        *)    echo "        server 127.0.0.1:$mock;" ;;
    esac
    cat <<EOC
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

# saturation: wrk for BENCH_CG_SECONDS, its request count in $dir/wrk.n
cgs=${BENCH_CG_SECONDS:-4}
run_wrk() {
    if [ "$1" -gt 1 ]; then
        return      # the warm-up's other calls
    fi
    WRK_QUIET=1 wrk_post "$cg" "$body" "$cgs" 32 | cut -d' ' -f3 > "$dir/wrk.n"
}

for mode in ${BENCH_CG_MODES:-rr off other idle hot_rr hot_off hot}; do
    conf "$mode" | nginx_conf "$dir" 1
    case $mode in
        hot*) command -v wrk > /dev/null || bench_die "no wrk (make deps-bench)"
              callgrind_nginx "$dir" "$cg" run_wrk 1
              n=$(cat "$dir/wrk.n") ;;
        *)    callgrind_nginx "$dir" "$cg" run_one "$cgn"
              n=$cgn ;;
    esac
    ir=$CG_IR
    hold=$(callgrind_sum "$CG_DUMP" yes ngx_http_llm_balancer_hold)
    wake=$(callgrind_sum "$CG_DUMP" yes ngx_http_llm_balancer_wait_handler)
    awk -v ir="$ir" -v n="$n" -v h="$hold" -v w="$wake" -v m="$mode" \
        'BEGIN {printf "balance_wait: callgrind %-7s %9.0f instructions per request over %d (ngx_http_llm_balancer_hold, inclusive: %.0f; _wait_handler: %.0f)\n", m, ir / n, n, h / n, w / n}'
done
