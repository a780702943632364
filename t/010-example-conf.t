# The shipped example (conf/llm.conf, included by conf/nginx.conf) loads
# and serves: a test keeps the README's configuration from rotting.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';
use File::Temp ();

# the example as shipped, but on the ports of this run: its mock upstream
# (18080) is LLM.pm's mock, its gateway (8080) 10000 below it, so suites
# run side by side with LLM_MOCK_BASE set
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $gateway = $mock - 10000;
my $dir = File::Temp::tempdir(CLEANUP => 1);

open my $in, '<', "$ENV{TEST_NGINX_REPO}/conf/llm.conf"
    or die "010-example-conf.t: conf/llm.conf: $!";
my $conf = do { local $/; <$in> };
close $in;

my $n = ($conf =~ s/127\.0\.0\.1:18080\b/127.0.0.1:$mock/g);
my $m = ($conf =~ s/127\.0\.0\.1:8080\b/127.0.0.1:$gateway/g);
die "010-example-conf.t: conf/llm.conf has no 127.0.0.1:18080 upstream or "
    . "127.0.0.1:8080 listen any more: update this test\n" unless $n && $m;

open my $out, '>', "$dir/llm.conf" or die "$dir/llm.conf: $!";
print $out $conf;
close $out;

$ENV{TEST_NGINX_LLM_CONF} = "$dir/llm.conf";
$ENV{TEST_NGINX_LLM_PORT} = $gateway;

repeat_each(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a chat completion through the example gateway
--- http_config
    include $TEST_NGINX_LLM_CONF;
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_LLM_PORT/v1/chat/completions;
    }
--- request
POST /t
{"model":"mock","messages":[{"role":"user","content":"Hello!"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-demo
--- error_code: 200
--- response_body_like: "chat\.completion"
--- no_error_log
[error]



=== TEST 2: a stream through the example gateway
--- http_config
    include $TEST_NGINX_LLM_CONF;
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_LLM_PORT/v1/chat/completions;
    }
--- request
POST /t
{"model":"mock","stream":true,"messages":[{"role":"user","content":"Hi"}]}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body_like: data: \[DONE\]\n\n$
