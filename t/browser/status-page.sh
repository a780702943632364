#!/bin/bash
# The llm_status page in a real browser: Debian's headless chromium loads it
# from a running gateway (nginx + module + mock LLM) while a load generator
# sends chat requests, twice, and the figures the page shows must move:
# requests and output tokens per second above zero, totals growing from the
# first load to the second, and the spend tile hidden (no sidecar).
#
#   t/browser/status-page.sh [MODULE_SO]
#
# Ports: STATUS_PORT (default 19250) for nginx, STATUS_MOCK_PORT (19251) for
# the mock. Everything runs under a fresh temporary directory; only the
# processes started here are stopped. Under --virtual-time-budget the
# page's clock runs ahead of real time, so its per-second rates read lower
# than the real load: the test checks that figures move, not their values.

set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
module=$(realpath "${1:-$root/build/ngx_http_llm_module.so}")
nginx=${NGINX:-/usr/sbin/nginx}
port=${STATUS_PORT:-19250}
mock_port=${STATUS_MOCK_PORT:-19251}
chromium=${CHROMIUM:-chromium}

command -v "$chromium" > /dev/null \
    || { echo "status-page: $chromium not installed (apt-get install chromium)"; exit 1; }
[ -f "$module" ] || { echo "status-page: $module not built"; exit 1; }

tmp=$(mktemp -d /tmp/ngx-llm-status.XXXXXX)
pids=()
nginx_up=0

cleanup() {
    if [ "$nginx_up" = 1 ]; then
        "$nginx" -p "$tmp/" -c conf/nginx.conf -s stop 2> /dev/null || true
    fi
    for p in "${pids[@]}"; do
        kill "$p" 2> /dev/null || true
        wait "$p" 2> /dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "status-page: FAIL: $*"; exit 1; }

wait_port() {
    for _ in $(seq 100); do
        (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
        sleep 0.05
    done
    fail "nothing listens on 127.0.0.1:$1"
}

mkdir -p "$tmp/conf" "$tmp/logs" "$tmp/profile1" "$tmp/profile2"

"$root/mock/llm-mock" --listen "127.0.0.1:$mock_port" --ttft-ms 40 \
    --itl-ms 5 --quiet &
pids+=($!)
wait_port "$mock_port"

cat > "$tmp/conf/nginx.conf" << EOC
load_module $module;
worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    llm_metrics_zone metrics:1m models=5;
    upstream mock { server 127.0.0.1:$mock_port; keepalive 8; }
    server {
        listen 127.0.0.1:$port;
        location /v1/ { llm_gateway on; proxy_pass http://mock; }
        location = /metrics { llm_metrics; }
        location = /status { llm_status metrics=/metrics sidecar=/sidecar; }
        location = /sidecar { return 502; }
    }
}
EOC

"$nginx" -p "$tmp/" -c conf/nginx.conf -t -q || fail "nginx -t"
"$nginx" -p "$tmp/" -c conf/nginx.conf
nginx_up=1
wait_port "$port"

# load: two clients, streams and JSON answers, until stopped
load() {
    local i=0 body
    while :; do
        i=$((i + 1))
        body='{"model":"gpt-load","max_tokens":16,"stream":'
        body+=$([ $((i % 2)) = 0 ] && echo true || echo false)
        body+=',"messages":[{"role":"user","content":"status page"}]}'
        curl -s -o /dev/null -H 'Content-Type: application/json' \
            -d "$body" "http://127.0.0.1:$port/v1/chat/completions" || true
    done
}
load & pids+=($!)
load & pids+=($!)

# one page load: the DOM after the page polled every 300 ms for ~3 s
snapshot() {
    timeout 60 "$chromium" --headless --no-sandbox --disable-gpu \
        --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync \
        --user-data-dir="$tmp/$1" --virtual-time-budget=3000 \
        --dump-dom "http://127.0.0.1:$port/status?interval=300" \
        2> "$tmp/$1.log"
}

field() {   # field ID < DOM: the text of the element with that id
    sed -n "s/.*id=\"$1\"[^>]*>\([^<]*\)<.*/\1/p" | head -1
}

# a page load whose rates moved: the page's polls run in virtual time,
# so on a busy machine they can all fall between two finished requests
# and read 0.0; such a load is taken again, three times at most
moving() {
    local dom try
    for try in 1 2 3; do
        dom=$(snapshot "$1-$try")
        awk -v r="$(field req-rate <<< "$dom")" \
            -v t="$(field tokens-rate <<< "$dom")" \
            'BEGIN { exit !(r + 0 > 0 && t + 0 > 0) }' && break
        echo "status-page: $1: rates read 0, loading the page again" >&2
        sleep 1
    done
    echo "$dom"
}

sleep 1
dom1=$(moving profile1)
sleep 2
dom2=$(moving profile2)

for n in 1 2; do
    dom=$([ $n = 1 ] && echo "$dom1" || echo "$dom2")
    polls=$(field updated <<< "$dom" | sed -n 's/.*(poll \([0-9]*\)).*/\1/p')
    rate=$(field req-rate <<< "$dom")
    tokens=$(field tokens-rate <<< "$dom")
    echo "status-page: load $n: polls=$polls req/s=$rate tokens/s=$tokens" \
         "total=$(field req-total <<< "$dom")" \
         "ttft=$(field ttft <<< "$dom")" \
         "upstream=$(field upstream <<< "$dom")"
    [ "${polls:-0}" -ge 2 ] || fail "load $n: the page did not poll twice"
    awk -v r="$rate" 'BEGIN { exit !(r + 0 > 0) }' \
        || fail "load $n: requests/s is \"$rate\""
    awk -v r="$tokens" 'BEGIN { exit !(r + 0 > 0) }' \
        || fail "load $n: output tokens/s is \"$tokens\""
    grep -q '<tr class="model"><td>gpt-load</td>' <<< "$dom" \
        || fail "load $n: no row for the model"
    grep -q 'id="spend-tile" hidden' <<< "$dom" \
        || fail "load $n: the spend tile shows without a sidecar"
    [ -z "$(field err <<< "$dom")" ] || fail "load $n: $(field err <<< "$dom")"
done

total1=$(field req-total <<< "$dom1")
total2=$(field req-total <<< "$dom2")
[ "$total2" -gt "$total1" ] \
    || fail "the request total did not move: $total1 then $total2"

if grep -E '\[(alert|crit|emerg)\]' "$tmp/logs/error.log"; then
    fail "nginx logged the lines above"
fi

echo "status-page: ok (requests $total1 -> $total2)"
