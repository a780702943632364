package Test::Nginx::Util;

# Fallback implementation of openresty's Test::Nginx::Util, used by the
# project only when the real Test::Nginx is not installed (it is not packaged
# by Debian).  It owns everything around the nginx process: globals and their
# setters, nginx.conf generation, the server root, starting and stopping
# nginx, the per-block driver and error log access.  Test::Nginx::Socket
# (same directory) owns the HTTP client and the response checks.
#
# Behaviour follows upstream Test::Nginx 0.33 where the project's suites can
# observe it (configuration layout, environment variables, test counts, test
# names, error log windows); HTTP/2, HTTP/3, valgrind, stap, leak checking,
# benchmarking, HUP reloads and the mock TCP/UDP servers are not provided.

use strict;
use warnings;

use base 'Exporter';

use Carp qw(croak);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Socket::INET ();
use List::Util qw(shuffle);
use POSIX qw(SIGKILL SIGQUIT SIGTERM);
use Scalar::Util qw(looks_like_number);
use Test::LongString ();
use Test::More ();
use Time::HiRes qw(sleep time);

our $VERSION = '0.33';

our @EXPORT = qw(
    expand_env_in_text env_to_nginx is_str check_accum_error_log is_running
    $NoLongString no_long_string $ServerAddr server_addr $ServerName
    server_name parse_time verbose sleep_time bail_out add_cleanup_handler
    add_test_cleanup_handler access_log_data error_log_data
    setup_server_root write_config_file get_canon_version get_nginx_version
    trim show_all_chars parse_headers run_tests get_pid_from_pidfile
    $ServerPortForClient $ServerPort $NginxVersion $PidFile $ServRoot
    $ConfFile $RunTestHelper $CheckErrorLog $CheckShutdownErrorLog
    $FilterHttpConfig $NoNginxManager $RepeatEach $CheckLeak $Benchmark
    add_block_preprocessor timeout worker_connections workers master_on
    master_off config_preamble repeat_each master_process_enabled log_level
    no_shuffle no_root_location html_dir server_root server_port
    server_port_for_client no_nginx_manager use_hup
);

# ---------------------------------------------------------------------------
# Settings: environment first, then the setters a suite calls.
# ---------------------------------------------------------------------------

our $Verbose          = $ENV{TEST_NGINX_VERBOSE};
our $NginxBinary      = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerAddr       = '127.0.0.1';
our $ServerName       = 'localhost';
our $ServerPort       = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                        || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $Workers          = 1;
our $WorkerConnections = 64;
our $LogLevel         = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled    = 'on';
our $Timeout          = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep   = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $NoShuffle        = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $LoadModules      = $ENV{TEST_NGINX_LOAD_MODULES};
our $EventType        = $ENV{TEST_NGINX_EVENT_TYPE};
our $NoNginxManager   = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $WorkerUser       = $ENV{TEST_NGINX_WORKER_USER};
our $RepeatEach       = 1;
our $NoRootLocation   = 0;
our $NoLongString;
our $ConfigPreamble   = '';
our $FilterHttpConfig;

# Modes of upstream that this runner does not implement; kept as variables
# because upstream exports them and code may read them.
our $CheckLeak = 0;
our $Benchmark = 0;

our ($RunTestHelper, $CheckErrorLog, $CheckShutdownErrorLog);
our ($NginxVersion, $NginxRawVersion, $RandPorts, $ErrLogFilePos);
our (@BlockPreprocessors, @CleanupHandlers, @TestCleanupHandlers);
our @EnvToNginx;

if (defined $WorkerUser && $WorkerUser !~ /^\w[-\w]+(?:\s+\w[-\w]+)?$/) {
    die "Bad value in the env TEST_NGINX_WORKER_USER: $WorkerUser\n";
}

our $ServRoot = $ENV{TEST_NGINX_SERVROOT}
                || File::Spec->rel2abs('t/servroot');
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catfile($ServRoot, 'logs');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');
our $HtmlDir    = File::Spec->catfile($ServRoot, 'html');
our $ConfDir    = File::Spec->catfile($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');
our $CacheDir   = File::Spec->catfile($ServRoot, 'cache');

# State of the nginx this process started (pid read from its pid file).
our $NginxPid;
our $PrevConfig;
our $PrevBlock;
our $ConnectFailures = 0;

# Sections of upstream that this runner cannot honour.  A block using one
# bails out instead of silently passing.
my @UnsupportedSections = qw(
    http2 http3 curl stap stap_out stap_out_like stap_out_unlike
    tcp_listen tcp_reply tcp_query tcp_query_len udp_listen udp_reply
    udp_query skip_openssl skip_slave todo_nginx reload_fails
);

# A daemonized nginx is reparented to init, which may take a while to reap
# it: a zombie counts as gone (Linux /proc; elsewhere kill 0 only).
sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid && kill(0, $pid);
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh> // '';
        close $fh;
        return 0 if $stat =~ /\)\s+[ZX]\s/;
    }
    return 1;
}

sub verbose { return $Verbose }
sub sleep_time { return $TestNginxSleep }

sub no_long_string () { $NoLongString = 1 }
sub no_shuffle () { $NoShuffle = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub html_dir () { return $HtmlDir }
sub server_root () { return $ServRoot }
sub config_preamble ($) { $ConfigPreamble = shift }

# This runner starts a fresh nginx for every block, so upstream's HUP-reload
# mode (TEST_NGINX_USE_HUP) has nothing to switch: use_hup() accepts the
# call and keeps that behaviour.
sub use_hup () { return }

sub master_process_enabled (@) {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}

# Getter/setter pairs in upstream's style: no argument reads the value.
sub repeat_each (@) { $RepeatEach = shift if @_; return $RepeatEach }
sub workers (@) { return @_ ? ($Workers = shift) : $Workers }
sub log_level (@) { return @_ ? ($LogLevel = shift) : $LogLevel }
sub timeout (@) { return @_ ? ($Timeout = shift) : $Timeout }
sub server_addr (@) { return @_ ? ($ServerAddr = shift) : $ServerAddr }
sub server_name (@) { return @_ ? ($ServerName = shift) : $ServerName }
sub server_port (@) { return @_ ? ($ServerPort = shift) : $ServerPort }

sub worker_connections (@) {
    return @_ ? ($WorkerConnections = shift) : $WorkerConnections;
}

sub server_port_for_client (@) {
    return @_ ? ($ServerPortForClient = shift) : $ServerPortForClient;
}

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        if ($v !~ /^[A-Za-z_]/ || $v =~ /\n/) {
            croak "env_to_nginx: bad argument value: $v\n";
        }
        push @EnvToNginx, $v;
    }
}

sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# Regexp expectations are matched; strings are compared, showing the first
# difference of long strings unless no_long_string() was called.
sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    if ($NoLongString) {
        return Test::More::is($got, $expected, $desc);
    }
    return Test::LongString::is_string($got, $expected, $desc);
}

# "1.5", "1.5s" and "500ms" are all accepted; the result is in seconds.
sub parse_time ($) {
    my $tm = shift;
    return $tm unless defined $tm;
    if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
        return $tm / 1000;
    }
    $tm =~ s/([^_a-zA-Z])s$/$1/;
    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

sub show_all_chars ($) {
    my $s = shift;
    $s =~ s/\n/\\n/gs;
    $s =~ s/\r/\\r/gs;
    $s =~ s/\t/\\t/gs;
    return $s;
}

# "Name: value" per line; "!Name" means the header must be absent (undef).
sub parse_headers ($) {
    my $s = shift;
    my %headers;
    for my $line (split /\n/, $s) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            $headers{$line} = undef;
            next;
        }
        my ($key, $val) = split /\s*:\s*/, $line, 2;
        $headers{$key} = $val;
    }
    return \%headers;
}

sub gen_rand_port ($) {
    my $used = shift;
    for (1 .. 1000) {
        my $port = int(rand 63547) + 1988;
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(LocalAddr => $ServerAddr,
                                         LocalPort => $port, Proto => 'tcp',
                                         Listen => 5, Reuse => 1);
        if ($sock) {
            close $sock;
            return $port;
        }
    }
    return undef;
}

# $TEST_NGINX_FOO is replaced by $ENV{TEST_NGINX_FOO} (undefined: bail out);
# $TEST_NGINX_RAND_PORT_N by a free port, the same one within a block.
sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    $rand_ports //= {};

    my $expand = sub {
        my $var = shift;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            return $rand_ports->{$var} //= do {
                my %used = ($ServerPort => 1,
                            map { $_ => 1 } values %$rand_ports);
                gen_rand_port(\%used) // bail_out("$name - Cannot find an "
                    . "available listening port number for $var.\n");
            };
        }
        if (!defined $ENV{$var}) {
            bail_out("$name - No environment $var defined.\n");
        }
        return $ENV{$var};
    };

    $text =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/$expand->($1)/eg;
    return $text;
}

# ---------------------------------------------------------------------------
# nginx binary
# ---------------------------------------------------------------------------

sub get_canon_version (@) {
    return sprintf "%d.%03d%03d", $_[0], $_[1], $_[2];
}

sub find_binary ($) {
    my $cmd = shift;
    if ($cmd =~ m{/}) {
        return (-f $cmd && -x _) ? $cmd : undef;
    }
    for my $dir (split(/:/, $ENV{PATH} // ''), '.') {
        next if $dir eq '';
        my $path = File::Spec->catfile($dir, $cmd);
        return $path if -f $path && -x _;
    }
    return undef;
}

our $NginxV;    # output of "nginx -V"

sub get_nginx_version () {
    my $out = $NginxV = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        bail_out("Failed to get the version of the Nginx in PATH: "
                 . ($out // ''));
    }
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s)
    {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

# Which *_temp_path directives this binary accepts ("nginx -V" flags).
sub temp_path_directives ($) {
    my $http_config = shift;
    my $flags = $NginxV // '';
    my @dirs;
    push @dirs, 'client_body'
        unless $http_config =~ /\bclient_body_temp_path\b/;
    push @dirs, 'proxy' unless $http_config =~ /\bproxy_temp_path\b/;
    for my $m (qw(fastcgi scgi uwsgi)) {
        push @dirs, $m unless $flags =~ /--without-http_${m}_module/;
    }
    return join ' ', map { "${_}_temp_path $ServRoot/${_}_temp;" } @dirs;
}

# ---------------------------------------------------------------------------
# Server root and configuration
# ---------------------------------------------------------------------------

sub setup_server_root () {
    if (-d $ServRoot) {
        # Only remove what this runner creates, so that a mis-set
        # TEST_NGINX_SERVROOT cannot wipe unrelated data.
        remove_tree($ConfDir, $CacheDir, $HtmlDir, $LogDir,
                    glob("$ServRoot/*_cache"), glob("$ServRoot/*_temp"));
        rmdir $ServRoot
            or bail_out("Can't remove $ServRoot (not empty?): $!");
    }
    for my $dir ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        mkdir $dir or bail_out("Failed to do mkdir $dir: $!\n");
    }
    my $index = "$HtmlDir/index.html";
    open my $out, '>', $index
        or bail_out("Can't open $index for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;
}

sub run_perl_section ($$) {
    my ($block, $section) = @_;
    my $code = $block->$section;
    return unless $code;
    eval $code;
    bail_out($block->name . " - $section failed: $@") if $@;
}

# "--- user_files": ">>> path [touch-date]" followed by the file's content.
sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - Cannot create directory $1");
        }
        $body = expand_env_in_text($body // '', $name, $rand_ports);
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            local $ENV{TZ} = 'GMT';
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - Failed to touch -t '$date' $path\n");
        }
    }
}

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    my $http_config = expand_env_in_text($block->http_config // '', $name,
                                         $rand_ports);
    $http_config = $FilterHttpConfig->($http_config) if $FilterHttpConfig;

    my $main_config = $block->main_config // '';
    if ($LoadModules) {
        my @mods = map { "load_module $_;" } grep { $_ } split /\s+/,
                   $LoadModules;
        $main_config = join ' ', @mods, $main_config if @mods;
    }
    $main_config = expand_env_in_text($main_config, $name, $rand_ports);
    my $post_main_config = expand_env_in_text($block->post_main_config // '',
                                              $name, $rand_ports);
    my $err_log_file = expand_env_in_text($block->error_log_file
                                          || $ErrLogFile, $name, $rand_ports);
    (my $server_name = $block->server_name // $ServerName) =~ s/'/\\'/g;
    my $temp_paths = temp_path_directives($http_config);
    my $env = join '', map { /\s/ ? "env '$_';\n" : "env $_;\n" }
              @EnvToNginx;
    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    my $use_events = $EventType ? "    use $EventType;\n" : '';
    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0 ? "user root;\n" : '';
    $config //= '';

    # The layout (including the inert env lines and comments) is upstream's,
    # line for line, so that "nginx.conf:N" in nginx's messages is the same
    # under both runners.
    open my $out, '>', $ConfFile
        or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<"_EOC_";
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
env MOCKEAGAIN_VERBOSE;
env MOCKEAGAIN;
env MOCKEAGAIN_WRITE_TIMEOUT_PATTERN;
env LD_PRELOAD;
env LD_LIBRARY_PATH;
env DYLD_INSERT_LIBRARIES;
env DYLD_FORCE_FLAT_NAMESPACE;
${env}#env LUA_PATH;
#env LUA_CPATH;

$main_config

http {
    access_log $AccLogFile; $temp_paths
    #access_log off;

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $ServerPort;
        #placeholder
        server_name     '$server_name';

        client_max_body_size 30M;
        #client_body_buffer_size 4k;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main_config

#timer_resolution 100ms;

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
${use_events}}
env ASAN_OPTIONS;
env MOCKNOEAGAIN_VERBOSE;
env MOCKNOEAGAIN;
_EOC_
    print $out $user;
    close $out;
}

# ---------------------------------------------------------------------------
# nginx process
# ---------------------------------------------------------------------------

sub get_pid_from_pidfile ($) {
    my $name = shift;
    open my $in, '<', $PidFile
        or bail_out("$name - Failed to open the pid file $PidFile for "
                    . "reading: $!");
    my $pid = do { local $/; <$in> } // '';
    close $in;
    $pid =~ s/\s+//g;
    return $pid;
}

# Runs the nginx command line in the foreground (nginx daemonizes itself).
# Returns the raw wait status, -1 if it could not be executed.
sub run_nginx_command ($$) {
    my ($args, $quiet_stderr) = @_;
    open my $saved_out, '>&', \*STDOUT or die "dup STDOUT: $!";
    open my $saved_err, '>&', \*STDERR or die "dup STDERR: $!";
    open STDOUT, '>', '/dev/null' or die "redirect STDOUT: $!";
    if ($quiet_stderr) {
        open STDERR, '>', '/dev/null' or die "redirect STDERR: $!";
    }
    my $status = system { $NginxBinary } $NginxBinary, @$args;
    open STDOUT, '>&', $saved_out or die "restore STDOUT: $!";
    open STDERR, '>&', $saved_err or die "restore STDERR: $!";
    return $status;
}

sub nginx_args () {
    my @args = ('-p', "$ServRoot/", '-c', $ConfFile);
    # "-e" (startup error log) exists since nginx 1.19.5.
    if (defined $NginxVersion && $NginxVersion >= 1.019005) {
        unshift @args, '-e', $ErrLogFile;
    }
    return \@args;
}

sub wait_for_pid ($) {
    my $name = shift;
    my $deadline = time + $Timeout;
    while (time < $deadline) {
        if (-s $PidFile) {
            my $pid = get_pid_from_pidfile($name);
            return $pid if $pid =~ /^\d+$/;
        }
        sleep $TestNginxSleep;
    }
    return undef;
}

sub error_log_tail () {
    open my $in, '<', $ErrLogFile or return '';
    my @lines = <$in>;
    close $in;
    return join '', @lines > 20 ? @lines[-20 .. -1] : @lines;
}

# Starts nginx for a block; retries (for up to 10 s) only while the port is
# still held by a previous instance, and bails out with nginx's own message
# otherwise.
sub start_nginx ($) {
    my $block = shift;
    my $name = $block->name;
    my $args = nginx_args();
    my $cmd = join ' ', $NginxBinary, @$args;
    my $give_up = time + 10;

    while (1) {
        my $status = run_nginx_command($args,
                                       defined $block->suppress_stderr);
        if ($status == 0) {
            $NginxPid = wait_for_pid($name);
            if (!$NginxPid) {
                bail_out("$name - nginx started (\"$cmd\") but did not write "
                         . "$PidFile within ${Timeout}s");
            }
            warn "$name - started nginx, pid $NginxPid\n" if $Verbose;
            return;
        }
        my $log = error_log_tail();
        if ($status != -1 && $log =~ /Address already in use/
            && time < $give_up)
        {
            sleep 0.5;
            next;
        }
        # The reason must fit on the "Bail out!" line: nginx's own errors.
        my $why = join '; ', map { s/^.*?\[(emerg|alert)\] \d+#\d+: /[$1] /r }
                  grep { /\[(?:emerg|alert)\]/ } split /\n/, $log;
        bail_out("$name - Cannot start nginx using command \"$cmd\" "
                 . "(status code $status): $why");
    }
}

# QUIT (graceful; TERM with TEST_NGINX_FAST_SHUTDOWN), wait up to timeout(),
# then TERM, and finally KILL the nginx process group (nginx runs setsid()
# when daemonizing, so the group is exactly that nginx and its workers).
sub kill_process ($$) {
    my ($pid, $name) = @_;
    return unless is_running($pid);

    my $wait = sub {
        my $secs = shift;
        my $deadline = time + $secs;
        while (time < $deadline) {
            return 1 unless is_running($pid);
            waitpid($pid, POSIX::WNOHANG());
            sleep 0.02;
        }
        return !is_running($pid);
    };

    kill($ENV{TEST_NGINX_FAST_SHUTDOWN} ? SIGTERM : SIGQUIT, $pid);
    return if $wait->($Timeout);

    warn "$name - timeout when waiting for the process $pid to exit\n";
    kill(SIGTERM, $pid);
    return if $wait->(1);

    warn "$name - WARNING: killing the child process $pid with force...\n";
    my $pgrp = getpgrp($pid);
    kill(SIGKILL, (defined $pgrp && $pgrp == $pid) ? -$pid : $pid);
    $wait->(1);
    unlink $PidFile;
}

# Only ever stops the nginx this process started (never a pid merely found
# in a pid file: that could belong to another run).
sub stop_nginx ($) {
    my $name = shift;
    my $pid = $NginxPid;
    undef $NginxPid;
    return unless $pid;
    warn "$name - stopping nginx, pid $pid\n" if $Verbose;
    kill_process($pid, $name);
}

# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------

# Lines of the error log written since the previous call (since the start of
# the block for the first call), unless check_accum_error_log() was called.
sub error_log_data () {
    # Give log-phase handlers, which run after the response, time to write.
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    if (!$CheckAccumErrLog && $ErrLogFilePos) {
        seek $in, $ErrLogFilePos, 0;
    }
    my @lines = <$in>;
    $ErrLogFilePos = tell($in) unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data () {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile
        or die "open $AccLogFile failed: $!";
    my @lines = <$in>;
    close $in;
    return \@lines;
}

sub check_prev_block_shutdown_error_log () {
    my $block = $PrevBlock;
    return unless defined $block;
    if (defined $block->shutdown_error_log
        || defined $block->no_shutdown_error_log)
    {
        $CheckShutdownErrorLog->($block, $ENV{TEST_NGINX_NO_CLEAN} ? 1 : 0);
    }
}

# ---------------------------------------------------------------------------
# Block driver
# ---------------------------------------------------------------------------

sub cleanup () {
    $_->() for @CleanupHandlers;
}

sub run_tests () {
    srand($$ + time() * 1000000);
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
        unless defined $ENV{TEST_NGINX_SERVER_PORT};

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', $0 . ' ' . $block->name);
        run_test($block);
        $_->($block) for @TestCleanupHandlers;
        $PrevBlock = $block;
    }
    cleanup();
}

# "--- skip_nginx: N: < 1.21.0 [: reason]", "--- skip_nginx2: N: < a or > b",
# "--- skip_eval: N: perl-expr" and "--- todo: N: reason".
sub skip_and_todo ($) {
    my $block = shift;
    my $name = $block->name;
    my %r = (reason => 'various reasons', todo_reason => 'various reasons');
    my $ver_re = qr/([<>]=?)\s*(\d+)\.(\d+)\.(\d+)/;
    my $cmp = sub {
        my ($op, @v) = @_;
        return eval "$NginxVersion $op " . get_canon_version(@v);
    };

    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            my ($count, $code) = ($1, $2);
            $r{count} = $count;
            $r{reason} = 'skip_eval';
            $r{skip} = eval $code;
            bail_out("$name - skip_eval - failed to eval the Perl code "
                     . "\"$code\": $@") if $@;
        }
    }
    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*$ver_re(?:\s*:\s*(.*))?\s*$/
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my @v = ($1, $2, $3, $4, $5, $6);
        $r{count} = $v[0];
        $r{reason} = $v[5] || "nginx version $v[1] $v[2].$v[3].$v[4]";
        $r{skip} = 1 if $cmp->(@v[1 .. 4]);
    } elsif (defined(my $spec2 = $block->skip_nginx2)) {
        $spec2 =~ /^\s*(\d+)\s*:\s*$ver_re\s*(or|and)\s*$ver_re
                   (?:\s*:\s*(.*))?\s*$/x
            or bail_out("$name - Invalid --- skip_nginx2 spec: $spec2");
        my @v = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);
        $r{count} = $v[0];
        $r{reason} = $v[10] // 'various reasons';
        my $lo = $cmp->(@v[1 .. 4]);
        my $hi = $cmp->(@v[6 .. 9]);
        $r{skip} = 1 if $v[5] eq 'or' ? ($lo || $hi) : ($lo && $hi);
    }
    if (defined(my $spec = $block->todo)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- todo spec: $spec");
        $r{todo} = 1;
        $r{count} = $1;
        $r{todo_reason} = $2;
    }
    return \%r;
}

# nginx must refuse to start: one test on the exit status per repetition,
# then the error log checks against what nginx logged while refusing.
sub run_must_die ($) {
    my $block = shift;
    my $name = $block->name;
    my $must_die = $block->must_die;
    my $args = nginx_args();
    $ErrLogFilePos = 0;

    for my $i (0 .. $RepeatEach - 1) {
        my $status = run_nginx_command($args,
                                       defined $block->suppress_stderr);
        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command "
                             . "line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($must_die, $status >> 8,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        $CheckErrorLog->($block, undef, 0, $i, 0);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing it "
                 . "(req $i)\n";
            $NginxPid = wait_for_pid($name);
            stop_nginx($name);
        }
    }
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;

    my $name = $block->name;
    for my $s (@UnsupportedSections) {
        if (defined $block->$s) {
            bail_out("$name - section \"--- $s\" is not supported by the "
                     . "project's fallback Test::Nginx (t/lib); install "
                     . "upstream Test::Nginx to run this block");
        }
    }

    my $rand_ports = {};
    $RandPorts = $rand_ports;
    my $config = expand_env_in_text($block->config, $name, $rand_ports);
    local $LogLevel = $block->log_level || $LogLevel;

    my $should_restart = 1;
    if (!defined $config) {
        # Upstream semantics: a block without --- config reuses the nginx
        # (and configuration) of the block that ran before it.
        if (!$NoNginxManager && !defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER"
                     . " ?");
        }
        $should_restart = 0;
    } elsif ($NoNginxManager) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name "
                         . "ignored");
        $should_restart = 0;
    }

    my $plan = skip_and_todo($block);

    if (!$NoNginxManager && !$plan->{skip} && $should_restart) {
        $PrevConfig = $config;
        stop_nginx($name);
        unlink $PidFile;
        check_prev_block_shutdown_error_log();

        setup_server_root();
        run_perl_section($block, 'post_setup_server_root');
        write_user_files($block, $rand_ports);
        write_config_file($block, $config, $rand_ports);
        if (!find_binary($NginxBinary)) {
            bail_out("$name - Cannot find the nginx executable in the PATH "
                     . "environment");
        }

        if (defined $block->must_die) {
            run_must_die($block);
            return;
        }

        start_nginx($block);
        sleep $TestNginxSleep;
    }

    run_perl_section($block, 'init');

    $ErrLogFilePos = 0;
    for my $i (1 .. $RepeatEach) {
        write_user_files($block, $rand_ports) if $i > 1;

        if ($plan->{skip} && defined $plan->{count}) {
            SKIP: {
                Test::More::skip("$name - $plan->{reason}", $plan->{count});
            }
        } elsif ($plan->{todo}) {
            TODO: {
                Test::More::todo_skip("$name - $plan->{todo_reason}",
                                      $plan->{count});
            }
        } else {
            $RunTestHelper->($block, 0, $i - 1);
        }
    }
}

# nginx runs as a daemon: turn an interrupt of the test script into a normal
# exit so that the END block below still stops it.  (Upstream leaves it.)
for my $sig (qw(INT TERM HUP)) {
    if (!$SIG{$sig} || $SIG{$sig} eq 'DEFAULT') {
        my $num = $sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1;
        $SIG{$sig} = sub { exit(128 + $num) };
    }
}

END {
    # Keep the exit status Test::Builder computed.
    local $?;
    cleanup();
    if (!$ENV{TEST_NGINX_NO_CLEAN}) {
        stop_nginx('END');
    }
    check_prev_block_shutdown_error_log();
}

1;
