#!/bin/bash
# `make run` / `make stop`: the embedded default on one machine as one
# product: the mock LLM server, the sidecar (routing, usage ledger, spend)
# and nginx with conf/nginx.conf + conf/llm.conf (routing fail-open).
# Stops only the PIDs it started (pid files under build/run).
#
#   run.sh start|stop ROOT NGINX PORT MOCK_PORT
#
# PORT and MOCK_PORT other than the example's 8080 / 18080 and RUN_SOCK
# (default /tmp/ngx_llm/sidecar.sock) are written into the copies of the
# configurations; with RUN_DIR (default ROOT/build/run, the nginx prefix)
# and RUN_MODULE (default ROOT/build/ngx_http_llm_module.so) a second
# instance runs beside the first one.
set -euo pipefail

cmd=$1 root=$2 nginx=$3 port=$4 mock_port=$5
run=${RUN_DIR:-$root/build/run}
sock=${RUN_SOCK:-/tmp/ngx_llm/sidecar.sock}
module=${RUN_MODULE:-$root/build/ngx_http_llm_module.so}

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
cp "$root/conf/nginx.conf" "$run/conf/"
sed -e "s/127\.0\.0\.1:8080;/127.0.0.1:$port;/" \
    -e "s/127\.0\.0\.1:18080;/127.0.0.1:$mock_port;/" \
    -e "s#unix:/tmp/ngx_llm/sidecar\.sock#unix:$sock#" \
    "$root/conf/llm.conf" > "$run/conf/llm.conf"
ln -sf "$module" "$run/modules/ngx_http_llm_module.so"

"$root/mock/llm-mock" --listen "127.0.0.1:$mock_port,name=mock" --quiet \
    >"$run/logs/mock.log" 2>&1 &
echo $! > "$run/mock.pid"
wait_port "$mock_port" "mock LLM server"

sidecar=$root/build/sidecar/llm-sidecar
if [ -x "$sidecar" ]; then
    # its configuration, with the socket (and data next to it) of this run;
    # started by root, nginx's workers run as nobody: the demo's socket is
    # open to every local user (the systemd unit uses a group instead)
    mkdir -p "$(dirname "$sock")"
    chmod 755 "$(dirname "$sock")"
    sed -e "s#\"/tmp/ngx_llm/sidecar\.sock\"#\"$sock\"#" \
        -e "s#\"unix_mode\": \"0660\"#\"unix_mode\": \"0666\"#" \
        -e "s#\"/tmp/ngx_llm/sidecar-data\"#\"$(dirname "$sock")/sidecar-data\"#" \
        -e "s#\"\.\./prices\.json\"#\"$root/conf/prices.json\"#" \
        "$root/conf/sidecar/sidecar.json" > "$run/conf/sidecar.json"
    rm -f "$sock"
    "$sidecar" --config "$run/conf/sidecar.json" \
        >"$run/logs/sidecar.log" 2>&1 &
    echo $! > "$run/sidecar.pid"
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    [ -S "$sock" ] || echo "run: the sidecar did not listen on $sock (see" \
        "$run/logs/sidecar.log); the gateway routes statically (fail-open)" >&2
else
    echo "run: $sidecar not built (make sidecar): static routes only" >&2
fi

"$nginx" -p "$run" -c conf/nginx.conf -t -q
"$nginx" -p "$run" -c conf/nginx.conf
wait_port "$port" nginx

g=http://127.0.0.1:$port
cat <<EOM
run: gateway on $g (nginx prefix $run, logs in $run/logs)
     mock LLM on 127.0.0.1:$mock_port, sidecar on $sock

  # a request the sidecar routes ("auto": the cheapest model of its class)
  curl -s $g/v1/chat/completions -H 'Content-Type: application/json' \\
       -H 'Authorization: Bearer sk-demo' -H 'X-Team: demo' \\
       -d '{"model":"auto","messages":[{"role":"user","content":"Hello!"}]}'

  # a stream, event by event
  curl -sN $g/v1/chat/completions -H 'Content-Type: application/json' \\
       -H 'X-Team: demo' \\
       -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}'

  # Anthropic's API
  curl -s $g/v1/messages -H 'Content-Type: application/json' -H 'X-Team: demo' \\
       -d '{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}'

  tail -f $run/logs/access.log      # model served, route, tokens per request

  # spend report (the sidecar's ledger), by team and by model
  curl -s --unix-socket $sock 'http://sidecar/v1/spend?group_by=team'
  curl -s --unix-socket $sock 'http://sidecar/v1/spend?group_by=model&format=csv'

  # metrics: the gateway's (usage spool, route decisions, ...) and the sidecar's
  curl -s $g/metrics
  curl -s --unix-socket $sock http://sidecar/metrics
  # live status page: $g/status

  make stop                         # stops what make run started
EOM
