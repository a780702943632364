# llm_retry: a stream that fails before its first token (error event, EOF,
# first token timeout) is tried again on the next server through nginx's
# next-upstream machinery; nothing is retried after a token reached the
# client; every server failing gives a 502 in the API's shape (or the
# operator's error_page); llm_retry off changes nothing; nginx -t rejects
# llm_retry without proxy_next_upstream non_idempotent. Two workers.
#
# A second mock process serves the faulty servers, one fault per instance
# (a request header would reach every server alike):
#   E  = base+3  sse-error before any token      E2 = base+4 the same
#   C  = base+5  closes after its first event (role / message_start)
#   H  = base+6  SSE header, then nothing
#   L  = base+7  closes after 2 tokens
#   S  = base+8  answers 503                X  = base+9 nothing listens

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);

repeat_each(1);
no_shuffle();
master_on();
workers(2);

our $base = $ENV{TEST_NGINX_MOCK_PORT};
our $B = $ENV{TEST_NGINX_MOCK_B};
our ($E, $E2, $C, $H, $L, $S, $X) = map { $base + $_ } 3 .. 9;

$ENV{TEST_NGINX_MOCK_E} = $E;
$ENV{TEST_NGINX_MOCK_E2} = $E2;
$ENV{TEST_NGINX_MOCK_C} = $C;
$ENV{TEST_NGINX_MOCK_H} = $H;
$ENV{TEST_NGINX_MOCK_L} = $L;
$ENV{TEST_NGINX_MOCK_S} = $S;
$ENV{TEST_NGINX_MOCK_X} = $X;

my $faulty_pid;
my $owner = $$;

sub start_faulty {
    for my $p ($E, $E2, $C, $H, $L, $S, $X) {
        die "061-retry.t: 127.0.0.1:$p is busy\n" if LLM::listening($p);
    }

    my @args = ("--listen", "127.0.0.1:$E,name=err,fault=sse-error",
                "--listen", "127.0.0.1:$E2,name=err2,fault=sse-error",
                "--listen", "127.0.0.1:$C,name=close,"
                            . "fault=close-mid-stream,fault_after=0",
                "--listen", "127.0.0.1:$H,name=hang,fault=hang-first-token",
                "--listen", "127.0.0.1:$L,name=late,"
                            . "fault=close-mid-stream,fault_after=2",
                "--listen", "127.0.0.1:$S,name=s503,status=503",
                "--ttft-ms", "5", "--itl-ms", "2", "--quiet");

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        exec "$ENV{TEST_NGINX_REPO}/mock/llm-mock", @args
            or POSIX::_exit(127);
    }

    $faulty_pid = $pid;

    for (1 .. 100) {
        return if LLM::listening($L);
        sleep 0.05;
    }

    die "061-retry.t: the faulty mock did not listen\n";
}

start_faulty();

END {
    local $?;

    if ($faulty_pid && $$ == $owner) {
        kill 'TERM', $faulty_pid;
        waitpid $faulty_pid, 0;
    }
}

# what the healthy mock "b" answers to this body, asked directly
# (HTTP/1.0, close-delimited): the stream the client must get, byte for byte
sub direct {
    my ($path, $body) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$B", Timeout => 5)
        or die "direct: $!";

    print $s "POST $path HTTP/1.0\r\nHost: b\r\n"
             . "Content-Type: application/json\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";

    local $/;
    my $resp = <$s>;
    close $s;

    $resp =~ s/\A.*?\r\n\r\n//s;
    return $resp;
}

our $chat = '{"model":"m","stream":true,"max_tokens":4,'
            . '"stream_options":{"include_usage":true},'
            . '"messages":[{"role":"user","content":"retry me"}]}';
our $chat_plain = '{"model":"m","stream":true,"max_tokens":4,'
                  . '"messages":[{"role":"user","content":"retry me"}]}';
our $msgs = '{"model":"claude","stream":true,"max_tokens":4,'
            . '"messages":[{"role":"user","content":"retry me"}]}';

our $http_config = <<'_EOC_';
    upstream err_ok {
        server 127.0.0.1:$TEST_NGINX_MOCK_E max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
    upstream close_ok {
        server 127.0.0.1:$TEST_NGINX_MOCK_C max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
    upstream hang_ok {
        server 127.0.0.1:$TEST_NGINX_MOCK_H max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
    upstream late_ok {
        server 127.0.0.1:$TEST_NGINX_MOCK_L max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
    upstream ok_only {
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
    upstream s503_ok {
        server 127.0.0.1:$TEST_NGINX_MOCK_S max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
    upstream refused_ok {
        server 127.0.0.1:$TEST_NGINX_MOCK_X max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
    upstream err_refused_ok {
        server 127.0.0.1:$TEST_NGINX_MOCK_E max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_X max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
    upstream err_err {
        server 127.0.0.1:$TEST_NGINX_MOCK_E max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_E2 max_fails=0;
    }
    log_format retry 'retry-log retries=$llm_retries '
                     'upstream=$upstream_addr status=$upstream_status '
                     'outcome=$llm_outcome usage=$llm_usage_source '
                     'completion=$llm_completion_tokens events=$llm_events '
                     'ttft=$llm_ttft';
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $http_config);
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "Content-Type: application/json\n");
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n");
    }
});

# promtool on every metrics answer
LLM::promtool_metrics();

run_tests();

__DATA__

=== TEST 1: an error event before the first token: the next server
answers, the client gets its stream byte for byte, $llm_retries is 1
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        add_header X-Peer $upstream_addr always;
        access_log logs/error.log retry;
        proxy_pass http://err_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers eval
"Content-Type: text/event-stream\nx-mock-instance: b\nX-Retries: 1\n"
. "X-Peer: 127.0.0.1:$::E, 127.0.0.1:$::B"
--- response_body eval
main::direct("/v1/chat/completions", $::chat)
--- error_log eval
[qr/\[warn\] .*llm retry: error_event from 127\.0\.0\.1:\d+, trying next \(try 2 of 2\)/,
 qr/retry-log retries=1 upstream=127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ status=502, 200 outcome=complete usage=upstream completion=4 /]



=== TEST 2: EOF after the first event but before any token (chunked
upstream): retried
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        proxy_pass http://close_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers
x-mock-instance: b
X-Retries: 1
--- response_body eval
main::direct("/v1/chat/completions", $::chat)
--- error_log eval
qr/llm retry: eof from 127\.0\.0\.1:\d+, trying next \(try 2 of 2\)/



=== TEST 3: no token within llm_first_token_timeout: retried long before
proxy_read_timeout; the TTFT runs from the request start, the failed try
included
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        llm_first_token_timeout 300ms;
        proxy_read_timeout 10s;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        access_log logs/error.log retry;
        proxy_pass http://hang_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- timeout: 3
--- error_code: 200
--- response_headers
x-mock-instance: b
X-Retries: 1
--- response_body eval
main::direct("/v1/chat/completions", $::chat)
--- error_log eval
[qr/llm retry: no token from 127\.0\.0\.1:\d+ within llm_first_token_timeout 300 ms/,
 qr/llm retry: first_token_timeout from 127\.0\.0\.1:\d+, trying next \(try 2 of 2\)/,
 qr/retry-log retries=1 .* status=504, 200 outcome=complete usage=upstream completion=4 events=\d+ ttft=0\.[3-9]\d\d$/]



=== TEST 4: a failure after the first token is not retried: the client
stream ends with the API's error event, as without llm_retry
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://late_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers
x-mock-instance: late
--- response_body_like eval
qr/\Adata: \{[^\n]*"role":"assistant"[^\n]*\n\n(data: \{[^\n]*"content":"[^"]+"[^\n]*\n\n){2}data: \{"error":\{[^\n]*"code":"upstream_incomplete"\}\}\n\ndata: \[DONE\]\n\n\z/s
--- no_error_log eval
[qr/\[(warn|info|error)\].*llm retry:/, "[alert]"]



=== TEST 5: every server fails before its first token: 502 in the OpenAI
error shape, the give-up logged
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        access_log logs/error.log retry;
        proxy_pass http://err_err;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 502
--- response_headers
Content-Type: application/json
X-Retries: 1
--- response_body_like eval
qr/\A\{"error":\{"message":"[^"]+","type":"server_error","param":null,"code":"upstream_unavailable"\}\}\n?\z/
--- error_log eval
[qr/llm retry: error_event from 127\.0\.0\.1:\d+, trying next \(try 2 of 2\)/,
 qr/\[warn\] .*llm retry: error_event from 127\.0\.0\.1:\d+, giving up after 2 tries/,
 qr/retry-log retries=1 upstream=127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ status=502, 502 outcome=error /]



=== TEST 6: every server failing, an error_page 502 of the operator takes
over
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        error_page 502 = @fallback;
        proxy_pass http://err_err;
    }
    location @fallback {
        return 503 "fallback\n";
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 503
--- response_body
fallback
--- error_log
giving up after 2 tries



=== TEST 7: proxy_next_upstream_tries 1 bounds the retries: the first
failure gives up
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_next_upstream_tries 1;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        proxy_pass http://err_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 502
--- response_headers
X-Retries: 0
--- response_body_like: "code":"upstream_unavailable"
--- error_log eval
qr/llm retry: error_event from 127\.0\.0\.1:\d+, giving up after 1 try\b/
--- no_error_log
trying next
[alert]



=== TEST 8: llm_retry off: nothing held, the error event reaches the
client in a 200 stream, as before
--- config
    location /v1/ {
        llm_gateway on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        proxy_pass http://err_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers
x-mock-instance: err
X-Retries: 0
--- response_body_like eval
qr/\Adata: \{"error":\{"message":"mock: injected stream error"[^\n]*\}\}\n\n/
--- no_error_log eval
[qr/\[(warn|info|error)\].*llm retry:/, "[alert]"]



=== TEST 9: proxy_next_upstream without invalid_header: a warning at
start, and an error event passes to the client unchanged
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://err_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers
x-mock-instance: err
--- response_body_like eval
qr/\Adata: \{"error":\{"message":"mock: injected stream error"/
--- error_log eval
qr/\[warn\] .*"proxy_next_upstream" of location "\/v1\/" lacks invalid_header \(error events\): "llm_retry on" does not retry these failures in .*nginx\.conf:\d+/



=== TEST 10: nginx -t rejects llm_retry without non_idempotent, pointing
at the llm_retry line
--- config
    llm_retry on;
    location /v1/ {
        llm_gateway on;
        proxy_next_upstream error timeout invalid_header;
        proxy_pass http://err_ok;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_retry on" needs "non_idempotent" in "proxy_next_upstream" of location "\/v1\/": nginx never sends a POST to the next server without it in .*nginx\.conf:\d+/



=== TEST 11: llm_first_token_timeout takes a time
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        llm_first_token_timeout soon;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_pass http://err_ok;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_first_token_timeout" directive invalid value in .*nginx\.conf:\d+/



=== TEST 12: non-streaming requests are neither held nor retried: JSON
from a healthy server, and the SSE error a faulty one sends even to them
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        proxy_pass http://$arg_pool;
    }
--- request eval
["POST /v1/chat/completions?pool=ok_only\n"
 . '{"model":"m","max_tokens":4,"messages":[{"role":"user","content":"j"}]}',
 "POST /v1/chat/completions?pool=err_ok\n"
 . '{"model":"m","max_tokens":4,"messages":[{"role":"user","content":"j"}]}']
--- error_code eval
[200, 200]
--- response_headers eval
["Content-Type: application/json\nx-mock-instance: b\nX-Retries: 0",
 "Content-Type: text/event-stream\nx-mock-instance: err\nX-Retries: 0"]
--- response_body_like eval
[qr/\A\{"id":"[^"]+","object":"chat\.completion",/,
 qr/\Adata: \{"error":\{"message":"mock: injected stream error"/]
--- no_error_log eval
[qr/\[(warn|info|error)\].*llm retry:/, "[alert]"]



=== TEST 13: an Anthropic stream (close-delimited HTTP/1.0 upstream):
error event retried, the Messages stream arrives byte for byte
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        add_header X-Retries $llm_retries always;
        proxy_pass http://err_ok;
    }
--- request eval
"POST /v1/messages\n$::msgs"
--- error_code: 200
--- response_headers
x-mock-instance: b
X-Retries: 1
--- response_body eval
main::direct("/v1/messages", $::msgs)
--- error_log eval
qr/llm retry: error_event from 127\.0\.0\.1:\d+, trying next/



=== TEST 14: Anthropic, every server failing: 502 in the Anthropic shape
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_pass http://err_err;
    }
--- request eval
"POST /v1/messages\n$::msgs"
--- error_code: 502
--- response_body_like eval
qr/\A\{"type":"error","error":\{"type":"api_error","message":"[^"]+"\}\}\n?\z/
--- error_log
giving up after 2 tries



=== TEST 15: the usage chunk the gateway asked for is still stripped after
a retry, and the retry reaches /metrics (promtool-clean)
--- http_config eval
$::http_config . "    llm_metrics_zone retry061:1m;\n"
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        llm_first_token_timeout 1s;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://$arg_pool;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
["POST /v1/chat/completions?pool=err_ok\n$::chat_plain",
 "POST /v1/chat/completions?pool=close_ok\n$::chat_plain",
 "POST /v1/chat/completions?pool=hang_ok\n$::chat_plain",
 "GET /metrics"]
--- more_headers
Content-Type: application/json
--- timeout: 6
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/\A(data: \{[^\n]*"chat\.completion\.chunk"[^\n]*\}\n\n){6}data: \[DONE\]\n\n\z/s,
 qr/\A(data: \{[^\n]*"chat\.completion\.chunk"[^\n]*\}\n\n){6}data: \[DONE\]\n\n\z/s,
 qr/\A(data: \{[^\n]*"chat\.completion\.chunk"[^\n]*\}\n\n){6}data: \[DONE\]\n\n\z/s,
 qr/llm_upstream_retries_total\{model="m",reason="error_event"\} 1\nllm_upstream_retries_total\{model="m",reason="eof"\} 1\nllm_upstream_retries_total\{model="m",reason="first_token_timeout"\} 1\n/]



=== TEST 16: nginx -t rejects llm_retry with proxy_request_buffering off
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_request_buffering off;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_pass http://err_ok;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_retry on" cannot retry with "proxy_request_buffering off" in location "\/v1\/" in .*nginx\.conf:\d+/



=== TEST 17: with llm_balance: the failed try counts for max_fails through
nginx's own next-upstream path, the balancer's charges are all released
--- http_config eval
$::http_config . <<"_EOC_";
    llm_metrics_zone retry061:1m;
    upstream bal {
        llm_balance least_tokens;
        server 127.0.0.1:$::E max_fails=5 fail_timeout=60s;
        server 127.0.0.1:$::B;
    }
_EOC_
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Peer $llm_upstream_peer always;
        proxy_pass http://bal;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
["POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat",
 "GET /metrics"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
[("x-mock-instance: b\nX-Peer: 127.0.0.1:$::B") x 4, ""]
--- response_body_like eval
[(qr/data: \[DONE\]\n\n\z/) x 4,
 qr/llm_upstream_retries_total\{model="m",reason="error_event"\} [1-4]\n.*llm_balancer_outstanding_tokens\{upstream="bal",peer="127\.0\.0\.1:$::E"\} 0\nllm_balancer_outstanding_tokens\{upstream="bal",peer="127\.0\.0\.1:$::B"\} 0\n.*llm_balancer_inflight\{upstream="bal",peer="127\.0\.0\.1:$::E"\} 0\nllm_balancer_inflight\{upstream="bal",peer="127\.0\.0\.1:$::B"\} 0\n/s]



=== TEST 18: proxy_next_upstream with non_idempotent alone: a warning
naming the three missing failures; a closed stream then gives up at once
(502 in the API's shape) instead of trying the next server
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://close_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 502
--- response_body_like: "code":"upstream_unavailable"
--- error_log eval
[qr/\[warn\] .*"proxy_next_upstream" of location "\/v1\/" lacks error \(closed streams\) timeout \(first token timeouts\) invalid_header \(error events\): "llm_retry on" does not retry these failures in .*nginx\.conf:\d+/,
 qr/llm retry: eof from 127\.0\.0\.1:\d+, giving up after 1 try\b/]



=== TEST 19: the other reasons: a 503 retried by proxy_next_upstream
http_503 counts as "status", a refused connection as "error"; both in
$llm_retries and in the metric
--- http_config eval
$::http_config . "    llm_metrics_zone retry061:1m;\n"
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header http_503
                            non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        proxy_pass http://$arg_pool;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
["POST /v1/chat/completions?pool=s503_ok\n$::chat",
 "POST /v1/chat/completions?pool=refused_ok\n$::chat",
 "GET /metrics"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["x-mock-instance: b\nX-Retries: 1", "x-mock-instance: b\nX-Retries: 1", ""]
--- response_body_like eval
[qr/data: \[DONE\]\n\n\z/, qr/data: \[DONE\]\n\n\z/,
 qr/llm_upstream_retries_total\{model="m",reason="status"\} 1\nllm_upstream_retries_total\{model="m",reason="error"\} 1\n/]



=== TEST 20: the retry of a 503 is logged like the others
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header http_503
                            non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://s503_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers
x-mock-instance: b
--- error_log eval
qr/\[warn\] .*llm retry: status from 127\.0\.0\.1:\d+, trying next \(try 2 of 2\)/



=== TEST 21: an error event, then a refused connection, then an answer:
both retries count (the refusal is logged by nginx: the request never
reached that server)
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Retries $llm_retries always;
        add_header X-Peer $upstream_addr always;
        proxy_pass http://err_refused_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers eval
"x-mock-instance: b\nX-Retries: 2\n"
. "X-Peer: 127.0.0.1:$::E, 127.0.0.1:$::X, 127.0.0.1:$::B"
--- response_body eval
main::direct("/v1/chat/completions", $::chat)
--- error_log eval
[qr/llm retry: error_event from 127\.0\.0\.1:$::E, trying next \(try 2 of 3\)/,
 qr/connect\(\) failed \(111: Connection refused\) while connecting to upstream/]



=== TEST 22: Anthropic, close-delimited (HTTP/1.0) upstream closing after
message_start: retried, the stream arrives byte for byte
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        add_header X-Retries $llm_retries always;
        proxy_pass http://close_ok;
    }
--- request eval
"POST /v1/messages\n$::msgs"
--- error_code: 200
--- response_headers
x-mock-instance: b
X-Retries: 1
--- response_body eval
main::direct("/v1/messages", $::msgs)
--- error_log eval
qr/llm retry: eof from 127\.0\.0\.1:\d+, trying next \(try 2 of 2\)/



=== TEST 23: an error event not retried (no invalid_header) still counts
for max_fails with llm_balance: nginx saw a 200
--- http_config eval
$::http_config . <<"_EOC_";
    upstream bal1 {
        llm_balance least_tokens;
        server 127.0.0.1:$::E max_fails=1 fail_timeout=60s;
        server 127.0.0.1:$::B;
    }
_EOC_
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://bal1;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers
x-mock-instance: err
--- response_body_like eval
qr/\Adata: \{"error":\{"message":"mock: injected stream error"/
--- error_log eval
qr/\[warn\] .*llm balance: 127\.0\.0\.1:$::E failed before the first token \(1 of max_fails=1\)/



=== TEST 24: retries exhausted in the primary group, then llm_fallback:
the next group answers the stream (a retry inside the hop too), one
access-log line tells both
--- config
    location /v1/ {
        llm_gateway on;
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        llm_fallback @fb model=m-fb;
        access_log logs/error.log retry;
        proxy_pass http://err_err;
    }
    location @fb {
        llm_retry on;
        proxy_next_upstream error timeout invalid_header non_idempotent;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Tier $llm_tier always;
        access_log logs/error.log retry;
        add_header X-Peer $upstream_addr always;
        proxy_pass http://err_ok;
    }
--- request eval
"POST /v1/chat/completions\n$::chat"
--- error_code: 200
--- response_headers eval
"Content-Type: text/event-stream\nx-mock-instance: b\nX-Tier: fallback\n"
. "X-Peer: 127.0.0.1:$::E, 127.0.0.1:$::E2 : 127.0.0.1:$::E, 127.0.0.1:$::B"
--- response_body_like eval
qr/\Adata: \{.*"model":"m-fb".*\n\ndata: \[DONE\]\n\n\z/s
--- error_log eval
[qr/llm retry: error_event from 127\.0\.0\.1:\d+, giving up after 2 tries/,
 qr/llm fallback: upstream group failed \(502\), trying \@fb \(hop 1\)/,
 qr/llm retry: error_event from 127\.0\.0\.1:$::E, trying next \(try 2 of 2\)/,
 qr/retry-log retries=2 upstream=127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ : 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ status=502, 502 : 502, 200 outcome=complete usage=upstream completion=4 /]
