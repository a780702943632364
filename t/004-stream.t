# SSE passthrough: events reach the client as they arrive whatever
# proxy_buffering says; the gateway watches them for TTFT, usage and the
# terminator; the usage chunk it asked for is removed again; a client that
# hangs up cancels the upstream request and partial usage is accounted.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    upstream mock {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
        keepalive 8;
    }
    log_format llm 'llm-log api=\$llm_api stream=\$llm_stream '
                   'prompt=\$llm_prompt_tokens cached=\$llm_cached_tokens '
                   'completion=\$llm_completion_tokens '
                   'usage=\$llm_usage_source outcome=\$llm_outcome '
                   'events=\$llm_events ttft=\$llm_ttft time=\$llm_time';
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        llm_gateway on;
        access_log logs/error.log llm;
        proxy_pass http://mock;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering on;
    }
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: an OpenAI stream arrives whole; usage was asked upstream and
the usage chunk the client did not ask for is stripped
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"count to three"}]}
--- more_headers
Content-Type: application/json
x-mock-tokens: 3
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- response_body_like eval
qr/\A(data: \{[^\n]*"chat\.completion\.chunk"[^\n]*\}\n\n){5}data: \[DONE\]\n\n\z/s
--- response_body_unlike: "usage"
--- error_log eval
qr/llm-log api=chat stream=1 prompt=\d+ cached=\d+ completion=3 usage=upstream outcome=complete events=7 ttft=\d+\.\d{3} /



=== TEST 2: a client that asked for usage gets its usage chunk
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"count"}]}
--- more_headers
Content-Type: application/json
x-mock-tokens: 3
--- error_code: 200
--- response_body_like eval
qr/data: \{[^\n]*"choices":\s*\[\][^\n]*"usage":[^\n]*\}\n\ndata: \[DONE\]\n\n\z/s
--- error_log eval
qr/llm-log api=chat stream=1 .* completion=3 usage=upstream outcome=complete/



=== TEST 3: stream_options without include_usage is rewritten, not doubled
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://mock;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}]}
--- more_headers
Content-Type: application/json
x-mock-echo: 1
--- error_code: 200
--- response_body chomp
{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}



=== TEST 4: the forwarded body gets stream_options with a correct length
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://mock;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}
--- more_headers
Content-Type: application/json
x-mock-echo: 1
--- error_code: 200
--- response_headers
x-mock-body-bytes: 110
--- response_body chomp
{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}



=== TEST 5: llm_stream_usage off forwards the body untouched
--- config
    location /v1/ {
        llm_gateway on;
        llm_stream_usage off;
        proxy_pass http://mock;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}
--- more_headers
Content-Type: application/json
x-mock-echo: 1
--- error_code: 200
--- response_body chomp
{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}



=== TEST 6: events are not held back although proxy_buffering is on: the
first token arrives long before the slow rest of the stream
--- request
POST /v1/chat/completions HTTP/1.0
{"model":"m","stream":true,"messages":[{"role":"user","content":"slow"}]}
--- more_headers
Content-Type: application/json
x-mock-ttft-ms: 0
x-mock-itl-ms: 3000
x-mock-tokens: 3
--- timeout: 1
--- abort
--- response_body_like eval
qr/\Adata: \{[^\n]*"content"[^\n]*\}\n\n/s
--- response_body_unlike: DONE



=== TEST 7: a client hanging up mid-stream cancels upstream; partial usage
is accounted as estimated
--- request
POST /v1/chat/completions HTTP/1.0
{"model":"m","stream":true,"messages":[{"role":"user","content":"tell me a long story"}]}
--- more_headers
Content-Type: application/json
x-mock-ttft-ms: 0
x-mock-itl-ms: 1500
x-mock-tokens: 5
--- timeout: 1
--- abort
--- ignore_response
--- wait: 0.5
--- error_log eval
[qr/llm client closed the chat request after \d+ events, upstream request cancelled, usage estimated/,
 qr/llm-log api=chat stream=1 prompt=\d+ cached=\d+ completion=[1-9]\d* usage=estimated outcome=aborted/]



=== TEST 8: a client hanging up before a non-streamed answer cancels it too
--- request
POST /v1/chat/completions HTTP/1.0
{"model":"m","messages":[{"role":"user","content":"think hard"}]}
--- more_headers
Content-Type: application/json
x-mock-ttft-ms: 5000
--- timeout: 0.5
--- abort
--- ignore_response
--- wait: 0.5
--- error_log eval
qr/llm-log api=chat stream=0 .* outcome=aborted/



=== TEST 8b: the mock saw both hung-up requests cancelled (the upstream
connection was closed, not left to run)
--- config
    location = /stats {
        proxy_pass http://mock/stats;
    }
--- request
GET /stats
--- error_code: 200
--- response_body_like: "cancelled_total":[2-9]



=== TEST 9: Anthropic stream: usage from message_start and message_delta,
the stream is passed unchanged
--- request
POST /v1/messages
{"model":"claude-sonnet-4-5","max_tokens":4,"stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-mock-tokens: 4
--- error_code: 200
--- response_body_like eval
qr/\Aevent: message_start\ndata: .*event: content_block_delta\n.*event: message_delta\ndata: [^\n]*"output_tokens":\s*4.*event: message_stop\ndata: [^\n]*\n\n\z/s
--- error_log eval
qr/llm-log api=messages stream=1 prompt=[1-9]\d* cached=0 completion=4 usage=upstream outcome=complete/



=== TEST 10: upstream closing mid-stream: the client stream is closed
cleanly with an error event; usage estimated, outcome incomplete
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}
--- more_headers
Content-Type: application/json
x-mock-fault: close-mid-stream
x-mock-fault-after: 2
x-mock-tokens: 10
--- error_code: 200
--- response_body_like eval
qr/\A(data: \{[^\n]*"chat\.completion\.chunk"[^\n]*\}\n\n){3}data: \{"error":\{[^\n]*"code":"upstream_incomplete"\}\}\n\ndata: \[DONE\]\n\n\z/s
--- error_log eval
[qr/llm upstream stream ended without its terminator after \d+ events, the client stream was closed with an error event/,
 qr/llm-log api=chat stream=1 prompt=\d+ cached=\d+ completion=[1-9]\d* usage=estimated outcome=incomplete/]



=== TEST 11: the same for an Anthropic stream
--- request
POST /v1/messages
{"model":"claude","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x"}]}
--- more_headers
Content-Type: application/json
x-mock-fault: close-mid-stream
x-mock-fault-after: 2
x-mock-tokens: 10
--- error_code: 200
--- response_body_like eval
qr/\Aevent: message_start\n.*event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"[^"]+"\}\}\n\n\z/s
--- error_log eval
qr/llm-log api=messages stream=1 .* usage=estimated outcome=incomplete/



=== TEST 12: an error event after 200 headers is passed and marks the
outcome as error
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}
--- more_headers
Content-Type: application/json
x-mock-fault: sse-error
--- error_code: 200
--- response_body_like: "error"
--- error_log eval
[qr/llm upstream sent an error event after \d+ events/,
 qr/llm-log api=chat stream=1 .* outcome=error/]



=== TEST 13: TTFT is measured at the first content event, not at headers
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}
--- more_headers
Content-Type: application/json
x-mock-ttft-ms: 400
x-mock-tokens: 2
--- error_code: 200
--- error_log eval
qr/llm-log api=chat .* ttft=0\.(4\d\d|[5-9]\d\d) /
