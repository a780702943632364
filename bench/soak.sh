#!/bin/bash
# Soak (issue 9; a bench, not a test): SOAK_CONNS concurrent streams (1000)
# through the gateway for SOAK_SECONDS (600) against the mock LLM server,
# with the sidecar receiving every usage record. Every SOAK_SAMPLE seconds
# it samples the RSS of the nginx workers and of the sidecar, then prints
# the memory slope (KB/min, least squares over the samples after
# SOAK_WARMUP seconds), wrk's errors, and the usage completeness: records
# in the sidecar's ledger against requests nginx logged.
#
#   bash bench/soak.sh [ROOT] [NGINX]
#   SOAK_SECONDS=60 SOAK_CONNS=200 bash bench/soak.sh    # a short run
#
# Ports: SOAK_PORT (19450, the mock) and SOAK_PORT + 1 (the gateway). Only
# the processes started here are stopped. Needs wrk and the built module,
# mock and sidecar.
set -euo pipefail

root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
nginx=${2:-/usr/sbin/nginx}
port=${SOAK_PORT:-19450}
secs=${SOAK_SECONDS:-600}
conns=${SOAK_CONNS:-1000}
sample=${SOAK_SAMPLE:-5}
warmup=${SOAK_WARMUP:-60}
ttft=${SOAK_TTFT_MS:-300} itl=${SOAK_ITL_MS:-100} tokens=${SOAK_TOKENS:-30}
module=${SOAK_MODULE:-$root/build/ngx_http_llm_module.so}
sidecar=${SOAK_SIDECAR:-$root/build/sidecar/llm-sidecar}
dir=${SOAK_DIR:-$root/build/soak}
mock_port=$port gw_port=$((port + 1))
sock=$dir/sidecar.sock
token=soak-admin-token-0123456789

# 1000 client sockets, as many to the mock, the sidecar's, the logs
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((conns * 3 + 100)) ] \
    || { echo "soak: ulimit -n $(ulimit -n) is too low for $conns streams" >&2; exit 1; }

for b in "$module" "$sidecar" "$root/mock/llm-mock"; do
    [ -e "$b" ] || { echo "soak: $b is not built (make all)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "soak: wrk is missing" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/conf" "$dir/logs" "$dir/data" "$dir/tmp"
pids=()
cleanup() {
    [ -f "$dir/logs/nginx.pid" ] \
        && kill -QUIT "$(cat "$dir/logs/nginx.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$root/mock/llm-mock" --listen "127.0.0.1:$mock_port,name=soak" \
    --ttft-ms "$ttft" --itl-ms "$itl" --tokens "$tokens" --quiet &
pids+=($!)

cat > "$dir/sidecar.json" <<EOC
{
  "listen": {"unix": "$sock", "unix_mode": "0666"},
  "threads": 1,
  "data_dir": "$dir/data",
  "admin_token": "$token",
  "log_level": "warn",
  "price_table": "$root/conf/prices.json",
  "models": [{"name": "gpt-4o-mini", "upstream": "mock", "tier": 1}]
}
EOC
"$sidecar" --config "$dir/sidecar.json" 2> "$dir/logs/sidecar.log" &
sidecar_pid=$!
pids+=($sidecar_pid)

cat > "$dir/conf/nginx.conf" <<EOC
load_module $module;
worker_processes 2;
worker_rlimit_nofile 16384;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 8192; }
http {
    access_log logs/access.log;
    client_body_temp_path tmp; proxy_temp_path tmp;
    fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
    upstream mock { server 127.0.0.1:$mock_port; keepalive 256; }
    llm_sidecar unix:$sock spool=soak_spool:32m;
    server {
        listen 127.0.0.1:$gw_port backlog=4096;
        llm_gateway on;
        llm_team \$http_x_team;
        location /v1/ {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 30s;
        }
    }
}
EOC
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
"$nginx" -p "$dir" -c conf/nginx.conf
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$gw_port) 2>/dev/null && break; sleep 0.1
done

printf '%s' '{"model":"gpt-4o-mini","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"Write a long poem about NGINX."}]}' \
    > "$dir/stream.json"

workers() {
    pgrep -P "$(cat "$dir/logs/nginx.pid")" | tr '\n' ',' | sed 's/,$//'
}
rss() {     # KB, summed over the PIDs
    ps -o rss= -p "$1" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}
anon() {    # private memory (RssAnon, KB) summed over the PIDs: RSS also
            # counts the shared memory zones' pages as the workers touch them
    for p in ${1//,/ }; do
        awk '/^RssAnon:/ { print $2 }' "/proc/$p/status" 2>/dev/null
    done | awk '{ s += $1 } END { print s + 0 }'
}

echo "soak: $conns streams for ${secs}s (ttft ${ttft}ms, itl ${itl}ms," \
     "$tokens tokens), gateway 127.0.0.1:$gw_port, samples every ${sample}s"

WRK_BODY=$dir/stream.json wrk -t 2 -c "$conns" -d "${secs}s" --timeout 30s \
    -s "$root/bench/post.lua" -H "X-Team: soak" \
    "http://127.0.0.1:$gw_port/v1/chat/completions" > "$dir/wrk.out" 2>&1 &
wrk_pid=$!
pids+=($wrk_pid)

start=$(date +%s)
: > "$dir/rss.tsv"
while kill -0 "$wrk_pid" 2>/dev/null; do
    t=$(( $(date +%s) - start ))
    w=$(workers)
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$(rss "$w")" "$(rss "$sidecar_pid")" \
        "$(anon "$w")" "$(anon "$sidecar_pid")" >> "$dir/rss.tsv"
    sleep "$sample"
done
wait "$wrk_pid" || true

# the spool drains within a few delivery ticks
sleep 5
served=$(grep -c 'POST /v1/chat/completions' "$dir/logs/access.log" || true)
ok=$(grep -c '"POST /v1/chat/completions HTTP/1.1" 200 ' \
         "$dir/logs/access.log" || true)
spend=$(curl -s --unix-socket "$sock" \
    "http://localhost/v1/spend?group_by=team&team=soak")
ledger=$(printf '%s' "$spend" \
    | sed -n 's/.*"total":{"requests":\([0-9]*\).*/\1/p')

slope() {   # column of rss.tsv -> KB/min after the warm-up
    awk -v c="$1" -v w="$warmup" '$1 >= w {
            n++; x = $1 / 60; y = $c
            sx += x; sy += y; sxx += x * x; sxy += x * y
        }
        END {
            if (n < 2 || n * sxx == sx * sx) { print "n/a"; exit }
            printf "%.1f", (n * sxy - sx * sy) / (n * sxx - sx * sx)
        }' "$dir/rss.tsv"
}
first_last() {
    awk -v c="$1" -v w="$warmup" '$1 >= w { if (!f) f = $c; l = $c }
        END { printf "%s -> %s KB", f, l }' "$dir/rss.tsv"
}

echo "--- wrk"
sed -n '/requests in/,$p' "$dir/wrk.out"
echo "--- figures"
echo "nginx workers RSS (after ${warmup}s): $(first_last 2)," \
     "slope $(slope 2) KB/min"
echo "sidecar RSS (after ${warmup}s): $(first_last 3)," \
     "slope $(slope 3) KB/min"
echo "nginx workers private (RssAnon): $(first_last 4)," \
     "slope $(slope 4) KB/min"
echo "sidecar private (RssAnon): $(first_last 5), slope $(slope 5) KB/min"
echo "errors: wrk: $(grep -E 'Socket errors|Non-2xx' "$dir/wrk.out" \
      | tr -s ' ' | paste -sd ';' || true)"
echo "errors: nginx error.log alert/crit/emerg/signal lines:" \
     "$(grep -cE '\[(alert|crit|emerg)\]|exited on signal' \
        "$dir/logs/error.log" || true)"
echo "requests logged by nginx: $served (200: $ok)"
echo "usage records in the sidecar ledger: ${ledger:-?}" \
     "($( [ "${ledger:-x}" = "$served" ] && echo complete \
          || echo "MISMATCH: $spend" ))"
echo "samples: $dir/rss.tsv (seconds; RSS KB of workers, sidecar; RssAnon KB of workers, sidecar)"
