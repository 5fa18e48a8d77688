# The Perl row of bench/perl.sh: a script as the seed's documentation writes it.
#   perl perl_send.pl HOST PORT MESSAGES SIZE THREADS PIPELINE
use strict;
use warnings;
use Net::SMTP::Bulk;

my ($host, $port, $n, $size, $threads, $pipeline) = @ARGV;
my ($pass, $fail) = (0, 0);
my $smtp = Net::SMTP::Bulk->new($host, Port => $port, Threads => $threads,
    Pipeline => $pipeline,
    Callbacks => {pass => sub { $pass++; 1 }, fail => sub { $fail++; 1 }});
my $head = "Subject: bench\n\n";
my $body = $head . ('x' x ($size - length($head) - 1)) . "\n";
for my $i (1 .. $n) {
    $smtp->mail('s@example.com');
    $smtp->to("r$i\@example.org");
    $smtp->data();
    $smtp->datasend($body);
    $smtp->dataend or die "message $i: " . $smtp->error . "\n";
}
$smtp->quit;
print "sent $n, passed $pass, failed $fail\n";
exit($pass == $n ? 0 : 1);
