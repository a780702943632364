#!/bin/bash
# The SDK suite: the official openai and @anthropic-ai/sdk packages (npm,
# pinned in package-lock.json) against nginx + the module + the mock.
# Ports 18060-18061; stops only the processes it started.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
module=${1:-$root/build/ngx_http_llm_module.so}
nginx=${NGINX:-/usr/sbin/nginx}
mock_port=18060 port=18061
dir=$root/build/sdk

if [ ! -d "$here/node_modules/openai" ]; then
    (cd "$here" && npm ci --silent --no-audit --no-fund)
fi

rm -rf "$dir" && mkdir -p "$dir/conf" "$dir/logs"
pids=()
cleanup() {
    [ -f "$dir/logs/nginx.pid" ] && kill "$(cat "$dir/logs/nginx.pid")" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    return 0
}
trap cleanup EXIT

"$root/mock/llm-mock" --listen "127.0.0.1:$mock_port,name=sdk" --quiet &
pids+=($!)

cat > "$dir/conf/nginx.conf" <<EOC
load_module $module;
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    llm_limit_zone sdk:1m;
    upstream mock { server 127.0.0.1:$mock_port; keepalive 16; }
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            llm_gateway on;
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /limited/v1/ {
            llm_gateway on;
            llm_limit zone=sdk key=\$llm_key_hash rpm=60;
            proxy_pass http://mock/v1/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOC
"$nginx" -p "$dir" -c conf/nginx.conf
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1
done

GATEWAY=http://127.0.0.1:$port node --test "$here/sdk.test.mjs"
status=$?

if grep -E '\[(alert|crit|emerg)\]|exited on signal' "$dir/logs/error.log"; then
    echo "sdk: nginx logged alerts" >&2
    exit 1
fi
exit $status
