package Net::SMTP::Bulk;

# The seed's interface (options, methods, callbacks, return codes) over libsmtpbulk.
# The engine runs on threads of its own; Perl code runs only here, on the caller's
# thread: results and events are taken from the library's event queue (a file
# descriptor) whenever this module waits or is asked to (pump), and what a callback
# returns goes back to the connection it names.

use 5.010;
use strict;
use warnings;
use Carp ();
use POSIX ();

our $VERSION = '0.30';

require XSLoader;
XSLoader::load('Net::SMTP::Bulk', $VERSION);

use constant UNLIMITED => 0xffffffff;

# Seed event kinds, as the library numbers them (SMTPBULK_EV_*).
my %KIND = (
    connect_pass => 0, connect_fail => 1, auth_pass => 2, auth_fail => 3,
    reconnect_pass => 4, reconnect_fail => 5, pass => 6, fail => 7, hang => 8,
    global_hang => 9, read => 10, complete => 11,
);
my %CODES = map { $_ => 1 } (1, 101, 102, 103, 104, 202, 203);
my @HELD = qw(connect_pass reconnect_pass auth_pass);

my %OPTION = map { $_ => 1 } qw(
    Host Port Hello Debug DebugPath Secure Threads Encode Timeout Hosts GlobalTimeout
    Sleep Retry Auth Callbacks Pipeline
    Window QueueBound Workers TLSCAFile TLSName AuthPlaintext Rate MaxAttempts DeferTime
    LMTP MaxPerConnection
);
my %HOST_OPTION = map { $_ => 1 } qw(Host Port Hello Threads Secure Auth TLSName
    AuthPlaintext LMTP);

# The callbacks a package knows: all of them here; the Method 1 and Method 2 packages
# name theirs, as the seed's documentation does.
sub _callback_names { keys %KIND }
sub _method { 'Net::SMTP::Bulk' }

sub new {
    my $class = shift;
    my %o;
    if (@_ % 2) {
        my $server = shift;
        %o = @_;
        $o{Host} = $server;
    } else {
        %o = @_;
    }
    for my $k (sort keys %o) {
        Carp::carp("$class: unknown option $k (ignored)") unless $OPTION{$k};
    }
    my $self = bless {
        o => \%o, engine => undef, msgs => {}, pending => 0, cur => undef,
        error => '', counts => {pass => 0, fail => 0, hang => 0},
    }, $class;
    my %cb;
    my %known = map { $_ => 1 } $self->_callback_names;
    if (my $c = $o{Callbacks}) {
        Carp::croak("$class: Callbacks must be a hash reference") unless ref $c eq 'HASH';
        for my $name (sort keys %$c) {
            if (!$known{$name}) {
                Carp::carp("$class: $name is not a callback of " . $self->_method
                    . " (ignored)");
                next;
            }
            Carp::croak("$class: callback $name must be a code reference")
                unless ref $c->{$name} eq 'CODE';
            $cb{$name} = $c->{$name};
        }
    }
    $self->{cb} = \%cb;
    $self->{hosts} = $self->_hosts;    # checked now: a bad option fails at new()
    return $self;
}

# "host", "host:port" or "[v6]:port".
sub _split_host {
    my ($h, $port) = @_;
    if ($h =~ /^\[([^\]]+)\](?::(\d+))?$/) {
        return ($1, $2 // $port);
    }
    if ($h =~ /^([^:]+):(\d+)$/) {
        return ($1, $2);
    }
    return ($h, $port);
}

sub _secure {
    my ($v, $what) = @_;
    return 0 unless defined $v;
    Carp::croak("Net::SMTP::Bulk: $what Secure must be 0 to 4")
        unless $v =~ /^[0-4]$/;
    return $v + 0;
}

sub _hosts {
    my ($self) = @_;
    my $o = $self->{o};
    my @in;
    push @in, {%$o, Hosts => undef} if defined $o->{Host};
    if (defined $o->{Hosts}) {
        Carp::croak("Net::SMTP::Bulk: Hosts must be an array of hash references")
            unless ref $o->{Hosts} eq 'ARRAY';
        for my $h (@{$o->{Hosts}}) {
            Carp::croak("Net::SMTP::Bulk: each of Hosts must be a hash reference")
                unless ref $h eq 'HASH';
            for my $k (sort keys %$h) {
                Carp::carp("Net::SMTP::Bulk: unknown option $k in Hosts (ignored)")
                    unless $HOST_OPTION{$k};
            }
            # A host's own options, else the top level's.
            my %m = map { $_ => (exists $h->{$_} ? $h->{$_} : $o->{$_}) } keys %HOST_OPTION;
            push @in, \%m;
        }
    }
    Carp::croak("Net::SMTP::Bulk: no Host given") unless @in;
    my @out;
    for my $h (@in) {
        Carp::croak("Net::SMTP::Bulk: a host without Host") unless defined $h->{Host};
        my ($name, $port) = _split_host($h->{Host}, $h->{Port});
        my %e = (host => $name, port => $port // 25, hello => $h->{Hello},
            connections => $h->{Threads} // 2, secure => _secure($h->{Secure}, $name),
            tls_name => $h->{TLSName}, auth_plaintext => $h->{AuthPlaintext} ? 1 : 0,
            lmtp => $h->{LMTP} ? 1 : 0);
        if (my $a = $h->{Auth}) {
            Carp::croak("Net::SMTP::Bulk: Auth must be [MECHANISM, user, password]")
                unless ref $a eq 'ARRAY' && @$a == 3;
            @e{qw(auth user pass)} = @$a;
        }
        push @out, \%e;
    }
    return \@out;
}

sub _ms {
    my ($v, $def) = @_;
    return int(($v // $def) * 1000);
}

# Retry counts: the seed's 0 is "unlimited".
sub _count {
    my ($v, $def) = @_;
    $v //= $def;
    return $v == 0 ? UNLIMITED : int($v);
}

sub _engine {
    my ($self) = @_;
    return $self->{engine} if $self->{engine};
    my $o = $self->{o};
    my $sleep = $o->{Sleep} // {};
    my $retry = $o->{Retry} // {};
    Carp::croak("Net::SMTP::Bulk: Sleep and Retry must be hash references")
        unless ref $sleep eq 'HASH' && ref $retry eq 'HASH';
    my $pipeline = $o->{Pipeline} // 0;
    Carp::croak("Net::SMTP::Bulk: Pipeline must be 0, 1 or 2") unless $pipeline =~ /^[012]$/;
    my $debug = $o->{Debug} // 0;
    Carp::croak("Net::SMTP::Bulk: Debug must be 0 to 10") unless $debug =~ /^(?:\d|10)$/;
    my %kinds;
    $kinds{$_} = 1 for grep { exists $KIND{$_} } keys %{$self->{cb}};
    # hang and complete are needed for the counts; pass and fail come as results.
    $kinds{hang} = $kinds{complete} = 1;
    my $mask = 0;
    $mask |= 1 << $KIND{$_} for keys %kinds;
    # A connection that comes up waits for its callback's verdict before it takes a
    # message, as the seed's synchronous callbacks made it: 101 from connect_pass
    # means it carries nothing.
    my $hold = 0;
    $hold |= 1 << $KIND{$_} for grep { $self->{cb}{$_} } @HELD;
    $self->{held} = {map { $_ => 1 } grep { $self->{cb}{$_} } @HELD};
    my %opts = (
        pipeline => $pipeline,
        debug => $debug,
        debug_path => $o->{DebugPath},
        timeout_ms => _ms($o->{Timeout}, 60),
        global_timeout_ms => _ms($o->{GlobalTimeout}, 120),
        sleep_hang_ms => _ms($sleep->{Hang}, 0),
        reconnect_ms => _ms($sleep->{Fail}, 0),
        retry_hang => _count($retry->{Hang}, 1),
        retry_global_hang => _count($retry->{GlobalHang}, 1),
        retry_fail => _count($retry->{Fail}, 5),
        window => $o->{Window} // 0,
        queue_bound => $o->{QueueBound} // 10000,
        workers => $o->{Workers} // 0,
        tls_ca_file => $o->{TLSCAFile},
        rate => $o->{Rate} // 0,
        max_attempts => $o->{MaxAttempts} // 0,
        defer_ms => defined $o->{DeferTime} ? _ms($o->{DeferTime}, 1) : 0,
        max_per_conn => $o->{MaxPerConnection} // 0,
        event_kinds => $mask,
        event_hold => $hold,
    );
    $self->{engine} = Net::SMTP::Bulk::Engine->new(\%opts, $self->{hosts});
    my $rc = $self->{engine}->start;
    Carp::croak("Net::SMTP::Bulk: " . Net::SMTP::Bulk::Engine::strerror($rc)) if $rc;
    return $self->{engine};
}

sub _bytes {
    my ($self, $s) = @_;
    return '' unless defined $s;
    if ($self->{o}{Encode}) {
        utf8::encode($s) if utf8::is_utf8($s);
    } elsif (utf8::is_utf8($s) && !utf8::downgrade($s, 1)) {
        Carp::croak("Net::SMTP::Bulk: wide character in the message: use Encode => 1");
    }
    return $s;
}

# ---- the Net::SMTP-style methods ------------------------------------------------------

sub auth {
    my $self = shift;
    my ($mech, $user, $pass) = @_ == 3 ? @_ : ('AUTO', @_);
    if ($self->{engine}) {
        $self->{error} = 'auth() after sending began: connections are already up';
        Carp::carp("Net::SMTP::Bulk: $self->{error}");
        return 0;
    }
    for my $h (@{$self->{hosts}}) {
        @$h{qw(auth user pass)} = ($mech, $user, $pass) unless defined $h->{auth};
    }
    return 1;
}

sub mail {
    my ($self, $from) = @_;
    $self->{cur} = {from => $self->_bytes($from // ''), to => [], data => undef};
    return 1;
}

sub to {
    my ($self, @rcpts) = @_;
    unless ($self->{cur}) {
        $self->{error} = 'to() before mail()';
        return 0;
    }
    push @{$self->{cur}{to}}, map { $self->_bytes($_) } @rcpts;
    return 1;
}

sub data {
    my ($self, @data) = @_;
    unless ($self->{cur} && @{$self->{cur}{to}}) {
        $self->{error} = 'data() without mail() and to()';
        return 0;
    }
    $self->{cur}{data} //= '';
    return @data ? $self->datasend(@data) : 1;
}

sub datasend {
    my ($self, @data) = @_;
    my $cur = $self->{cur};
    unless ($cur && defined $cur->{data}) {
        $self->{error} = 'datasend() before data()';
        return 0;
    }
    for my $d (@data) {
        $cur->{data} .= $self->_bytes($_) for ref $d eq 'ARRAY' ? @$d : ($d);
    }
    return 1;
}

sub dataend {
    my ($self, @data) = @_;
    return 0 if @data && !$self->datasend(@data);
    my $cur = delete $self->{cur};
    unless ($cur && defined $cur->{data}) {
        $self->{error} = 'dataend() before data()';
        return 0;
    }
    my $e = $self->_engine;
    for (;;) {
        # Non-blocking, so callbacks keep running while the queue is full.
        my ($rc, $id) = $e->submit($cur->{from}, $cur->{to}, $cur->{data}, 1);
        if ($rc == 0) {
            $self->{msgs}{$id} = {from => $cur->{from}, to => $cur->{to}};
            $self->{pending}++;
            last;
        }
        if ($rc == -POSIX::EAGAIN()) {
            $self->pump(10);
            next;
        }
        $self->{error} = Net::SMTP::Bulk::Engine::strerror($rc);
        return 0;
    }
    $self->pump(0);
    return 1;
}

sub reconnect {
    my ($self) = @_;
    my $e = $self->_engine;
    my $i = 0;
    for my $h (@{$self->{hosts}}) {
        $e->act($i, $_, 202) for 0 .. $h->{connections} - 1;
        $i++;
    }
    return 1;
}

sub quit {
    my ($self, $id) = @_;
    $self->{quit_id} = $id // time;
    my $e = $self->_engine;
    $self->pump(100) while $self->{pending} > 0;
    $self->pump(0);    # events that came with the last results
    my $c = $self->{counts};
    print STDERR "Net::SMTP::Bulk [$self->{quit_id}]: $c->{pass} passed, $c->{fail} failed, "
        . "$c->{hang} hung\n" if ($self->{o}{Debug} // 0) >= 5;
    $e->close;    # idle connections say QUIT
    $self->{engine} = undef;
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    $self->{engine}->close if $self->{engine};
}

# ---- beyond the seed ------------------------------------------------------------------

sub error { $_[0]{error} }
sub pending { $_[0]{pending} }
sub counts { +{%{$_[0]{counts}}} }

# The descriptor that is readable while results or events wait (for an event loop's
# io watcher; call pump() when it is readable). Starts the engine.
sub fileno { $_[0]->_engine->fd }

# Results as hashes (status, category, code, text, rcpts, attempts...), for callers
# who want them beyond the callbacks: on => 1 keeps them for results().
sub keep_results { $_[0]{keep} = $_[1] // 1; $_[0] }
sub results { my $r = $_[0]{kept} // []; $_[0]{kept} = []; $r }

# Take what waits and run its callbacks; waits up to $ms for the first (0: do not).
# Returns how many items were handled.
sub pump {
    my ($self, $ms) = @_;
    my $e = $self->{engine} or return 0;
    my $n = 0;
    while (my $it = $e->next_event($n ? 0 : ($ms // 0))) {
        $n++;
        $self->_dispatch($it);
    }
    return $n;
}

sub _dispatch {
    my ($self, $it) = @_;
    my $kind = $it->{kind};
    my ($name, $arg);
    if ($kind eq 'result') {
        my $m = delete $self->{msgs}{$it->{id}} // {};
        $self->{pending}--;
        $arg = {%$m, %$it};
        delete $arg->{kind};
        $name = $it->{status} eq 'delivered' || $it->{status} eq 'partial' ? 'pass'
              : $it->{status} eq 'timed_out' ? 'hang' : 'fail';
        $arg->{final} = 1;
        $self->{counts}{$name}++;
        push @{$self->{kept}}, $arg if $self->{keep};
    } elsif ($kind eq 'hang') {
        $name = 'hang';
        my $m = $it->{id} ? $self->{msgs}{$it->{id}} : undef;
        $arg = {%{$m // {}}, %$it, final => 0};
    } elsif ($kind eq 'read') {
        $name = 'read';
        $arg = $it->{line};
    } else {
        $name = $kind;
        $arg = {%$it};
    }
    my $cb = $self->{cb}{$name} or return;
    my $host = $it->{host_index} >= 0 ? $it->{host} : undef;
    my $code = eval { $cb->($self, [$host, $it->{connection}], $arg) };
    my $died = $@;
    if (!defined $code || $code !~ /^\d+$/) {
        $code = 1;
    } elsif (!$CODES{$code}) {
        Carp::carp("Net::SMTP::Bulk: callback $name returned $code: not a code (ignored)");
        $code = 1;
    }
    # The connection it names, unless there is none (global_hang, complete, a
    # message that ended on no connection). A held one hears even 1 (and a callback
    # that died): it waits for it.
    $self->{engine}->act($it->{host_index}, $it->{connection}, $code)
        if ($code != 1 || $self->{held}{$name}) && $it->{host_index} >= 0
        && $it->{connection} >= 0;
    die $died if $died;
}

1;

__END__

=encoding UTF-8

=head1 NAME

Net::SMTP::Bulk - bulk SMTP with the Net::SMTP::Bulk interface, on libsmtpbulk

=head1 SYNOPSIS

    use Net::SMTP::Bulk;

    my $smtp = Net::SMTP::Bulk->new('relay.example.com', Port => 25, Threads => 10,
        Pipeline => 2, Callbacks => { fail => sub { my ($smtp, $where, $msg) = @_;
            warn "$msg->{to}[0]: $msg->{code} $msg->{text}\n"; return 1 } });
    for my $rcpt (@list) {
        $smtp->mail('news@example.com');
        $smtp->to($rcpt);
        $smtp->data();
        $smtp->datasend("From: news\@example.com\nTo: $rcpt\nSubject: hi\n\nHello\n");
        $smtp->dataend();
    }
    $smtp->quit;

=head1 DESCRIPTION

The native successor of Net::SMTP::Bulk 0.23: the same packages (this one, the
seed's Method 2 as L<Net::SMTP::Bulk::AnyEvent> and Method 1 as
L<Net::SMTP::Bulk::Coro>), options, methods, callbacks and return codes, sending
through libsmtpbulk's engine: many connections per host, pipelining, CHUNKING where the
server offers it, threads of its own. Perl code runs only on your thread: results and
events wait in a queue until this module takes them — while C<dataend> waits for room,
in C<quit>, or when you call C<pump> — so a callback runs a little after what it
reports happened.

Sending starts at the first C<dataend>; messages wait in a queue of at most
C<QueueBound> (10,000), so memory stays flat however many you send: C<dataend> waits
(running callbacks meanwhile) while the queue is full. C<quit> waits for every result.

=head1 OPTIONS

    Option        Default  Meaning
    Host          -        host name or address; "host:port" and "[v6]:port" too
    Port          25
    Hello         the machine's name (the seed used the server's name, which a
                  receiver checking the EHLO name holds against the sender)
    Debug         0        0 off, 5 summary, 7 hangs and fails, 8 passes, 10 protocol
    DebugPath     stderr   one file per host and connection: [HOST] [THREAD] [YYYY]
                           [MM] [DD] [WK] [hh] [mm]; "default" is debug_[HOST]_[THREAD].txt
    Secure        0        0 none, 1 SSL no verify, 2 SSL verify, 3 STARTTLS no verify,
                           4 STARTTLS verify
    Threads       2        connections per host
    Encode        0        1: character strings are sent as UTF-8
    Timeout       60       seconds a connection waits for a reply before it is hung
    Hosts         -        [ {Host=>..., Port=>..., Threads=>..., Secure=>..., Auth=>...}, ... ]
                           each with its own options, else the top level's
    GlobalTimeout 120      seconds without a reply on any connection: all reconnect
    Sleep         {Hang => 0, Fail => 0}   seconds before reconnecting after a hang,
                           a failure (0 after a failure: 100 ms, not a tight loop)
    Retry         {Hang => 1, GlobalHang => 1, Fail => 5}  0 = unlimited
    Auth          ['AUTO' | MECHANISM, user, password]  AUTO picks the strongest both
                           sides have (SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN); only over
                           TLS unless AuthPlaintext
    Callbacks     {}       name => sub, below
    Pipeline      0        0 one round trip per command, 1 two per message, 2 one per
                           message (BDAT when the server offers CHUNKING)

Beyond the seed: C<Window> (transactions in flight per connection with Pipeline 2 and
CHUNKING, 8), C<QueueBound> (10,000), C<Workers> (engine threads; one per CPU),
C<TLSCAFile>, C<TLSName>, C<AuthPlaintext>, C<Rate> (messages per second per host),
C<MaxAttempts> (3), C<DeferTime> (seconds before a 4xx retry, 1), C<LMTP>,
C<MaxPerConnection>.

=head1 METHODS

C<new($server, %options)>, C<new(%options)>; C<auth([MECHANISM,] USER, PASS)> (before
the first C<dataend>); C<mail(ADDRESS)>; C<to(ADDRESS, ...)> (several recipients per
message, unlike the seed); C<data([DATA])>; C<datasend(DATA)> (a string or an array
reference of strings); C<dataend([DATA])>; C<reconnect()> (every connection, after
what it has in flight); C<quit([ID])>. Each returns 1, or 0 with the reason in
C<error()>.

Beyond the seed: C<error()>, C<pending()> (messages without a result yet),
C<counts()> ({pass, fail, hang}), C<fileno()> (a descriptor readable while results
wait: watch it with an event loop and call C<pump>), C<pump($ms)> (run the callbacks
of what waits, waiting up to $ms for the first), C<keep_results(1)> and C<results()>
(every result as a hash: id, from, to, status, category, code, enhanced, text, rcpts
[{rcpt, reply}], attempts, latency_ms, host, connection).

=head1 CALLBACKS

Each is called as C<< $cb->($smtp, [$host, $thread], $arg) >>: C<$thread> is the
connection's index within its host (from 0); C<$arg> is the message concerned (pass,
fail, hang: a hash as in C<results()>, plus C<final>), the event (connect and auth
ones: C<error>, C<error_text>), or the line (read). A message ends with exactly one of
pass (delivered, or some recipients), fail (refused or failed, with the server's
reply) or hang with C<final> 1 (it timed out after its retries); hang with C<final> 0
says a hung connection was ended and the message goes again.

A connection that comes up waits for connect_pass's (or reconnect_pass's, auth_pass's)
return before it takes a message, when you gave that callback: so 101 from connect_pass
means it carries nothing, as in the seed. The others do not hold anything up.

The return value acts on the connection named: 1 carry on; 101 remove it for good;
102 remove it until the end of the batch, then reconnect; 103 the same with a fresh
connection (no TLS resumption); 104 take no new messages until the end of the batch;
202 reconnect now; 203 restart now. It takes effect when the engine next looks at that
connection, after the messages it already has in flight (1xx) or by ending them, to
go again elsewhere free of charge (2xx). "The end of the batch" is the moment nothing
waits in the queue. Events without a connection ignore the code.

=head1 DIFFERENCES FROM THE SEED, AND WHY

Every reply is checked (a 5xx RCPT calls fail with the reply; the seed waited and
hung); line ends are sent as CRLF and lines starting with a dot are stuffed; timeouts
hold for each reply, not only once; retries count and end. Hello defaults to this
machine's name. Callbacks run on your thread, after the fact, as said above.

=cut
