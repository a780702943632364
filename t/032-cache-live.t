# Response cache: coalesced followers of a streaming miss get the leader's
# stream live, event by event, in two worker processes: one upstream call,
# the first events long before the stream ends, each follower in its own
# form, and a clean end (error event + terminator) when the leader's
# stream is torn or its client leaves. Concurrency comes from
# echo_location_async subrequests that proxy back to the gateway; a
# follower proxied with a short proxy_read_timeout keeps only what reached
# it before the leader's stream went quiet.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
master_on();
workers(2);

# three tokens, two seconds apart: the whole stream takes over 4 s
our $slow = <<'_EOC_';
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_header x-mock-ttft-ms 50;
        proxy_set_header x-mock-itl-ms 2000;
        proxy_http_version 1.1;
        proxy_buffering off;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<"_EOC_");
    upstream mock {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
    llm_cache_zone llm:1m;
    log_format pid '\$pid \$request_uri \$llm_cache_status';
_EOC_

    my $config = $block->config // '';
    $block->set_value("config", $config . <<'_EOC_');
    location = /reset { proxy_method POST; proxy_pass http://mock/mock/reset; }
    location = /stats { proxy_pass http://mock/stats; }
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        access_log logs/pid.log pid;
        proxy_pass http://mock;
    }
_EOC_
});

run_tests();

__DATA__

=== TEST 1: three followers of a slow stream: one upstream call, the first content long before the end
--- config eval
"
    location = /fan {
        echo_location_async /leader;
        echo_sleep 0.3;
        echo_location_async /early;
        echo_location_async /early;
        echo_location_async /full;
    }
    location = /leader {
        internal;
$::slow
        proxy_set_body '{\"model\":\"l1\",\"max_tokens\":3,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
    location = /full {
        internal;
$::slow
        proxy_set_body '{\"model\":\"l1\",\"max_tokens\":3,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
    location = /early {
        internal;
$::slow
        proxy_read_timeout 1s;
        proxy_set_body '{\"model\":\"l1\",\"max_tokens\":3,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
"
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./,
 # the leader's stream; two followers cut 1 s after their last byte, with
 # the first token and not the second (2 s later); a whole follower
 qr/^(data: [^\n]*\n\n)*?data: [^\n]*"content":"(\w+ )"[^\n]*\n\n(data: [^\n]*\n\n)*?data: [^\n]*"content":"(\w+ )".*?data: \[DONE\]\n\n(?:(?:data: (?!\[DONE\])[^\n]*\n\n)*?data: [^\n]*"content":"\2"[^\n]*\n\n(?:data: (?!\[DONE\])(?![^\n]*"content":"\4")[^\n]*\n\n)*){2}(data: [^\n]*\n\n)*?data: [^\n]*"content":"\2".*?"content":"\4".*?data: \[DONE\]\n\n$/s,
 qr/"requests_total":1,/]
--- timeout: 15



=== TEST 2: the leader's client leaves mid-stream: followers end with an error event and [DONE]
--- config eval
"
    location = /fan {
        echo_location_async /leader;
        echo_sleep 0.3;
        echo_location_async /full;
        echo_location_async /full;
        echo_location_async /full;
    }
    location = /leader {
        internal;
$::slow
        proxy_read_timeout 1s;
        proxy_set_body '{\"model\":\"l2\",\"max_tokens\":3,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
    location = /full {
        internal;
$::slow
        proxy_set_body '{\"model\":\"l2\",\"max_tokens\":3,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
"
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./,
 qr/^(?:data: (?!\[DONE\])[^\n]*\n\n)*(?:(?:data: \{"id"[^\n]*\n\n)*?data: [^\n]*"content":"\w+ "[^\n]*\n\n(?:data: \{"id"[^\n]*\n\n)*data: \{"error":\{[^\n]*"code":"upstream_incomplete"\}\}\n\ndata: \[DONE\]\n\n){3}$/s,
 qr/"requests_total":1,"completed_total":0,/]
--- timeout: 15



=== TEST 3: the upstream tears the stream: Anthropic followers get its events (names kept) and an error event
--- config eval
"
    location = /fan {
        echo_location_async /leader;
        echo_sleep 0.3;
        echo_location_async /full;
        echo_location_async /full;
    }
    location ~ ^/(leader|full)\$ {
        internal;
$::slow
        proxy_set_header x-mock-itl-ms 500;
        proxy_set_header x-mock-fault close-mid-stream;
        proxy_set_header x-mock-fault-after 2;
        proxy_set_body '{\"model\":\"l3\",\"max_tokens\":8,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/messages;
    }
"
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./,
 qr/^(?:event: message_start\ndata: [^\n]*\n\n(?:event: \w+\ndata: [^\n]*\n\n)*?event: content_block_delta\ndata: [^\n]*"text":"\w+ "[^\n]*\n\n(?:event: \w+\ndata: [^\n]*\n\n)*?event: error\ndata: \{"type":"error","error":\{"type":"api_error"[^\n]*\n\n){3}$/s,
 qr/"requests_total":1,/]
--- timeout: 15



=== TEST 4: each follower in its own form: usage chunk only if asked, JSON waits for the end
--- config eval
"
    location = /fan {
        echo_location_async /leader;
        echo_sleep 0.3;
        echo_location_async /nousage;
        echo_location_async /json;
    }
    location = /leader {
        internal;
$::slow
        proxy_set_header x-mock-itl-ms 300;
        proxy_set_body '{\"model\":\"l4\",\"max_tokens\":3,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
    location = /nousage {
        internal;
$::slow
        proxy_set_body '{\"model\":\"l4\",\"max_tokens\":3,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
    location = /json {
        internal;
$::slow
        proxy_set_body '{\"model\":\"l4\",\"max_tokens\":3,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"live\"}]}';
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
    }
"
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./,
 qr/^(?:data: \{[^\n]*"usage":null\}\n\n)+data: \{[^\n]*"choices":\[\][^\n]*"usage":\{[^\n]*\n\ndata: \[DONE\]\n\n(?:data: \{(?![^\n]*"usage")[^\n]*\}\n\n)+data: \[DONE\]\n\n\{"id":"chatcmpl-\w+","object":"chat\.completion"[^\n]*"usage":\{[^\n]*\}$/s,
 qr/"requests_total":1,/]
--- timeout: 15
