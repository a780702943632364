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

run_n() {
    local i
    for i in $(seq "$1"); do
        curl -sf -o /dev/null -H 'Content-Type: application/json' \
             --data-binary @"$body" "http://127.0.0.1:$cg/v1/chat/completions" \
            || bench_die "request $i failed"
    done
}

for mode in ${BENCH_CG_MODES:-off other idle}; do
    conf "$mode" | nginx_conf "$dir" 1
    sed -i '1i master_process off;\ndaemon off;' "$dir/conf/nginx.conf"
    rm -f "$dir"/callgrind.out.*
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.%p" \
        "$BENCH_NGINX" -p "$dir" -c conf/nginx.conf 2> "$dir/valgrind.log" &
    vpid=$!
    bench_on_exit "kill $vpid 2>/dev/null"
    wait_port "$cg"
    run_n 20
    callgrind_control -z "$vpid" > /dev/null
    run_n "$cgn"
    callgrind_control -d "$vpid" > /dev/null
    kill "$vpid"
    wait "$vpid" 2> /dev/null || true
    dump=$dir/callgrind.out.$vpid.1
    [ -f "$dump" ] || bench_die "no callgrind dump $dump"
    ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$dump")
    hold=$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2> /dev/null \
           | awk '/^ *[0-9,]+ \([ 0-9.]+%\)  [^ ]*:ngx_http_llm_balancer_hold/ {
                      gsub(",", "", $1); s += $1 }
                  END {print s + 0}')
    awk -v ir="$ir" -v n="$cgn" -v h="$hold" -v m="$mode" \
        'BEGIN {printf "balance_wait: callgrind %-5s %9.0f instructions per request (ngx_http_llm_balancer_hold, inclusive: %.0f)\n", m, ir / n, h / n}'
done
