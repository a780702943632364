# bench/lib.sh: what the bench scripts share. Source it, then call
# bench_init first:
#
#   . "$root/bench/lib.sh"
#   bench_init NAME ROOT NGINX      # BENCH_DIR, BENCH_MODULE, EXIT trap
#   mock_start --listen 127.0.0.1:P,name=a ...    # waits for every port
#   nginx_conf DIR WORKERS <<EOC    # the inside of http{}
#   ...
#   EOC
#   nginx_start DIR PORT...         # waits for the ports
#   wrk_post PORT BODY SECS CONNS   # "req/s p99_ms requests non2xx"
#   ab_rounds ROUNDS a=CMD b=CMD    # A/B(/C...) alternation, means in AB_MEAN
#   callgrind_nginx DIR PORT FN N   # instructions of one nginx process over
#                                   # N calls of FN: CG_IR, CG_DUMP
#   callgrind_sum DUMP yes|no REGEX # instructions of the functions matching
#
# Everything started here is stopped by its own PID (never by name) when
# the script exits. Figures, not tests: the machine has shared cores.

BENCH_NAME=bench
bench_mock_pid=
bench_nginx_pids=()
bench_exit_cmds=()

bench_die() {
    echo "$BENCH_NAME: $*" >&2
    exit 1
}

# bench_init NAME ROOT NGINX: the defaults every script takes from the
# environment: BENCH_DIR (configs, logs, temp files; default
# ROOT/build/bench/NAME) and BENCH_MODULE (the .so to load)
bench_init() {
    BENCH_NAME=$1 BENCH_ROOT=$2 BENCH_NGINX=$3
    BENCH_DIR=${BENCH_DIR:-$BENCH_ROOT/build/bench/$1}
    BENCH_MODULE=${BENCH_MODULE:-$BENCH_ROOT/build/ngx_http_llm_module.so}
    [ -f "$BENCH_MODULE" ] || bench_die "no module at $BENCH_MODULE (make module)"
    [ -x "$BENCH_ROOT/mock/llm-mock" ] || bench_die "no mock (make mock)"
    mkdir -p "$BENCH_DIR"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# bench_on_exit CMD: also run CMD (eval'ed) when the script exits
bench_on_exit() {
    bench_exit_cmds+=("$1")
}

bench_cleanup() {
    local c p
    for c in "${bench_exit_cmds[@]}"; do eval "$c" || true; done
    for p in "${bench_nginx_pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    mock_stop
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most)
wait_port() {
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    bench_die "nothing listens on 127.0.0.1:$1"
}

# mock_start ARGS...: the mock LLM server with ARGS (--quiet added), one
# at a time (a running one is stopped first); waits for every --listen
# port given as HOST:PORT
mock_start() {
    local a prev= ports=()
    mock_stop
    for a in "$@"; do
        if [ "$prev" = --listen ]; then
            a=${a%%,*}
            ports+=("${a##*:}")
        fi
        prev=$a
    done
    "$BENCH_ROOT/mock/llm-mock" "$@" --quiet &
    bench_mock_pid=$!
    for a in "${ports[@]}"; do wait_port "$a"; done
}

mock_stop() {
    [ -n "$bench_mock_pid" ] || return 0
    kill "$bench_mock_pid" 2>/dev/null || true
    wait "$bench_mock_pid" 2>/dev/null || true
    bench_mock_pid=
}

# nginx_conf DIR [WORKERS [EVENTS]]: DIR/conf/nginx.conf loading the
# module, pid, logs and temp paths under DIR; stdin is the inside of
# http{}. EVENTS: extra directives for events{}.
nginx_conf() {
    local dir=$1 workers=${2:-1} t
    mkdir -p "$dir/conf" "$dir/logs"
    {
        echo "load_module $BENCH_MODULE;"
        echo "worker_processes $workers;"
        echo "error_log logs/error.log warn;"
        echo "pid logs/nginx.pid;"
        echo "events { worker_connections 4096; ${3:-} }"
        echo "http {"
        echo "    access_log off;"
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path ${t}_temp;"
        done
        cat
        echo "}"
    } > "$dir/conf/nginx.conf"
}

# nginx_start DIR PORT...: runs DIR/conf/nginx.conf, waits for its PORTs
nginx_start() {
    local dir=$1 p _
    shift
    rm -f "$dir/logs/nginx.pid"
    "$BENCH_NGINX" -p "$dir" -c conf/nginx.conf \
        || bench_die "nginx did not start: $dir/logs/error.log"
    for _ in $(seq 100); do
        [ -s "$dir/logs/nginx.pid" ] && break
        sleep 0.1
    done
    [ -s "$dir/logs/nginx.pid" ] || bench_die "no pid file in $dir/logs"
    bench_nginx_pids+=("$(cat "$dir/logs/nginx.pid")")
    for p in "$@"; do wait_port "$p"; done
}

# nginx_stop DIR: graceful stop of the nginx started from DIR; returns
# when its master has gone
nginx_stop() {
    local pid i keep=()
    [ -s "$1/logs/nginx.pid" ] || return 0
    pid=$(cat "$1/logs/nginx.pid")
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    for i in "${bench_nginx_pids[@]}"; do
        [ "$i" = "$pid" ] || keep+=("$i")
    done
    bench_nginx_pids=("${keep[@]}")
}

# to_ms DURATION: wrk's "1.23ms" / "850.00us" / "1.02s" in ms
to_ms() {
    case $1 in
        *us) awk -v v="${1%us}" 'BEGIN {printf "%.2f", v / 1000}' ;;
        *ms) awk -v v="${1%ms}" 'BEGIN {printf "%.2f", v}' ;;
        *s)  awk -v v="${1%s}" 'BEGIN {printf "%.2f", v * 1000}' ;;
        *)   echo 0 ;;
    esac
}

# wrk_post PORT BODY SECS CONNS [THREADS [WRK ARGS...]]: POSTs the file
# BODY to /v1/chat/completions with bench/post.lua; prints
# "req/s p99_ms requests non2xx"; warns of non-2xx answers unless
# WRK_QUIET is set
wrk_post() {
    local port=$1 body=$2 secs=$3 conns=$4 threads=${5:-1} out
    shift 5 2>/dev/null || shift $#
    out=$(WRK_BODY=$body wrk -t"$threads" -c"$conns" -d"${secs}s" --latency \
          -s "$BENCH_ROOT/bench/post.lua" "$@" \
          "http://127.0.0.1:$port/v1/chat/completions") \
        || bench_die "wrk failed on port $port"
    echo "$out" | awk '
        /requests in/   { n = $1 }
        /Non-2xx/       { bad = $NF }
        /Requests\/sec/ { rps = $2 }
        $1 == "99%"     { p99 = $2 }
        END             { printf "%s %s %d %d\n", rps, p99, n, bad }' \
        | { read -r rps p99 n bad
            [ "$bad" = 0 ] || [ -n "${WRK_QUIET:-}" ] \
                || echo "$BENCH_NAME: $bad non-2xx answers on port $port" >&2
            echo "$rps $(to_ms "$p99") $n $bad"; }
}

# ab_rounds ROUNDS NAME=CMD...: ROUNDS rounds, each running every CMD in
# turn, odd rounds in order, even ones reversed (A B B A ...: a drift
# over the run hits every side alike). A CMD prints
# numbers, the first is the figure (req/s), a second one, when there, is
# shown as p99 ms. One line per round; then AB_MEAN[NAME] (and
# AB_MEAN[NAME.2] for the second number) hold the means over the rounds.
# AB_LABEL prefixes the lines.
declare -gA AB_MEAN
ab_rounds() {
    local rounds=$1 r i spec name line v1 v2 rest
    local -a order
    declare -A sum1 sum2 got1 got2
    shift
    for spec in "$@"; do sum1[${spec%%=*}]=0 sum2[${spec%%=*}]=0; done
    for r in $(seq "$rounds"); do
        # ABBA: even rounds run the sides in reverse order, so a drift of
        # the machine over a round does not favour the first side
        order=("$@")
        if [ $((r % 2)) = 0 ]; then
            order=()
            for ((i = $#; i >= 1; i--)); do order+=("${!i}"); done
        fi
        for spec in "${order[@]}"; do
            name=${spec%%=*}
            read -r v1 v2 rest < <(eval "${spec#*=}")
            [ -n "$v1" ] || bench_die "no figure from: ${spec#*=}"
            got1[$name]=$v1 got2[$name]=$v2
            sum1[$name]=$(awk -v x="${sum1[$name]}" -v y="$v1" 'BEGIN {print x + y}')
            if [ -n "$v2" ]; then
                sum2[$name]=$(awk -v x="${sum2[$name]}" -v y="$v2" 'BEGIN {print x + y}')
            fi
        done
        line=$(printf '  %sround %d%s:' "${AB_LABEL:+$AB_LABEL }" "$r" \
               "$([ $((r % 2)) = 0 ] && echo ' (reversed)')")
        for spec in "$@"; do
            name=${spec%%=*}
            if [ -n "${got2[$name]}" ]; then
                line+=$(printf ' %s %9.0f req/s p99 %7s ms |' "$name" "${got1[$name]}" "${got2[$name]}")
            else
                line+=$(printf ' %s %9.0f req/s |' "$name" "${got1[$name]}")
            fi
        done
        echo "${line% |}"
    done
    for spec in "$@"; do
        name=${spec%%=*}
        AB_MEAN[$name]=$(awk -v s="${sum1[$name]}" -v n="$rounds" 'BEGIN {print s / n}')
        AB_MEAN[$name.2]=$(awk -v s="${sum2[$name]}" -v n="$rounds" 'BEGIN {print s / n}')
    done
}


# callgrind_nginx DIR PORT FN N: nginx (DIR/conf/nginx.conf, already
# written) in one process under callgrind; FN (a shell function of the
# caller sending one request per call, its argument the call's number)
# runs 20 times to warm up, then N times between zeroing and dumping the
# counters. Sets CG_DUMP (the dump) and CG_IR (its total instructions).
callgrind_nginx() {
    local dir=$1 port=$2 fn=$3 n=$4 vpid i
    command -v valgrind > /dev/null || bench_die "no valgrind (make deps-bench)"
    sed -i '1i master_process off;\ndaemon off;' "$dir/conf/nginx.conf"
    rm -f "$dir"/callgrind.out.*
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.%p" \
        "$BENCH_NGINX" -p "$dir" -c conf/nginx.conf 2> "$dir/valgrind.log" &
    vpid=$!
    bench_on_exit "kill $vpid 2>/dev/null"
    wait_port "$port"
    for i in $(seq 20); do "$fn" "$i"; done
    callgrind_control -z "$vpid" > /dev/null
    for i in $(seq "$n"); do "$fn" "$i"; done
    callgrind_control -d "$vpid" > /dev/null
    kill "$vpid"
    wait "$vpid" 2> /dev/null || true
    CG_DUMP=$dir/callgrind.out.$vpid.1
    [ -f "$CG_DUMP" ] || bench_die "no callgrind dump $CG_DUMP"
    CG_IR=$(awk '/^summary:|^totals:/ {print $2; exit}' "$CG_DUMP")
}

# callgrind_sum DUMP INCLUSIVE REGEX: the instructions of the functions
# whose name matches REGEX (an awk regex), inclusive (yes) or own (no)
callgrind_sum() {
    callgrind_annotate --inclusive="$2" --threshold=100 "$1" 2> /dev/null \
        | awk -v re="$3" '$0 ~ "^ *[0-9,]+ \\([ 0-9.]+%\\)  [^ ]*:" re {
                              gsub(",", "", $1); s += $1 }
                          END {print s + 0}'
}
