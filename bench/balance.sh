#!/bin/bash
# make bench-balance: the balancers of issue 5 side by side on the same
# traces (bench/balance.lua, fixed seed) against four mock replicas that
# simulate a prefix cache (uncached prompt tokens cost TTFT), then the
# balancing overhead on a zero-work mock. Figures, not tests: 2 shared
# cores, expect noise; every method runs the same trace in the same run.
#
# Closed loop (wrk, BENCH_CONNS connections), not open-loop arrivals: the
# mock has no compute queue, so load does not change its TTFT and the
# figures that matter here (cache hit rate, TTFT from prefill, spread) do
# not depend on the arrival process.
set -euo pipefail

root=$1 nginx=$2
base=${BENCH_PORT_BASE:-19600}          # replicas base..+3, nginx +10..+19
module=${BENCH_MODULE:-$root/build/ngx_http_llm_module.so}
dir=${BENCH_DIR:-$root/build/bench/balance}
secs=${BENCH_SECONDS:-8} conns=${BENCH_CONNS:-16} slo=${BENCH_SLO_MS:-50}
prefill_us=${BENCH_PREFILL_US:-40}      # 2048 uncached tokens: ~82 ms
blocks=${BENCH_CACHE_BLOCKS:-2560}      # 20 of the 64 group prefixes

methods="rr least_conn random2 least_tokens peak_ewma prefix prefix_e1 oracle"
mkdir -p "$dir/conf" "$dir/logs"
mock_pid= sampler_pid=

cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    [ -f "$dir/logs/nginx.pid" ] \
        && kill "$(cat "$dir/logs/nginx.pid")" 2>/dev/null || true
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on 127.0.0.1:$1" >&2
    exit 1
}

# start_mock SCENARIO: normal | slow (replica 3 +150 ms) | 429 (replica 3)
start_mock() {
    if [ -n "$mock_pid" ]; then kill "$mock_pid"; wait "$mock_pid" 2>/dev/null || true; fi
    local args=() extra
    for r in 0 1 2 3; do
        extra=
        if [ "$r" = 3 ] && [ "$1" = slow ]; then extra=",ttft_ms=150"; fi
        if [ "$r" = 3 ] && [ "$1" = 429 ]; then extra=",status=429,retry_after=2"; fi
        args+=(--listen "127.0.0.1:$((base + r)),name=r$r,prefill_us=$prefill_us,cache_blocks=$blocks$extra")
    done
    "$root/mock/llm-mock" "${args[@]}" --tokens 4 --quiet &
    mock_pid=$!
    for r in 0 1 2 3; do wait_port $((base + r)); done
}

upstream() {    # upstream NAME DIRECTIVE
    echo "    upstream $1 {"
    [ -n "$2" ] && echo "        $2"
    for r in 0 1 2 3; do echo "        server 127.0.0.1:$((base + r));"; done
    echo "        keepalive 64;"
    echo "    }"
}

write_conf() {
    local i=10 m
    {
        echo "load_module $module;"
        echo "worker_processes 1;"
        echo "error_log logs/error.log warn;"
        echo "pid logs/nginx.pid;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "    access_log off;"
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path ${t}_temp;"
        done
        echo "    client_body_buffer_size 64k;"
        upstream m_rr ""
        upstream m_least_conn "least_conn;"
        upstream m_random2 "random two least_conn;"
        upstream m_least_tokens "llm_balance least_tokens;"
        upstream m_peak_ewma "llm_balance peak_ewma seed=1;"
        upstream m_prefix "llm_balance prefix;"
        upstream m_prefix_e1 "llm_balance prefix epsilon=1;"
        for r in 0 1 2 3; do
            echo "    upstream r$r { server 127.0.0.1:$((base + r)); keepalive 16; }"
        done
        for m in $methods; do
            local target="m_$m"
            [ "$m" = oracle ] && target='r$http_x_replica'
            cat <<EOC
    server {
        listen 127.0.0.1:$((base + i));
        location /v1/ {
            llm_gateway on;
            proxy_pass http://$target;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_429 http_503 non_idempotent;
        }
    }
EOC
            i=$((i + 1))
        done
        # the overhead part: plain nginx, no gateway
        cat <<EOC
    server {
        listen 127.0.0.1:$((base + 19));
        location /v1/ {
            proxy_pass http://m_rr;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOC
    } > "$dir/conf/nginx.conf"
}

port_of() {
    local i=10 m
    for m in $methods; do
        [ "$m" = "$1" ] && { echo $((base + i)); return; }
        i=$((i + 1))
    done
}

stats_sum() {   # sum of a /stats field over the replicas
    local s=0 v
    for r in 0 1 2 3; do
        v=$(curl -s "127.0.0.1:$((base + r))/stats" \
            | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p")
        s=$((s + ${v:-0}))
    done
    echo $s
}

# in flight per replica (running + waiting), every 100 ms, into a file
sample() {
    while :; do
        for r in 0 1 2 3; do
            curl -s "127.0.0.1:$((base + r))/stats" \
                | sed -n 's/.*"requests_running":\([0-9]*\),"requests_waiting":\([0-9]*\).*/\1 \2/p' \
                | awk -v r=$r '{print r, $1 + $2}'
        done
        sleep 0.1
    done >> "$1"
}

run_one() {     # run_one TRACE METHOD -> one table row
    local trace=$1 m=$2 out res q h counts
    for r in 0 1 2 3; do
        curl -s -X POST "127.0.0.1:$((base + r))/mock/reset" >/dev/null
    done
    : > "$dir/inflight"
    sample "$dir/inflight" & sampler_pid=$!
    out=$(TRACE=$trace SLO_MS=$slo wrk -t1 -c"$conns" -d"${secs}s" \
          -s "$root/bench/balance.lua" "http://127.0.0.1:$(port_of "$m")/")
    kill "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
    res=$(echo "$out" | awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7}')
    q=$(stats_sum prefix_cache_queries_total)
    h=$(stats_sum prefix_cache_hits_total)
    counts=$(for r in 0 1 2 3; do
        curl -s "127.0.0.1:$((base + r))/stats" \
            | sed -n 's/.*"requests_total":\([0-9]*\).*/\1/p'; done | paste -sd/)
    awk -v m="$m" -v q="$q" -v h="$h" -v c="$counts" -v res="$res" '
    { n[$1]++; s[$1] += $2; if ($2 > mx[$1]) mx[$1] = $2; tot += $2; cnt++ }
    END {
        split(res, r, " ")
        max = 0
        for (k in mx) if (mx[k] > max) max = mx[k]
        mean = cnt ? tot / cnt : 0
        printf "  %-12s %6d %4d %8.3f %8.1f %8.1f %9.1f %8.1f %6d %6.2f  %s\n",
            m, r[1], r[2], q ? h / q : 0, r[3], r[4], r[5], r[6], max, mean, c
    }' "$dir/inflight"
}

header() {
    printf '  %-12s %6s %4s %8s %8s %8s %9s %8s %6s %6s  %s\n' method \
        reqs errs hitrate p50_ms p90_ms "goodput" "req/s" maxinf meaninf \
        "requests per replica"
}

restart_nginx() {
    local pid
    if [ -f "$dir/logs/nginx.pid" ]; then
        pid=$(cat "$dir/logs/nginx.pid")
        kill -QUIT "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    "$nginx" -p "$dir" -c conf/nginx.conf
    wait_port "$(port_of prefix)"
}

write_conf
"$nginx" -t -q -p "$dir" -c conf/nginx.conf
start_mock normal

echo "bench-balance: 4 mock replicas (prefill ${prefill_us} us/uncached token," \
     "$blocks cache blocks of 16 tokens each), wrk 1 thread, $conns" \
     "connections, ${secs}s a run, goodput = req/s with latency <= ${slo} ms"

for scenario in shared nosharing zipf slow 429; do
    case $scenario in
        slow) start_mock slow; trace=shared
              echo "trace shared, replica r3 150 ms slower:" ;;
        429)  start_mock 429; trace=shared
              echo "trace shared, replica r3 answers 429 Retry-After: 2" \
                   "(proxy_next_upstream http_429):" ;;
        *)    trace=$scenario; echo "trace $scenario:" ;;
    esac
    # a fresh nginx per scenario: no cool-down or EWMA carried over (a
    # reload would keep the balancers' shared memory)
    restart_nginx
    header
    for m in $methods; do
        run_one "$trace" "$m" | tee -a "$dir/table.$scenario"
    done
done

# balancing overhead: zero-work mock (no prefill, no cache), small body,
# plain proxy_pass (A), gateway round robin (B), gateway llm_balance (C)
start_mock normal
printf '%s' '{"model":"mock","max_tokens":4,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' > "$dir/small.json"
rps() {
    WRK_BODY="$dir/small.json" wrk -t1 -c32 -d5s -s "$root/bench/post.lua" \
        -H "x-mock-ttft-ms: 0" "http://127.0.0.1:$1/v1/chat/completions" \
        | awk '/Requests\/sec/ {print $2}'
}
echo "overhead, zero-work mock, 3 rounds x 5 s alternating, 32 connections:"
a=0 b=0 c=0 d=0
for i in 1 2 3; do
    ra=$(rps $((base + 19))); rb=$(rps "$(port_of rr)")
    rc=$(rps "$(port_of least_tokens)"); rd=$(rps "$(port_of prefix)")
    printf '  round %d: plain %8.0f | gateway rr %8.0f | least_tokens %8.0f | prefix %8.0f req/s\n' \
        "$i" "$ra" "$rb" "$rc" "$rd"
    a=$(awk -v x=$a -v y=$ra 'BEGIN {print x + y}')
    b=$(awk -v x=$b -v y=$rb 'BEGIN {print x + y}')
    c=$(awk -v x=$c -v y=$rc 'BEGIN {print x + y}')
    d=$(awk -v x=$d -v y=$rd 'BEGIN {print x + y}')
done
awk -v a=$a -v b=$b -v c=$c -v d=$d 'BEGIN {
    printf "  least_tokens / gateway rr %.3f, prefix / gateway rr %.3f;" \
           " least_tokens / plain %.3f, prefix / plain %.3f\n",
           c / b, d / b, c / a, d / a }'
