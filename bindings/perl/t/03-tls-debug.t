# Secure 1-4 against our TLS sink with Auth AUTO; auth_pass and auth_fail; Debug with
# DebugPath files; quit with an ID; Encode.
use strict;
use warnings;
use Test::More;
use File::Temp ();
use lib 't/lib';
use Peer;
use Net::SMTP::Bulk;
use Net::SMTP::Bulk::Coro;

my $dir = File::Temp::tempdir(CLEANUP => 1);
my $certs = $ENV{SMTPBULK_CERTS_SCRIPT} // '../../tests/support/make_certs.sh';
system("bash $certs $dir/pki > $dir/certs.log 2>&1") == 0 or BAIL_OUT("certificates: see $dir/certs.log");

sub one {
    my ($smtp, $i) = @_;
    $smtp->mail('s@example.com');
    $smtp->to("r$i\@example.org");
    $smtp->data();
    $smtp->datasend("Subject: $i\n\nbody\n");
    return $smtp->dataend;
}

for my $secure (1 .. 4) {
    my $mode = $secure <= 2 ? 'smtps' : 'starttls';
    my $sink = Peer->sink('--tls', $mode, '--cert', "$dir/pki/srv.pem", '--key',
        "$dir/pki/srv.key", '--auth-user', 'alice:s3cret');
    my ($pass, $ap, $af) = (0, 0, 0);
    my $smtp = Net::SMTP::Bulk::Coro->new('127.0.0.1', Port => $sink->port, Secure => $secure,
        TLSCAFile => "$dir/pki/ca.pem", Threads => 2, Auth => ['AUTO', 'alice', 's3cret'],
        Callbacks => {pass => sub { $pass++; 1 }, auth_pass => sub { $ap++; 1 },
                      auth_fail => sub { $af++; 1 }});
    ok(one($smtp, $_), "Secure $secure: queued") for 1 .. 10;
    ok($smtp->quit, 'quit');
    my $c = $sink->stop;
    is($pass, 10, "Secure $secure: 10 passed");
    is($c->{messages}, 10, 'the TLS sink got them');
    cmp_ok($c->{tls_handshakes}, '>=', 2, 'over TLS');
    # A connection that logged in after the last result may not be heard of before
    # quit closes the engine: at least one.
    cmp_ok($ap, '>=', 1, 'auth_pass');
    is($af, 0, 'no auth_fail');
}

{   # a wrong password: auth_fail, and the messages fail, none sent
    my $sink = Peer->sink('--tls', 'starttls', '--cert', "$dir/pki/srv.pem", '--key',
        "$dir/pki/srv.key", '--auth-user', 'alice:s3cret');
    my ($af, $fail) = (0, 0);
    my $smtp = Net::SMTP::Bulk::Coro->new('127.0.0.1', Port => $sink->port, Secure => 3,
        Threads => 1, Callbacks => {auth_fail => sub { $af++; 1 }, fail => sub { $fail++; 1 }});
    ok($smtp->auth('alice', 'wrong'), 'auth() before sending');
    ok(one($smtp, 1), 'queued');
    ok($smtp->quit, 'quit');
    my $c = $sink->stop;
    cmp_ok($af, '>=', 1, 'auth_fail');
    is($fail, 1, 'the message failed');
    is($c->{messages} // 0, 0, 'nothing was sent');
}

{   # Debug 10 into DebugPath files, one per host and thread; quit(ID) in the summary
    my $sink = Peer->sink;
    my $path = "$dir/dbg/debug_[HOST]_[THREAD].txt";
    open my $olderr, '>&', \*STDERR or die;
    open STDERR, '>', "$dir/stderr.txt" or die;
    my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port, Threads => 2,
        Debug => 10, DebugPath => $path);
    one($smtp, $_) for 1 .. 4;
    $smtp->quit('run-42');
    open STDERR, '>&', $olderr or die;
    $sink->stop;
    my @files = sort glob("$dir/dbg/debug_127.0.0.1*");
    is(scalar @files, 2, 'a file per thread') or diag("@files");
    ok(-e "$dir/dbg/debug_engine_main.txt", "and the engine's own");
    my $text = join '', map { local (@ARGV, $/) = ($_); <> } @files;
    like($text, qr/MAIL FROM:<s\@example\.com>/, 'the protocol trace');
    like($text, qr/250/, 'with the replies');
    my $err = do { local (@ARGV, $/) = ("$dir/stderr.txt"); <> };
    like($err, qr/\[run-42\]: 4 passed, 0 failed, 0 hung/, 'quit(ID) names the run');
}

{   # Encode => 1: character strings go out as UTF-8; without it a wide one is refused
    my $sink = Peer->sink;
    my $pass = 0;
    my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port, Encode => 1,
        Callbacks => {pass => sub { $pass++; 1 }});
    $smtp->mail('s@example.com');
    $smtp->to('r@example.org');
    $smtp->data("Subject: caf\x{e9} \x{263a}\n\nna\x{ef}ve\n");
    ok($smtp->dataend, 'sent with Encode');
    $smtp->quit;
    my $c = $sink->stop;
    is($pass, 1, 'passed');
    my $plain = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port);
    $plain->mail('s@example.com');
    $plain->to('r@example.org');
    ok(!eval { $plain->data("\x{263a}\n"); 1 }, 'a wide character without Encode is refused');
    like($@, qr/wide character/, 'with a reason');
}

done_testing;
