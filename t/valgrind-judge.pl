#!/usr/bin/perl

# Judges the memcheck logs of `make test-valgrind` (one file per nginx
# process): fails on any invalid access, use of uninitialised memory or
# bad free anywhere, and on a definite leak whose stack passes through
# the module. Prints a summary line per log and the offending records.
#
#     perl t/valgrind-judge.pl DIR

use strict;
use warnings;

my $dir = shift or die "usage: $0 DIR\n";
my @logs = sort glob "$dir/vg.*.log";

die "valgrind-judge: no log in $dir: did nginx run under valgrind?\n"
    unless @logs;

my $bad = 0;
my $files = 0;

for my $log (@logs) {
    open my $in, '<', $log or die "$log: $!\n";
    my $text = do { local $/; <$in> };
    close $in;

    $files++;

    # records are separated by "==PID== " blank lines
    my @records = split /^==\d+==\s*\n/m, $text;

    for my $r (@records) {
        my $why;

        if ($r =~ /^==\d+== (Invalid (?:read|write|free)|Mismatched free|
                             Conditional jump or move depends on
                             uninitialised|Use of uninitialised|
                             Syscall param .* uninitialised|
                             Source and destination overlap)/mx)
        {
            $why = $1;

        } elsif ($r =~ /definitely lost in loss record/
                 && $r =~ /ngx_http_llm_/)
        {
            $why = 'definite leak in the module';
        }

        next unless $why;

        $bad++;
        print "valgrind-judge: $log: $why\n$r\n";
    }

    my ($errors) = $text =~ /ERROR SUMMARY: (\d+) errors/;
    my ($definite) = $text =~ /definitely lost: ([\d,]+) bytes/;
    printf "valgrind-judge: %s: %s errors, %s bytes definitely lost\n",
           $log, $errors // '?', $definite // 0;
}

print "valgrind-judge: $files logs, ",
      $bad ? "$bad problems\n" : "clean\n";

exit($bad ? 1 : 0);
