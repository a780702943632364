# Runner behaviour around the blocks: bail-outs, port selection, block
# order, global setters, and the nginx process lifecycle.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTestEnv ();
use Test::More;

my $Port = 1997;

if (!-x $SelfTestEnv::NginxBinary || !-f $SelfTestEnv::EchoModule) {
    plan skip_all => 'needs Debian nginx and libnginx-mod-http-echo';
}

sub inner (%) { return SelfTestEnv::run_inner(port => $Port, @_) }

sub block ($$) {
    my ($n, $body) = @_;
    return "\n=== TEST $n: b$n\n--- config\n"
           . "location = /t { return 200 \"$body\\n\"; }\n"
           . "--- request\nGET /t\n--- response_body\n$body\n";
}

# --- Bail-outs --------------------------------------------------------------

my $run = inner(code => <<'EOF');
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: undefined variable
--- config
location = /t { return 200 "$TEST_NGINX_SURELY_UNDEFINED"; }
--- request
GET /t
EOF
like($run->{bailed} // '',
     qr/TEST 1: .* No environment TEST_NGINX_SURELY_UNDEFINED defined/,
     'bail out on an undefined $TEST_NGINX_ variable');

$run = inner(code => <<'EOF');
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: no config in the first block
--- request
GET /t
EOF
like($run->{bailed} // '', qr/No '--- config' section specified/,
     'bail out when the first block has no --- config');

$run = inner(code => <<'EOF');
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: unsupported section
--- config
location = /t { return 200; }
--- http2
--- request
GET /t
EOF
like($run->{bailed} // '', qr/section "--- http2" is not supported/,
     'bail out on a section this runner cannot honour');

$run = inner(code => <<'EOF');
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: bad config without must_die
--- config
location = /t { return a b c; }
--- request
GET /t
--- suppress_stderr
EOF
like($run->{bailed} // '',
     qr/Cannot start nginx using command .*invalid number of arguments/,
     'bail out with nginx\'s message when nginx cannot start');
cmp_ok($run->{secs}, '<', 10, 'a broken config is not retried for long');

# --- Ports ------------------------------------------------------------------

my $ports = <<'EOF';
use Test::Nginx::Socket;
print "# port=", server_port(), " client=", server_port_for_client(), "\n";
EOF
$run = inner(code => $ports, env => {TEST_NGINX_PORT => undef});
like($run->{out}, qr/port=1984 client=1984/, 'default port is 1984');
$run = inner(code => $ports, env => {TEST_NGINX_SERVER_PORT => 1999});
like($run->{out}, qr/port=1999 client=1999/,
     'TEST_NGINX_SERVER_PORT wins over TEST_NGINX_PORT');

# --- Block selection and order ----------------------------------------------

$run = inner(code => "use Test::Nginx::Socket 'no_plan';\nrun_tests();\n"
                     . "__DATA__\n" . block(1, 'one')
                     . "--- error_code: 500\n" . block(2, 'two')
                     . "--- ONLY\n");
is_deeply([map { $_->{ok} ? 1 : 0 } @{$run->{tap}}], [1, 1],
          'ONLY runs that block alone');
like($run->{err}, qr/I found ONLY/, 'ONLY is reported');

my @order = map { block($_, "b$_") } 1 .. 8;
$run = inner(code => "use Test::Nginx::Socket 'no_plan';\nrun_tests();\n"
                     . "__DATA__\n" . join('', @order),
             env => {TEST_NGINX_NO_SHUFFLE => undef});
my @seen = map { $_->{desc} =~ /TEST (\d+):.*status code/ ? $1 : () }
           @{$run->{tap}};
is_deeply([sort { $a <=> $b } @seen], [1 .. 8], 'shuffled: every block ran');
isnt("@seen", "@{[1 .. 8]}", 'blocks are shuffled by default');

$run = inner(code => "use Test::Nginx::Socket 'no_plan';\nrepeat_each(3);\n"
                     . "run_tests();\n__DATA__\n" . block(1, 'x'));
is(scalar(grep { $_->{ok} } @{$run->{tap}}), 6,
   'repeat_each(3): 3 x (status + body)');

# --- Error log windows ------------------------------------------------------

my $startup = <<'EOF';
repeat_each(2);
run_tests();
__DATA__

=== TEST 1: a line logged only at startup
--- config
location = /t { return 200; }
--- request
GET /t
--- error_log
using the "epoll" event method
EOF
$run = inner(code => "use Test::Nginx::Socket 'no_plan';\n$startup");
is_deeply([map { $_->{ok} ? 1 : 0 } @{$run->{tap}}], [1, 1, 1, 0],
          'each repetition sees only its own part of the error log');
$run = inner(code => "use Test::Nginx::Socket 'no_plan';\n"
                     . "check_accum_error_log();\n$startup");
is_deeply([map { $_->{ok} ? 1 : 0 } @{$run->{tap}}], [1, 1, 1, 1],
          'check_accum_error_log() keeps the whole log');

# --- no_root_location -------------------------------------------------------

my $root = <<'EOF';
run_tests();
__DATA__

=== TEST 1: the suite's own location /
--- config
location / { return 200 "mine\n"; }
--- request
GET /
--- response_body
mine
EOF
$run = inner(code => "use Test::Nginx::Socket 'no_plan';\n$root");
like($run->{bailed} // '', qr/duplicate location "\/"/,
     'location / is in the generated config by default');
$run = inner(code => "use Test::Nginx::Socket 'no_plan';\n"
                     . "no_root_location();\n$root");
is_deeply([map { $_->{ok} ? 1 : 0 } @{$run->{tap}}], [1, 1],
          'no_root_location() leaves location / to the suite');

# --- nginx lifecycle --------------------------------------------------------

$run = inner(code => "use Test::Nginx::Socket 'no_plan';\nrun_tests();\n"
                     . "__DATA__\n" . block(1, 'a') . block(2, 'b'));
is(scalar(grep { $_->{ok} } @{$run->{tap}}), 4, 'lifecycle: suite passed');
is_deeply([SelfTestEnv::pids_with_cmdline($run->{dir})], [],
          'no nginx left running after the suite');

$run = inner(code => "use Test::Nginx::Socket 'no_plan';\nrun_tests();\n"
                     . "__DATA__\n" . block(1, 'a'),
             env => {TEST_NGINX_NO_CLEAN => 1});
my @left = SelfTestEnv::pids_with_cmdline($run->{dir});
is(scalar @left, 1, 'TEST_NGINX_NO_CLEAN leaves nginx running');
kill 'QUIT', @left;
for (1 .. 100) {
    last unless SelfTestEnv::pids_with_cmdline($run->{dir});
    select undef, undef, undef, 0.05;
}
is_deeply([SelfTestEnv::pids_with_cmdline($run->{dir})], [],
          'and it stops on QUIT');

done_testing();
