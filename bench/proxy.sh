#!/bin/bash
# make bench: plain nginx proxy_pass (A) against the gateway (B) on the same
# mock LLM server, measured in one run, alternating A/B, as ratios.
# Figures, not tests: the machine has 2 shared cores, expect noise.
set -euo pipefail

root=$1 nginx=$2
. "$root/bench/lib.sh"
# BENCH_PORT_BASE: 4 ports from it (default 18090); BENCH_MODULE: the .so
# to measure; BENCH_DIR: where the config and logs go
bench_init proxy "$root" "$nginx"
port=${BENCH_PORT_BASE:-18090}
dir=$BENCH_DIR
mock_port=$port plain_port=$((port + 1)) llm_port=$((port + 2))
sse_port=$((port + 3))
rounds=${BENCH_ROUNDS:-3} secs=${BENCH_SECONDS:-5} conns=${BENCH_CONNS:-32}

mock_start --listen "127.0.0.1:$mock_port,name=bench" \
    --ttft-ms 0 --itl-ms 0 --tokens 16

nginx_conf "$dir" 1 <<EOC
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
EOC
nginx_start "$dir" "$plain_port" "$sse_port" "$llm_port"

printf '%s' '{"model":"mock","max_tokens":16,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/small.json"
printf '%s' '{"model":"mock","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/stream.json"
printf '%s' '{"model":"mock","stream":true,"stream_options":{"include_usage":true},"max_tokens":16,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/usage.json"

echo "bench: plain proxy_pass (A) vs gateway (B), mock LLM upstream," \
     "$rounds rounds x ${secs}s alternating, $conns connections, 1 worker;" \
     "for streams A has proxy_buffering off, as SSE needs"
for kind in small stream usage; do
    a_port=$plain_port
    [ "$kind" = small ] || a_port=$sse_port
    AB_LABEL=$(printf '%-6s' "$kind") ab_rounds "$rounds" \
        "A=wrk_post $a_port $dir/$kind.json $secs $conns" \
        "B=wrk_post $llm_port $dir/$kind.json $secs $conns"
    awk -v k="$kind" -v a="${AB_MEAN[A]}" -v b="${AB_MEAN[B]}" \
        -v ap="${AB_MEAN[A.2]}" -v bp="${AB_MEAN[B.2]}" 'BEGIN {
        printf "%-6s %s: gateway/plain throughput %.3f, p99 %.2f ms vs %.2f ms (x%.2f)\n",
            k, (k == "small" ? "non-streaming" : (k == "stream" ? "streaming, usage chunk added and stripped" : "streaming, client asked usage")), b / a,
            bp, ap, (ap > 0 ? bp / ap : 0) }'
done
