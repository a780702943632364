package Sidecar;

# A private llm-sidecar for a test file, used as
#
#     use FindBin; use lib $FindBin::Bin; use LLM; use Sidecar;
#
# It writes a sidecar configuration into a fresh temporary directory (socket,
# data dir, a small model table whose upstreams are the suites' "mock"),
# starts build/sidecar/llm-sidecar on it, waits until it answers /health and
# stops that process, and only it, when the file ends. $TEST_NGINX_SIDECAR
# holds the socket path for the nginx configurations.
#
#   Sidecar::stop()              SIGTERM, wait
#   Sidecar::kill_hard()         SIGKILL, wait (no goodbye to its clients)
#   Sidecar::start_later($s)     start it again after $s seconds (from an
#                                "--- init", while the block's requests run)
#   Sidecar::request($method, $path, $body, $token) -> ($status, $body)

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::UNIX;
use POSIX ();
use Time::HiRes qw(sleep);

my $root = abs_path(dirname(__FILE__) . '/..');
my $bin = $ENV{LLM_SIDECAR_BINARY} || "$root/build/sidecar/llm-sidecar";
my $owner = $$;
my $dir = tempdir("ngx-llm-sidecar-XXXXXX", TMPDIR => 1, CLEANUP => 1);
my $pid;

our $token = "test-admin-token-0123456789abcdef";
our $sock = "$dir/sidecar.sock";

$ENV{TEST_NGINX_SIDECAR} = $sock;
$ENV{TEST_NGINX_SIDECAR_TOKEN} = $token;

die "Sidecar.pm: $bin is not built (make sidecar)\n" unless -x $bin;

open my $fh, '>', "$dir/sidecar.json" or die "sidecar.json: $!";
print $fh <<"_EOC_";
{
  "listen": {"unix": "$sock", "unix_mode": "0666"},
  "threads": 1,
  "data_dir": "$dir/data",
  "admin_token": "$token",
  "log_level": "warn",
  "price_table": "$root/conf/prices.json",
  "models": [
    {"name": "gpt-4.1-nano", "upstream": "mock", "tier": 1},
    {"name": "gpt-4o-mini", "upstream": "mock", "tier": 1},
    {"name": "gpt-4.1", "upstream": "mock_b", "tier": 3},
    {"name": "gpt-4o", "upstream": "mock_b", "tier": 3},
    {"name": "claude-haiku-4-5", "upstream": "mock", "tier": 2},
    {"name": "claude-sonnet-4-5", "upstream": "mock_b", "tier": 3}
  ],
  "classes": [
    {"name": "small", "min_tier": 1, "max_prompt_tokens": 4000,
     "complexity": ["low", "medium"], "tools": false},
    {"name": "large", "min_tier": 3}
  ],
  "aliases": {"auto": {}, "fast": {"class": "small"}},
  "teams": {"*": {"allow": ["*"]},
            "interns": {"allow": ["gpt-4.1-nano", "gpt-4o-mini"]}},
  "routing": {"decision_ttl_ms": 500, "budget_ttl_ms": 300,
              "budget_downgrade_share": 0.5,
              "equivalence_cost_ratio": 1.0},
  "alerts": {"check_interval_ms": 1000}
}
_EOC_
close $fh;

sub answers {
    my $s = IO::Socket::UNIX->new(Peer => $sock, Type => SOCK_STREAM);
    return 0 unless $s;
    print $s "GET /health HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    return $r =~ m{^HTTP/1\.1 200};
}

sub spawn {
    my ($delay) = @_;

    my $p = fork();
    die "fork: $!" unless defined $p;

    if ($p == 0) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/sidecar.log";
        open STDERR, '>&', \*STDOUT;
        sleep($delay) if $delay;
        exec $bin, '--config', "$dir/sidecar.json" or POSIX::_exit(127);
    }

    $pid = $p;
}

sub start {
    stop();
    spawn(0);

    for (1 .. 200) {
        return if answers();
        sleep 0.05;
    }

    die "Sidecar.pm: llm-sidecar did not answer on $sock, see "
        . "$dir/sidecar.log\n";
}

sub start_later {
    my ($delay) = @_;
    stop();
    spawn($delay);
}

sub stop {
    return unless $pid;
    kill 'TERM', $pid;
    for (1 .. 100) {
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }
    if (kill 0, $pid) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
    undef $pid;
}

sub kill_hard {
    return unless $pid;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    undef $pid;
}

sub request {
    my ($method, $path, $body, $auth) = @_;
    $body //= '';
    my $s = IO::Socket::UNIX->new(Peer => $sock, Type => SOCK_STREAM)
        or return (0, "connect: $!");
    my $h = "$method $path HTTP/1.1\r\nHost: s\r\nConnection: close\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n";
    $h .= "Authorization: Bearer $auth\r\n" if $auth;
    print $s "$h\r\n$body";
    local $/;
    my $r = <$s> // '';
    my ($status) = $r =~ m{^HTTP/1\.\d (\d+)};
    $r =~ s/^.*?\r\n\r\n//s;
    return ($status // 0, $r);
}

start();

END {
    local $?;       # stop() waits for the process: keep the file's status

    stop() if $$ == $owner;
}

1;
