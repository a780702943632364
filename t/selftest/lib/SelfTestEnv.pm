package SelfTestEnv;

# Environment for the self-tests of the fallback Test::Nginx runner
# (t/lib/Test/Nginx).  "use SelfTestEnv port => N;" before
# "use Test::Nginx::Socket;" pins the suite to Debian's nginx, the echo
# module, port N and server root t/servroot_N, whatever the caller's
# TEST_NGINX_* settings are (TEST_NGINX_VERBOSE is kept for debugging).
#
# run_inner() runs a small generated suite in a child perl and returns its
# parsed TAP, for tests that must prove a wrong expectation fails; a value
# of undef in env => {...} removes that variable.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IPC::Run ();
use Time::HiRes qw(time);

our $NginxBinary = '/usr/sbin/nginx';
our $EchoModule  = '/usr/lib/nginx/modules/ngx_http_echo_module.so';
our $SelfTestDir = abs_path(dirname(__FILE__) . '/..');
# The runner the generated suites use; SELFTEST_RUNNER_LIB can point at an
# upstream Test::Nginx checkout's lib/ to compare the two.
our $RunnerLib   = $ENV{SELFTEST_RUNNER_LIB}
                   || abs_path("$SelfTestDir/../lib");

sub clean_env () {
    for my $k (keys %ENV) {
        delete $ENV{$k} if $k =~ /^TEST_NGINX_/ && $k ne 'TEST_NGINX_VERBOSE';
    }
    $ENV{TEST_NGINX_BINARY} = $NginxBinary;
    $ENV{TEST_NGINX_LOAD_MODULES} = $EchoModule;
}

sub import {
    my ($class, %opt) = @_;
    return unless $opt{port};
    clean_env();
    $ENV{TEST_NGINX_PORT} = $opt{port};
    # t/servroot_<port>: ignored by git like t/servroot, and per port so
    # that the self-tests can run in parallel (prove -j).
    $ENV{TEST_NGINX_SERVROOT} = abs_path("$SelfTestDir/..")
                                . "/servroot_$opt{port}";
    if (!-x $NginxBinary || !-f $EchoModule) {
        print "1..0 # SKIP needs $NginxBinary and $EchoModule "
              . "(Debian nginx, libnginx-mod-http-echo)\n";
        exit 0;
    }
}

# Writes the text of a .t file (code => ...) to a temporary t/inner.t and
# runs it with the fallback runner (port => N, extra env => {...}).
# Returns a hash: status (exit code), out, err, tap (list of {ok, desc,
# todo, skip}), bailed (bail-out reason), secs (wall clock), dir (the
# temporary directory, removed at exit).  With prove => 1 it runs through
# prove instead and only status/out/err are meaningful.
sub run_inner (%) {
    my (%a) = @_;
    my $dir = tempdir('tn-selftest-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    mkdir "$dir/t" or die "mkdir $dir/t: $!";
    open my $fh, '>', "$dir/t/inner.t" or die "write inner.t: $!";
    print $fh $a{code};
    close $fh;

    local %ENV = %ENV;
    clean_env();
    $ENV{TEST_NGINX_PORT} = $a{port} or die "run_inner: port required";
    $ENV{TEST_NGINX_SERVROOT} = "$dir/t/servroot";
    $ENV{TEST_NGINX_NO_SHUFFLE} = 1;
    my %extra = %{$a{env} || {}};
    for my $k (keys %extra) {
        if (defined $extra{$k}) {
            $ENV{$k} = $extra{$k};
        } else {
            delete $ENV{$k};
        }
    }

    my @cmd = $a{prove} ? ('prove', '-I', $RunnerLib, 't/inner.t')
                        : ($^X, "-I$RunnerLib", 't/inner.t');
    my ($out, $err) = ('', '');
    my $cwd = Cwd::getcwd();
    chdir $dir or die "chdir $dir: $!";
    my $t0 = time;
    IPC::Run::run(\@cmd, \undef, \$out, \$err,
                  IPC::Run::timeout($a{timeout} || 120));
    my $status = $? >> 8;
    my $secs = time - $t0;
    chdir $cwd or die "chdir $cwd: $!";

    my (@tap, $bailed);
    for my $line (split /\n/, $out) {
        if ($line =~ /^(not )?ok \d+(?: - (.*?))?(?: # (TODO|skip)\b.*)?$/i) {
            my ($not, $desc, $directive) = ($1, $2 // '', lc($3 // ''));
            push @tap, {ok => !$not, desc => $desc,
                        todo => $directive eq 'todo' ? 1 : 0,
                        skip => $directive eq 'skip' ? 1 : 0};
        } elsif ($line =~ /^Bail out!\s*(.*)/) {
            $bailed = $1;
        }
    }
    return {status => $status, out => $out, err => $err, tap => \@tap,
            bailed => $bailed, secs => $secs, dir => $dir};
}

# Pids of live (non-zombie) processes whose command line contains $text.
sub pids_with_cmdline ($) {
    my $text = shift;
    my @pids;
    for my $dir (glob '/proc/[0-9]*') {
        my ($pid) = $dir =~ /(\d+)$/;
        next if $pid == $$;
        open my $fh, '<', "$dir/cmdline" or next;
        my $cmd = do { local $/; <$fh> } // '';
        close $fh;
        next unless index($cmd, $text) >= 0;
        open my $st, '<', "$dir/stat" or next;
        my $stat = <$st> // '';
        close $st;
        push @pids, $pid unless $stat =~ /\)\s+[ZX]\s/;
    }
    return @pids;
}

# The TAP results whose description matches $re.
sub results ($$) {
    my ($run, $re) = @_;
    return grep { $_->{desc} =~ $re } @{$run->{tap}};
}

1;
