package Redis;

# A private redis-server for a test file, used as
#
#     use FindBin; use lib $FindBin::Bin; use Redis;
#     my $port = Redis::start();      # $ENV{TEST_NGINX_REDIS_PORT}
#     Redis::stop(); Redis::start();  # an outage, and the return
#     Redis::cli('GET', 'k');         # redis-cli, output chomped
#
# The port is $ENV{TEST_NGINX_REDIS_PORT} (default 18479). Nothing is
# persisted. The server started here, and only it, is stopped when the
# file ends; a port already in use is an error, never somebody else's
# server reused.

use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);

my $pid;
my $owner = $$;

sub port { return $ENV{TEST_NGINX_REDIS_PORT} ||= 18479 }

sub listening {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . port(),
                                  Timeout => 0.2);
    return 0 unless $s;
    close $s;
    return 1;
}

sub start {
    my $port = port();

    die "Redis.pm: 127.0.0.1:$port is busy\n" if listening();

    my $bin = '/usr/bin/redis-server';
    die "Redis.pm: $bin is missing (apt-get install redis-server)\n"
        unless -x $bin;

    $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        exec $bin, '--port', $port, '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no', '--daemonize', 'no', '--dir', '/tmp'
            or POSIX::_exit(127);
    }

    for (1 .. 100) {
        return $port if listening();
        sleep 0.05;
    }

    die "Redis.pm: redis-server did not listen on 127.0.0.1:$port\n";
}

sub stop {
    return unless $pid;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    undef $pid;
}

sub cli {
    my @args = map { quotemeta } @_;
    my $out = `redis-cli -h 127.0.0.1 -p @{[port()]} @args 2>&1`;
    chomp $out;
    return $out;
}

END {
    local $?;       # keep the exit status of the test file

    stop() if $$ == $owner;
}

1;
