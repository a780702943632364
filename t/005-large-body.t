# Large bodies are normal (a 200K-token context is ~800 KB): bodies kept in
# memory and bodies nginx spooled to a temporary file are both inspected and
# forwarded intact.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();

our $Big = '{"model":"m","messages":[{"role":"user","content":"'
           . ("The quick brown fox jumps over the lazy dog. " x 18000)
           . '"}]}';

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    log_format llm 'llm-log estimate=$llm_prompt_tokens_estimate '
                   'usage=$llm_usage_source outcome=$llm_outcome';
_EOC_
    }

    $block->set_value("more_headers", "Content-Type: application/json\n"
                      . ($block->more_headers // ""));
});

run_tests();

__DATA__

=== TEST 1: an 810 KB body spooled to a temporary file is inspected
--- config
    location /v1/ {
        client_max_body_size 16m;
        client_body_buffer_size 8k;
        llm_gateway on;
        access_log logs/error.log llm;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
"POST /v1/chat/completions\n$::Big"
--- error_code: 200
--- response_body_like: "chat\.completion"
--- error_log eval
[qr/a client request body is buffered to a temporary file/,
 qr/llm-log estimate=20\d{4} usage=upstream outcome=complete/]
--- no_error_log
[alert]



=== TEST 2: the same body held in memory
--- config
    location /v1/ {
        client_max_body_size 16m;
        client_body_buffer_size 1m;
        llm_gateway on;
        access_log logs/error.log llm;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
"POST /v1/chat/completions\n$::Big"
--- error_code: 200
--- error_log eval
qr/llm-log estimate=20\d{4} usage=upstream outcome=complete/
--- no_error_log
a client request body is buffered to a temporary file



=== TEST 3: a spooled stream request is rewritten and forwarded intact
--- config
    location /v1/ {
        client_max_body_size 16m;
        client_body_buffer_size 8k;
        llm_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
my $b = $::Big; $b =~ s/^\{/{"stream":true,/;
"POST /v1/chat/completions\n$b"
--- more_headers
x-mock-echo: 1
--- error_code: 200
--- response_headers eval
"x-mock-body-bytes: " . (length($::Big) + 14 + 40)
--- response_body_like: ^\{"stream":true,"model":"m".*"stream_options":\{"include_usage":true\}\}$
