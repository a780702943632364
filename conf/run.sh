#!/bin/bash
# `make run` / `make stop`: the embedded default on one machine: the mock
# LLM server, the sidecar (when built) and nginx with conf/nginx.conf.
# Stops only the PIDs it started (pid files under build/run).
set -euo pipefail

cmd=$1 root=$2 nginx=$3 port=$4 mock_port=$5
run=$root/build/run

stop_pid() {    # name pidfile
    local pid
    [ -f "$2" ] || return 0
    pid=$(cat "$2")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "run: stopped $1 (pid $pid)"
    fi
    rm -f "$2"
}

wait_port() {   # port what
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "run: $2 did not listen on 127.0.0.1:$1" >&2
    return 1
}

if [ "$cmd" = stop ]; then
    [ -f "$run/logs/nginx.pid" ] && cp "$run/logs/nginx.pid" "$run/nginx.pid"
    stop_pid nginx "$run/nginx.pid"
    stop_pid sidecar "$run/sidecar.pid"
    stop_pid mock "$run/mock.pid"
    exit 0
fi

"$0" stop "$root" "$nginx" "$port" "$mock_port" >/dev/null

mkdir -p "$run/conf" "$run/logs" "$run/modules"
cp "$root/conf/nginx.conf" "$root/conf/llm.conf" "$run/conf/"
ln -sf "$root/build/ngx_http_llm_module.so" "$run/modules/"

"$root/mock/llm-mock" --listen "127.0.0.1:$mock_port,name=mock" --quiet \
    >"$run/logs/mock.log" 2>&1 &
echo $! > "$run/mock.pid"
wait_port "$mock_port" "mock LLM server"

sidecar=$root/build/sidecar/llm-sidecar
if [ -x "$sidecar" ]; then
    "$sidecar" --config "$root/conf/sidecar/sidecar.json" \
        >"$run/logs/sidecar.log" 2>&1 &
    echo $! > "$run/sidecar.pid"
fi

"$nginx" -p "$run" -c conf/nginx.conf -t -q
"$nginx" -p "$run" -c conf/nginx.conf
wait_port "$port" nginx

cat <<EOM
run: gateway on http://127.0.0.1:$port (nginx prefix $run, logs in $run/logs)

  curl -s http://127.0.0.1:$port/v1/chat/completions \\
       -H 'Authorization: Bearer sk-demo' -H 'Content-Type: application/json' \\
       -d '{"model":"mock","messages":[{"role":"user","content":"Hello!"}]}'

  # a stream, event by event:
  curl -sN http://127.0.0.1:$port/v1/chat/completions \\
       -H 'Content-Type: application/json' \\
       -d '{"model":"mock","stream":true,"messages":[{"role":"user","content":"Hi"}]}'

  tail -f $run/logs/access.log      # usage per request

  # the sidecar (control plane): spend report, metrics (sidecar/README.md)
  curl -s --unix-socket /tmp/ngx_llm/sidecar.sock 'http://sidecar/v1/spend?group_by=model'
  curl -s --unix-socket /tmp/ngx_llm/sidecar.sock http://sidecar/metrics
  make stop                         # stops what make run started
EOM
