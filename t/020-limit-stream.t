# Rate limits and streams: in-stream metering and the cut-off (a clean
# end in the API's shape), release of stream slots and token reservations
# when a client aborts; configurations nginx must refuse.

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
    }
    llm_limit_zone llm:1m;
_EOC_
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n");
    }
});

our $self = <<'_EOC_';
    location = /self-abort {
        internal;
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
        proxy_method POST;
        proxy_pass_request_body off;
        proxy_read_timeout 300ms;
        proxy_set_header Content-Type application/json;
        proxy_set_header Authorization "Bearer sk-one";
        proxy_set_header x-mock-itl-ms 1000;
        proxy_set_body '{"model":"m","stream":true,"max_tokens":900,"messages":[{"role":"user","content":"hi"}]}';
    }
    location = /self-stream {
        internal;
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
        proxy_method POST;
        proxy_pass_request_body off;
        proxy_set_header Content-Type application/json;
        proxy_set_header Authorization "Bearer sk-one";
        proxy_set_header x-mock-tokens 3;
        proxy_set_body '{"model":"m","stream":true,"max_tokens":900,"messages":[{"role":"user","content":"hi"}]}';
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: a stream over its token budget is cut off cleanly (OpenAI)
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization tpm=30 output_default=5 cutoff;
        proxy_pass http://mock;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"tell me a long story"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-one
x-mock-tokens: 60
x-mock-itl-ms: 5
--- error_code: 200
--- response_body_like eval
qr/\A(data: \{"id"[^\n]+\n\n){4,40}data: \{"error":\{"message":"Rate limit reached for tokens per min \(TPM\) during the stream: the answer was cut off\.","type":"tokens","param":null,"code":"rate_limit_exceeded"\}\}\n\ndata: \[DONE\]\n\n\z/
--- error_log eval
qr/\[error\] .*llm limit cut a chat stream off after \d+ output tokens: zone "llm" is out of tokens per min \(TPM\)/



=== TEST 2: without cutoff the stream runs to its end, metered into debt
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization tpm=30 output_default=5;
        proxy_pass http://mock;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"tell me a long story"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-one
x-mock-tokens: 60
--- error_code: 200
--- response_body_like eval
qr/(data: \{"id"[^\n]+\n\n){60}.*data: \[DONE\]\n\n\z/s
--- response_body_unlike: rate_limit_exceeded



=== TEST 3: an aborted stream gives back its stream slot and unused tokens
--- config eval
"$::self" . q{
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization streams=1 tpm=1000;
        proxy_pass http://mock;
    }
    location = /t {
        echo_location /self-abort;
        echo_sleep 0.2;
        echo_location /self-stream;
    }
}
--- request
GET /t
--- response_body_like eval
qr/\A(data: [^\n]+\n\n)+(data: [^\n]+\n\n)+data: \[DONE\]\n\n\z/
--- response_body_unlike: rate_limit_exceeded
--- error_log eval
qr/llm client closed the chat request after \d+ events/



=== TEST 4: llm_limit_zone needs name:size
--- http_config
    llm_limit_zone llm;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid zone "llm" in "llm_limit_zone", it must be "name:size" in .*nginx\.conf:\d+/



=== TEST 5: llm_limit_zone size too small
--- http_config
    llm_limit_zone llm:4k;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*llm_limit_zone "llm:4k" is too small, it must be at least \d+/



=== TEST 6: llm_limit_zone bad redis address and interval
--- http_config
    llm_limit_zone llm:1m sync=redis://127.0.0.1:notaport;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid redis address "redis:\/\/127\.0\.0\.1:notaport"/



=== TEST 7: llm_limit_zone sync_interval out of range
--- http_config
    llm_limit_zone llm:1m sync=redis://127.0.0.1:18479 sync_interval=1ms;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "sync_interval=1ms" in "llm_limit_zone", it must be a time from 10ms to 60s/



=== TEST 8: llm_limit with an unknown zone
--- config
    location /v1/ {
        llm_limit zone=nope key=$remote_addr rpm=1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*unknown llm_limit_zone "nope": declare it with "llm_limit_zone"/



=== TEST 9: llm_limit without a limit, with tpm and itpm, with a bad number
--- config
    location /v1/ {
        llm_limit zone=llm key=$remote_addr;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_limit" needs at least one of "rpm=", "tpm=", "itpm=", "otpm=", "streams="/



=== TEST 10: llm_limit tpm and itpm together
--- config
    location /v1/ {
        llm_limit zone=llm key=$remote_addr tpm=10 itpm=5;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_limit" takes "tpm=" or "itpm=" \/ "otpm=", not both/



=== TEST 11: llm_limit bad number and unknown parameter
--- config
    location /v1/ {
        llm_limit zone=llm key=$remote_addr rpm=0;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "rpm=0" in "llm_limit", it must be a number from 1 to 4294967295/



=== TEST 12: cutoff needs a token limit
--- config
    location /v1/ {
        llm_limit zone=llm key=$remote_addr rpm=5 cutoff;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"cutoff" in "llm_limit" needs "tpm=" or "otpm="/



=== TEST 13: llm_limit_status range, llm_limit_log_level and dry_run values
--- config
    location /v1/ {
        llm_limit_status 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_limit_status" directive .*must be between 400 and 599|value must be between 400 and 599/



=== TEST 14: llm_limit_log_level takes info, notice, warn or error
--- config
    location /v1/ {
        llm_limit_log_level debug;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "debug" in .*nginx\.conf:\d+/



=== TEST 15: every limit directive accepted, itpm / otpm split
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=100 itpm=1000 otpm=50 streams=4 per_model output_default=10;
        llm_limit_status 429;
        llm_limit_dry_run off;
        llm_limit_log_level notice;
        proxy_pass http://mock;
    }
--- request eval
[qq{POST /v1/chat/completions\n{"model":"m","max_tokens":40,"messages":[{"role":"user","content":"hi"}]}},
 qq{POST /v1/chat/completions\n{"model":"m","max_tokens":40,"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-one
x-mock-tokens: 40
--- error_code eval
[200, 429]
--- response_body_like eval
["chat.completion", 'Rate limit reached for m on output tokens per min \(OTPM\): Limit 50']
