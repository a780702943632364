# Anthropic prompt caching through the sidecar: the module sends the prompt's
# layout (prompt_shape) with the route request, the sidecar answers with the
# positions of the cache_control breakpoints, and the body forwarded upstream
# (echoed by the mock) carries {"type":"ephemeral"} there: a plain string
# becomes one text block, a client's own marker is never duplicated, at most
# 4 markers in all, Content-Length right (the echo is the body received).

use FindBin; use lib $FindBin::Bin; use LLM; use Sidecar;
use Test::Nginx::Socket 'no_plan';

no_shuffle();
no_long_string();

our $CC = '"cache_control":{"type":"ephemeral"}';

# about 1,250 tokens each: over claude-sonnet-4-5's 1,024 cacheable minimum
our $LONG = join(' ', ('lorem ipsum dolor sit amet') x 190);
our $TOOL = '{"name":"lookup","description":"' . $LONG
            . '","input_schema":{"type":"object","properties":{}}}';

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    upstream mock {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
    upstream mock_b {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_B};
    }
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms
                spool=llm_spool_042:1m decisions=llm_dec_042:1m;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    llm_gateway on;
    llm_team \$http_x_team;

    location /v1/ {
        llm_route mock;
        add_header X-Route \$llm_route_status always;
        add_header X-Upstream \$llm_upstream always;
        proxy_set_header x-mock-echo 1;
        proxy_pass http://\$llm_upstream;
    }
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers",
                          "Content-Type: application/json\nX-Team: t042");
    }
});

run_tests();

__DATA__

=== TEST 1: a long system string becomes one marked text block; the rest of the body is unchanged
--- request eval
"POST /v1/messages
{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":\"$::LONG\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
--- error_code: 200
--- response_headers
X-Route: SIDECAR
X-Upstream: mock_b
--- response_body eval
"{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":[{\"type\":\"text\",\"text\":\"$::LONG\",$::CC}],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"



=== TEST 2: blocks: end of system, end of tools and the last user turn of a conversation are marked; the same from the decision cache
--- request eval
my $b = "POST /v1/messages
{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"tools\":[$::TOOL],\"system\":[{\"type\":\"text\",\"text\":\"rules\"},{\"type\":\"text\",\"text\":\"$::LONG\"}],\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"text\",\"text\":\"q2\"}]}]}";
[$b, $b]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Route: SIDECAR", "X-Route: CACHED"]
--- response_body eval
my $tool = $::TOOL;
$tool =~ s/\}$/,$::CC}/;
my $b = "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"tools\":[$tool],\"system\":[{\"type\":\"text\",\"text\":\"rules\"},{\"type\":\"text\",\"text\":\"$::LONG\",$::CC}],\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"text\",\"text\":\"q2\",$::CC}]}]}";
[$b, $b]



=== TEST 3: the last user turn as a plain string is wrapped and marked; an existing client marker on system is kept, not doubled
--- request eval
"POST /v1/messages
{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":[{\"type\":\"text\",\"text\":\"$::LONG\",$::CC}],\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"q2\"}]}"
--- error_code: 200
--- response_body eval
"{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":[{\"type\":\"text\",\"text\":\"$::LONG\",$::CC}],\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q2\",$::CC}]}]}"



=== TEST 4: a client that already set 4 markers (one inside a tool_result) gets none more: Anthropic's limit
--- request eval
"POST /v1/messages
{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":[{\"type\":\"text\",\"text\":\"a\",$::CC},{\"type\":\"text\",\"text\":\"$::LONG\"}],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q1\",$::CC}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{},$::CC}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":[{\"type\":\"text\",\"text\":\"r\",$::CC}]}]}]}"
--- error_code: 200
--- response_body eval
"{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":[{\"type\":\"text\",\"text\":\"a\",$::CC},{\"type\":\"text\",\"text\":\"$::LONG\"}],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q1\",$::CC}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{},$::CC}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":[{\"type\":\"text\",\"text\":\"r\",$::CC}]}]}]}"



=== TEST 5: a short prompt (under the model's cacheable minimum) is forwarded byte for byte
--- request eval
"POST /v1/messages
{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":\"be brief\",\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"q2\"}]}"
--- error_code: 200
--- response_body eval
"{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,\"system\":\"be brief\",\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"q2\"}]}"



=== TEST 6: an escaped system string is wrapped as it is (escapes kept), max_tokens capped in the same body
--- request eval
"POST /v1/messages
{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100000,\"system\":\"say \\\"hi\\\"\\n$::LONG\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
--- error_code: 200
--- response_body eval
"{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64000,\"system\":[{\"type\":\"text\",\"text\":\"say \\\"hi\\\"\\n$::LONG\",$::CC}],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
