package LLM;

# Shared set-up of the ngx_llm suites, used as
#
#     use FindBin; use lib $FindBin::Bin; use LLM;
#     use Test::Nginx::Socket;
#
# It starts the project's mock LLM server for the test file (unless
# TEST_NGINX_MOCK_PORT names one already running), waits until it listens,
# and stops that process, and only it, when the file ends. It also sets
# the defaults the suites expect when the caller did not: the module to
# load and $TEST_NGINX_* paths.
#
# Instances: $TEST_NGINX_MOCK_PORT (name "mock"), +1 ("a"), +2 ("b") and
# +10 ("d", $TEST_NGINX_MOCK_D; +3 to +9 are t/061's faulty servers and
# t/031's redis).
# LLM_MOCK_BASE (default 18080) sets the first port.

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);

my $root = abs_path(dirname(__FILE__) . '/..');
my $mock_pid;
my $owner = $$;

$ENV{TEST_NGINX_REPO} //= $root;
$ENV{TEST_NGINX_LOAD_MODULES} //=
    "/usr/lib/nginx/modules/ngx_http_echo_module.so "
    . "$root/build/ngx_http_llm_module.so";

sub listening {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 0.2);
    return 0 unless $s;
    close $s;
    return 1;
}

sub start_mock {
    if ($ENV{TEST_NGINX_MOCK_PORT}) {
        return;     # somebody else runs it
    }

    # LLM_MOCK_BASE moves the mock (and the example's upstream) when several
    # suites run side by side
    my $port = $ENV{LLM_MOCK_BASE} || 18080;
    $ENV{TEST_NGINX_MOCK_PORT} = $port;
    $ENV{TEST_NGINX_MOCK_A} = $port + 1;
    $ENV{TEST_NGINX_MOCK_B} = $port + 2;
    $ENV{TEST_NGINX_MOCK_D} = $port + 10;

    my $bin = "$root/mock/llm-mock";
    die "LLM.pm: $bin is not built (make mock)\n" unless -x $bin;

    for my $p ($port, $port + 1, $port + 2, $port + 10) {
        die "LLM.pm: 127.0.0.1:$p is busy: is another suite or make run "
            . "using it?\n" if listening($p);
    }

    my @args = ("--listen", "127.0.0.1:$port,name=mock",
                "--listen", "127.0.0.1:" . ($port + 1) . ",name=a",
                "--listen", "127.0.0.1:" . ($port + 2) . ",name=b",
                "--listen", "127.0.0.1:" . ($port + 10) . ",name=d",
                "--ttft-ms", "5", "--itl-ms", "2", "--quiet");

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        exec $bin, @args or POSIX::_exit(127);
    }

    $mock_pid = $pid;

    for (1 .. 100) {
        return if listening($port + 2) && listening($port + 10);
        sleep 0.05;
    }

    die "LLM.pm: mock LLM server did not listen on 127.0.0.1:$port\n";
}

# promtool_metrics(): `promtool check metrics` on every answer of the file
# that is a metrics page (call it after `use Test::Nginx::Socket`; both
# runners call response body checks); one more test per such answer
sub promtool_metrics {
    Test::Nginx::Socket::add_response_body_check(sub {
        my ($block, $body, $idx, $rep, $dry_run) = @_;

        return if $dry_run || !defined $body
                  || $body !~ /^# HELP llm_requests_total /;

        my ($fh, $file) = File::Temp::tempfile(UNLINK => 1);
        print $fh $body;
        close $fh;

        my $out = `promtool check metrics < $file 2>&1`;
        Test::More::is($? >> 8, 0, $block->name . " - promtool check metrics")
            or Test::More::diag($out);
    });
}

start_mock();

END {
    # waitpid sets $?: keep the exit status of the test file (a file that
    # died must not pass)
    local $?;

    if ($mock_pid && $$ == $owner) {
        kill 'TERM', $mock_pid;
        waitpid $mock_pid, 0;
    }
}

1;
