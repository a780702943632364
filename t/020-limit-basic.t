# Rate limiting in shared memory: requests, tokens and concurrent streams
# per key (and model); 429 bodies and headers in both client APIs; the
# rate limit headers on every response; dry run, status, log level and
# $llm_limit_status; several limits that must all pass.

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
    llm_limit_zone llm:1m;
    log_format lim 'lim-log status=\$llm_limit_status outcome=\$llm_outcome code=\$status';
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers",
                          "Content-Type: application/json\n"
                          . "Authorization: Bearer sk-one\n");
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n[emerg]\n");
    }
});

# /self* make real (main) requests to this server from one client request,
# so that one request's error log holds a whole scenario
our $self = <<'_EOC_';
    location = /self {
        internal;
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
        proxy_method POST;
        proxy_pass_request_body off;
        proxy_set_header Content-Type application/json;
        proxy_set_header Authorization "Bearer sk-one";
        proxy_set_body '{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}';
    }
    location = /self-stream {
        internal;
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
        proxy_method POST;
        proxy_pass_request_body off;
        proxy_set_header Content-Type application/json;
        proxy_set_header Authorization "Bearer sk-one";
        proxy_set_header x-mock-itl-ms 30;
        proxy_set_header x-mock-tokens 10;
        proxy_set_body '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}';
    }
_EOC_

our $chat = '{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}';
our $msgs = '{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}';

run_tests();

__DATA__

=== TEST 1: rpm admits the limit, then 429 in OpenAI's shape with retry-after
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=2;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat"]
--- error_code eval
[200, 200, 429]
--- response_headers eval
["x-ratelimit-limit-requests: 2\nx-ratelimit-remaining-requests: 1",
 "x-ratelimit-limit-requests: 2\nx-ratelimit-remaining-requests: 0",
 "x-ratelimit-limit-requests: 2\nx-ratelimit-remaining-requests: 0\nretry-after: 30\nContent-Type: application/json"]
--- response_body_like eval
['"chat\.completion"', '"chat\.completion"',
 '\A\{"error":\{"message":"Rate limit reached on requests per min \(RPM\): Limit 2\. Please try again in 29\.\d+s\.","type":"requests","param":null,"code":"rate_limit_exceeded"\}\}\n\z']



=== TEST 2: the reset headers and retry-after-ms follow the bucket
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=2;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat"]
--- error_code eval
[200, 200, 429]
--- response_headers_like eval
["x-ratelimit-reset-requests: (29\\.\\d+s|30s)",
 "x-ratelimit-reset-requests: (59\\.\\d+s|1m0s)",
 "retry-after-ms: (29\\d\\d\\d|30000)\nx-ratelimit-reset-requests: (59\\.\\d+s|1m0s)"]



=== TEST 3: a different key has its own bucket
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_x_tenant rpm=1;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat"]
--- more_headers eval
["Content-Type: application/json\nx-tenant: a",
 "Content-Type: application/json\nx-tenant: b",
 "Content-Type: application/json\nx-tenant: a"]
--- error_code eval
[200, 200, 429]



=== TEST 4: an empty key is not limited
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_x_none rpm=1;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat"]
--- error_code eval
[200, 200]
--- raw_response_headers_unlike eval
["x-ratelimit", "x-ratelimit"]



=== TEST 5: Anthropic: rate_limit_error body and anthropic-ratelimit-* headers
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=1 tpm=1000;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/messages\n$::msgs", "POST /v1/messages\n$::msgs"]
--- error_code eval
[200, 429]
--- response_headers_like eval
["anthropic-ratelimit-requests-limit: 1\nanthropic-ratelimit-requests-remaining: 0\nanthropic-ratelimit-requests-reset: \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\nanthropic-ratelimit-tokens-limit: 1000",
 "retry-after: 60\nanthropic-ratelimit-requests-remaining: 0"]
--- response_body_like eval
['"type":"message"',
 '\A\{"type":"error","error":\{"type":"rate_limit_error","message":"Rate limit reached on requests per min \(RPM\): Limit 1\. Please try again in \d+(\.\d+)?s\."\}\}\n\z']



=== TEST 6: tokens are reserved (prompt + max_tokens) and settled to usage
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization tpm=1000;
        proxy_pass http://mock;
    }
--- request eval
[qq{POST /v1/chat/completions\n{"model":"m","max_tokens":600,"messages":[{"role":"user","content":"hi"}]}},
 qq{POST /v1/chat/completions\n{"model":"m","max_tokens":600,"messages":[{"role":"user","content":"hi"}]}},
 qq{POST /v1/chat/completions\n{"model":"m","max_tokens":990,"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-one
x-mock-tokens: 5
--- error_code eval
[200, 200, 429]
--- response_headers_like eval
["x-ratelimit-limit-tokens: 1000\nx-ratelimit-remaining-tokens: 39[0-9]",
 "x-ratelimit-remaining-tokens: 3[0-9][0-9]",
 "retry-after: [12]\nretry-after-ms: \\d{3,4}\nx-ratelimit-remaining-tokens: 9[0-9][0-9]"]
--- response_body_like eval
['"chat\.completion"', '"chat\.completion"',
 '"message":"Rate limit reached on tokens per min \(TPM\): Limit 1000\. Please try again in [^"]+","type":"tokens","param":null,"code":"rate_limit_exceeded"']



=== TEST 7: several limits must all pass; a rejection consumes none
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=10;
        llm_limit zone=llm key=$http_x_tenant rpm=1;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat"]
--- more_headers eval
["Content-Type: application/json\nAuthorization: k\nx-tenant: a",
 "Content-Type: application/json\nAuthorization: k\nx-tenant: a",
 "Content-Type: application/json\nAuthorization: k\nx-tenant: a",
 "Content-Type: application/json\nAuthorization: k\nx-tenant: b"]
--- error_code eval
[200, 429, 429, 200]
--- response_headers eval
["x-ratelimit-remaining-requests: 0",
 "x-ratelimit-remaining-requests: 0",
 "x-ratelimit-remaining-requests: 0",
 "x-ratelimit-remaining-requests: 0"]
--- no_error_log
[alert]



=== TEST 8: the first limit's remaining count is untouched by rejections
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_x_tenant rpm=1;
        llm_limit zone=llm key=$http_authorization rpm=10;
        proxy_pass http://mock;
    }
    location = /other {
        llm_gateway on;
        llm_api chat;
        llm_limit zone=llm key=$http_authorization rpm=10;
        proxy_pass http://mock/v1/chat/completions;
    }
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat", "POST /other\n$::chat"]
--- more_headers
Content-Type: application/json
Authorization: k
x-tenant: a
--- error_code eval
[200, 429, 429, 200]
--- response_headers eval
["", "", "", "x-ratelimit-remaining-requests: 8"]



=== TEST 9: a rejection is logged at llm_limit_log_level, without the key
--- config eval
"$::self" . q{
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=2;
        access_log logs/error.log lim;
        proxy_pass http://mock;
    }
    location = /t {
        echo_location /self;
        echo_location /self;
        echo_location /self;
    }
}
--- request
GET /t
--- log_level: info
--- response_body_like eval
qr/\A\{"id":[^\n]*"chat\.completion"[^\n]*\}\n?\{"id":[^\n]*\}\n?\{"error":\{"message":"Rate limit reached on requests per min \(RPM\): Limit 2\. Please try again in 29\.\d+s\.","type":"requests","param":null,"code":"rate_limit_exceeded"\}\}\n\z/
--- error_log eval
[qr/\[error\] .*llm limit rejected a chat request on requests per min \(RPM\) of zone "llm", key [0-9a-f]{12}, retry in 29\d{3} ms/,
 qr/lim-log status=PASSED outcome=complete/,
 qr/lim-log status=REJECTED outcome=rejected/]
--- no_error_log
sk-one
[alert]



=== TEST 10: dry run passes, logs at the level asked, says so in the variable
--- config eval
"$::self" . q{
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=1;
        llm_limit_dry_run on;
        llm_limit_log_level warn;
        access_log logs/error.log lim;
        proxy_pass http://mock;
    }
    location = /t {
        echo_location /self;
        echo_location /self;
    }
}
--- request
GET /t
--- response_body_like eval
qr/\A\{"id":[^\n]*\}\n?\{"id":[^\n]*\}\n?\z/
--- error_log eval
[qr/lim-log status=PASSED outcome=complete/,
 qr/\[warn\] .*llm limit would reject \(dry run\) on requests per min \(RPM\) of zone "llm"/,
 qr/lim-log status=REJECTED_DRY_RUN outcome=complete/]
--- no_error_log
[error]



=== TEST 11: llm_limit_status sets the rejection status; log level info
--- config eval
"$::self" . q{
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=1;
        llm_limit_status 503;
        llm_limit_log_level info;
        access_log logs/error.log lim;
        proxy_pass http://mock;
    }
    location = /t {
        echo_location /self;
        echo_location /self;
    }
}
--- request
GET /t
--- error_log eval
[qr/\[info\] .*llm limit rejected a chat request/,
 qr/lim-log status=REJECTED outcome=rejected code=503/]
--- no_error_log
[error]



=== TEST 12: streams: a second concurrent stream of the key is refused
--- config eval
"$::self" . q{
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization streams=1;
        proxy_pass http://mock;
    }
    location = /t {
        echo_location_async /self-stream;
        echo_sleep 0.05;
        echo_location_async /self-stream;
        echo_sleep 0.5;
        echo_location_async /self-stream;
    }
}
--- request
GET /t
--- response_body_like eval
qr/\A(data: [^\n]+\n\n)+data: \[DONE\]\n\n\{"error":\{"message":"Rate limit reached for concurrent streams: Limit 1\. Please try again when a stream has finished\.","type":"requests",[^\n]+\n(data: [^\n]+\n\n)+data: \[DONE\]\n\n\z/



=== TEST 13: per_model: each model of a key has its own bucket
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=1 per_model;
        proxy_pass http://mock;
    }
--- request eval
[qq{POST /v1/chat/completions\n{"model":"a","messages":[{"role":"user","content":"x"}]}},
 qq{POST /v1/chat/completions\n{"model":"b","messages":[{"role":"user","content":"x"}]}},
 qq{POST /v1/chat/completions\n{"model":"a","messages":[{"role":"user","content":"x"}]}}]
--- error_code eval
[200, 200, 429]
--- response_body_like eval
["chat", "chat", 'Rate limit reached for a on requests per min']



=== TEST 14: non-LLM requests of a limited location pass without headers
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=1;
        proxy_pass http://mock;
    }
--- request eval
["GET /v1/models", "GET /v1/models"]
--- error_code eval
[200, 200]
--- raw_response_headers_unlike eval
["x-ratelimit", "x-ratelimit"]
