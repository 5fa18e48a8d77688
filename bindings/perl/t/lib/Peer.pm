package Peer;

# Test peers started by the tests themselves, on loopback, each stopped at the end:
# our sink (smtpbulk sink, from SMTPBULK_BIN or the build tree) and Postfix's
# smtp-sink. Every wait is bounded.

use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

sub bin {
    return $ENV{SMTPBULK_BIN} if $ENV{SMTPBULK_BIN};
    for my $p ('../../build/release/smtpbulk', '../../build/asan/smtpbulk') {
        return $p if -x $p;
    }
    die "no smtpbulk binary: set SMTPBULK_BIN\n";
}

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', ReuseAddr => 1) or die "no free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub _wait_listening {
    my ($port, $pid) = @_;
    my $end = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $end) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
            Proto => 'tcp', Timeout => 1);
        if ($c) { close $c; return 1 }
        die "the peer exited before it listened\n" if waitpid($pid, POSIX::WNOHANG()) == $pid;
        Time::HiRes::sleep(0.02);
    }
    die "the peer did not listen on $port within 10 s\n";
}

# Our sink with extra arguments; its counts come from stop().
sub sink {
    my ($class, @args) = @_;
    my $port = free_port();
    my $out = "/tmp/perl-sink-$$-$port.json";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>', "$out.err" or die;
        { exec bin(), 'sink', '--quiet', '--json', '--threads', '1', '--listen',
            "127.0.0.1:$port", @args }
        POSIX::_exit(127);
    }
    # A probe connection counts in the sink's connections: none is asked of it.
    _wait_listening($port, $pid);
    return bless {pid => $pid, port => $port, out => $out, kind => 'sink'}, $class;
}

# Postfix's smtp-sink: -c counts, -u for an unprivileged run as root.
sub smtp_sink {
    my ($class, @args) = @_;
    my $port = free_port();
    my $out = "/tmp/perl-smtp-sink-$$-$port.log";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>&', \*STDOUT or die;
        my @u = $> == 0 ? ('-u', 'nobody') : ();
        { exec '/usr/sbin/smtp-sink', @u, @args, "127.0.0.1:$port", '256' }
        POSIX::_exit(127);
    }
    _wait_listening($port, $pid);
    return bless {pid => $pid, port => $port, out => $out, kind => 'smtp-sink'}, $class;
}

# aiosmtpd (tests/support/aiosmtpd_peer.py, SMTPBULK_AIOSMTPD) with its options; what
# it received is in events(), one line per MAIL, AUTH and message.
sub aiosmtpd {
    my ($class, @args) = @_;
    my $script = $ENV{SMTPBULK_AIOSMTPD} // '../../tests/support/aiosmtpd_peer.py';
    my $port = free_port();
    my $events = "/tmp/perl-aiosmtpd-$$-$port.events";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', "$events.log" or die;
        open STDERR, '>&', \*STDOUT or die;
        { exec '/usr/bin/python3', $script, '--port', $port, '--events', $events, @args }
        POSIX::_exit(127);
    }
    _wait_listening($port, $pid);
    return bless {pid => $pid, port => $port, out => $events, kind => 'aiosmtpd'}, $class;
}

sub events {
    my ($self) = @_;
    open my $f, '<', $self->{out} or return ();
    return <$f>;
}

sub port { $_[0]{port} }
sub addr { "127.0.0.1:$_[0]{port}" }

# Stop it; our sink's counts as a hash (messages, recipients, connections...).
sub stop {
    my ($self) = @_;
    return $self->{counts} if $self->{stopped}++;
    kill 'TERM', $self->{pid};
    my $end = Time::HiRes::time() + 10;
    while (waitpid($self->{pid}, POSIX::WNOHANG()) == 0) {
        if (Time::HiRes::time() > $end) { kill 'KILL', $self->{pid}; waitpid($self->{pid}, 0); last }
        Time::HiRes::sleep(0.01);
    }
    my %c;
    if ($self->{kind} eq 'sink' && open my $f, '<', $self->{out}) {
        local $/;
        my $j = <$f>;
        %c = $j =~ /"(\w+)": (\d+)/g;
    }
    unlink $self->{out}, "$self->{out}.err", "$self->{out}.log" unless $self->{kind} eq 'aiosmtpd';
    return $self->{counts} = \%c;
}

sub DESTROY {
    my ($self) = @_;
    $self->stop unless $self->{stopped};
    unlink $self->{out}, "$self->{out}.log" if $self->{kind} eq 'aiosmtpd';
}

1;
