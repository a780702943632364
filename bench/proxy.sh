#!/bin/bash
# make bench: plain nginx proxy_pass (A) against the gateway (B) on the same
# mock LLM server, measured in one run, alternating A/B, as ratios.
# Figures, not tests: the machine has 2 shared cores, expect noise.
set -euo pipefail

root=$1 nginx=$2
# BENCH_PORT_BASE: 4 ports from it (default 18090); BENCH_MODULE: the .so
# to measure; BENCH_DIR: where the config and logs go
port=${BENCH_PORT_BASE:-18090}
module=${BENCH_MODULE:-$root/build/ngx_http_llm_module.so}
dir=${BENCH_DIR:-$root/build/bench/proxy}
mock_port=$port plain_port=$((port + 1)) llm_port=$((port + 2))
sse_port=$((port + 3))
rounds=${BENCH_ROUNDS:-3} secs=${BENCH_SECONDS:-5} conns=${BENCH_CONNS:-32}

mkdir -p "$dir/conf" "$dir/logs"
pids=()
cleanup() {
    [ -f "$dir/logs/nginx.pid" ] && kill "$(cat "$dir/logs/nginx.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$root/mock/llm-mock" --listen "127.0.0.1:$mock_port,name=bench" \
    --ttft-ms 0 --itl-ms 0 --tokens 16 --quiet &
pids+=($!)

cat > "$dir/conf/nginx.conf" <<EOC
load_module $module;
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    upstream mock { server 127.0.0.1:$mock_port; keepalive 64; }
    server {
        listen 127.0.0.1:$plain_port;
        location /v1/ {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        # plain nginx set up for SSE the usual way
        listen 127.0.0.1:$sse_port;
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
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOC
"$nginx" -p "$dir" -c conf/nginx.conf
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$llm_port) 2>/dev/null && break; sleep 0.1
done

printf '%s' '{"model":"mock","max_tokens":16,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/small.json"
printf '%s' '{"model":"mock","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/stream.json"
printf '%s' '{"model":"mock","stream":true,"stream_options":{"include_usage":true},"max_tokens":16,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/usage.json"

# run PORT BODY -> "rps p99_ms"
run() {
    local out
    out=$(WRK_BODY=$2 wrk -t1 -c"$conns" -d"${secs}s" --latency \
          -s "$root/bench/post.lua" "http://127.0.0.1:$1/v1/chat/completions")
    if echo "$out" | grep -q "Non-2xx"; then
        echo "bench: non-2xx answers on port $1:" >&2; echo "$out" >&2
    fi
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    echo "$rps $(to_ms "$p99")"
}
to_ms() {
    case $1 in
        *us) awk -v v="${1%us}" 'BEGIN {printf "%.2f", v / 1000}' ;;
        *ms) awk -v v="${1%ms}" 'BEGIN {printf "%.2f", v}' ;;
        *s)  awk -v v="${1%s}" 'BEGIN {printf "%.2f", v * 1000}' ;;
    esac
}

echo "bench: plain proxy_pass (A) vs gateway (B), mock LLM upstream," \
     "$rounds rounds x ${secs}s alternating, $conns connections, 1 worker;" \
     "for streams A has proxy_buffering off, as SSE needs"
for kind in small stream usage; do
    a_sum=0 b_sum=0 a_p99=0 b_p99=0
    a_port=$plain_port
    [ "$kind" = small ] || a_port=$sse_port
    for i in $(seq "$rounds"); do
        read -r ar ap <<<"$(run $a_port "$dir/$kind.json")"
        read -r br bp <<<"$(run $llm_port "$dir/$kind.json")"
        printf '  %-6s round %d: A %9.0f req/s p99 %7s ms | B %9.0f req/s p99 %7s ms\n' \
            "$kind" "$i" "$ar" "$ap" "$br" "$bp"
        a_sum=$(awk -v x="$a_sum" -v y="$ar" 'BEGIN {print x + y}')
        b_sum=$(awk -v x="$b_sum" -v y="$br" 'BEGIN {print x + y}')
        a_p99=$(awk -v x="$a_p99" -v y="$ap" 'BEGIN {print x + y}')
        b_p99=$(awk -v x="$b_p99" -v y="$bp" 'BEGIN {print x + y}')
    done
    awk -v k="$kind" -v a="$a_sum" -v b="$b_sum" -v ap="$a_p99" -v bp="$b_p99" \
        -v n="$rounds" 'BEGIN {
        printf "%-6s %s: gateway/plain throughput %.3f, p99 %.2f ms vs %.2f ms (x%.2f)\n",
            k, (k == "small" ? "non-streaming" : (k == "stream" ? "streaming, usage chunk added and stripped" : "streaming, client asked usage")), b / a,
            bp / n, ap / n, (ap > 0 ? bp / ap : 0) }'
done
