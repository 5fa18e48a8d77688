# 200,000 messages through the module with a queue bound: resident memory stays flat
# (what is sent is not kept; at most QueueBound messages wait), and each has its one
# result.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Peer;
use Net::SMTP::Bulk;

sub rss_kb {
    open my $f, '<', '/proc/self/status' or return 0;
    while (<$f>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

my $sink = Peer->sink;
my $pass = 0;
my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port, Threads => 4,
    Pipeline => 2, QueueBound => 2000, Callbacks => {pass => sub { $pass++; 1 }});
my $body = "Subject: flat\n\n" . ("x" x 900) . "\n";
my ($at20k, $at200k);
for my $i (1 .. 200_000) {
    $smtp->mail('s@example.com');
    $smtp->to("r$i\@example.org");
    $smtp->data();
    $smtp->datasend($body);
    $smtp->dataend or BAIL_OUT("dataend: " . $smtp->error);
    $at20k = rss_kb() if $i == 20_000;
}
ok($smtp->quit, 'quit');
$at200k = rss_kb();
my $c = $sink->stop;
is($pass, 200_000, 'every message passed');
is($c->{messages}, 200_000, 'the sink got each');
my $growth = ($at200k - $at20k) / 1024;
diag(sprintf 'RSS %.1f MB at 20,000, %.1f MB at 200,000', $at20k / 1024, $at200k / 1024);
cmp_ok($growth, '<', 16, 'flat: under 16 MB more for ten times the messages');
done_testing;
