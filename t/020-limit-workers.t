# Shared state: exact across worker processes (the reload test, which
# needs a signal, is in 020-limit-redis.t where the test drives nginx).

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
master_on();
workers(2);

our $chat = '{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}';

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<"_EOC_");
    upstream mock {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
    llm_limit_zone llm:1m;
_EOC_

    $block->set_value("more_headers", "Content-Type: application/json\n"
                                      . "Authorization: Bearer sk-one\n");
});

run_tests();

__DATA__

=== TEST 1: two workers share one bucket: exactly rpm requests pass
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=$http_authorization rpm=6;
        proxy_pass http://mock;
    }
--- request eval
[("POST /v1/chat/completions\n$::chat") x 8]
--- error_code eval
[200, 200, 200, 200, 200, 200, 429, 429]
