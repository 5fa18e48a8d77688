// Dot-stuffing and CRLF normalisation, including every split across buffers.
#include <gtest/gtest.h>

#include <random>
#include <string>

extern "C" {
#include "dotstuff.h"
}

// Run the transform over `in` fed in pieces of `piece` bytes, into an output buffer of
// `outcap` bytes at a time.
static std::string stuff(const std::string& in, size_t piece, size_t outcap = 64) {
  dotstuff d;
  dotstuff_init(&d);
  std::string out;
  std::vector<char> buf(outcap);
  size_t off = 0;
  while (off < in.size()) {
    size_t len = std::min(piece, in.size() - off);
    size_t done = 0;
    while (done < len) {
      size_t used = 0;
      size_t n = dotstuff_run(&d, in.data() + off + done, len - done, &used, buf.data(), buf.size());
      out.append(buf.data(), n);
      done += used;
    }
    off += len;
  }
  char fin[DOTSTUFF_FINISH_MAX];
  out.append(fin, dotstuff_finish(&d, fin));
  return out;
}

TEST(DotStuff, LeadingDotsDoubled) {
  EXPECT_EQ(stuff(".a\r\n..b\r\nc.d\r\n", 1000), "..a\r\n...b\r\nc.d\r\n.\r\n");
}

TEST(DotStuff, BareLfAndCrBecomeCrlf) {
  EXPECT_EQ(stuff("a\nb\rc\r\nd", 1000), "a\r\nb\r\nc\r\nd\r\n.\r\n");
}

TEST(DotStuff, CannotSmuggleEndOfData) {
  // Every way of spelling "end of data" inside a body must come out stuffed.
  for (std::string evil : {"x\n.\nMAIL FROM:<a@b>\n", "x\r.\rRSET\r", "x\r\n.\r\nQUIT\r\n",
                           "x\n.\r\n", ".\r\n", "x\r\r\n.\r\n"}) {
    std::string out = stuff(evil, 1000);
    // The only CRLF.CRLF is the terminator at the very end.
    size_t p = ("\r\n" + out).find("\r\n.\r\n");
    EXPECT_EQ(p, out.size() - 3) << "input: " << evil;
    EXPECT_EQ(out.find('\n'), out.find("\r\n") + 1);
  }
}

TEST(DotStuff, EmptyBodyIsJustTheDot) {
  EXPECT_EQ(stuff("", 1), ".\r\n");
}

TEST(DotStuff, MissingFinalNewlineAdded) {
  EXPECT_EQ(stuff("abc", 1000), "abc\r\n.\r\n");
  EXPECT_EQ(stuff("abc\r", 1000), "abc\r\n.\r\n");
}

TEST(DotStuff, SameOutputForEverySplit) {
  std::mt19937 rng(42);
  const char alphabet[] = {'.', '\r', '\n', 'a', ' '};
  for (int round = 0; round < 200; round++) {
    std::string in;
    size_t len = rng() % 40;
    for (size_t i = 0; i < len; i++) in += alphabet[rng() % sizeof(alphabet)];
    std::string whole = stuff(in, in.size() + 1, 4096);
    for (size_t piece = 1; piece <= in.size(); piece++)
      for (size_t cap : {4, 5, 7, 64}) ASSERT_EQ(stuff(in, piece, cap), whole) << "input " << in;
  }
}

TEST(DotStuff, CleanDetection) {
  EXPECT_TRUE(dotstuff_is_clean("", 0));
  EXPECT_TRUE(dotstuff_is_clean("a\r\nb\r\n", 6));
  EXPECT_FALSE(dotstuff_is_clean("a\r\n.b\r\n", 7));
  EXPECT_FALSE(dotstuff_is_clean(".a\r\n", 4));
  EXPECT_FALSE(dotstuff_is_clean("a\nb\r\n", 5));
  EXPECT_FALSE(dotstuff_is_clean("a\rb\r\n", 5));
  EXPECT_FALSE(dotstuff_is_clean("ab", 2));
  // A clean body sent as is plus ".\r\n" equals what the transform makes of it.
  std::string body = "Subject: x\r\n\r\nhello\r\n";
  ASSERT_TRUE(dotstuff_is_clean(body.data(), body.size()));
  EXPECT_EQ(stuff(body, 1000), body + ".\r\n");
}

TEST(DotStuff, WireSizeCountsCrlfButNotStuffing) {
  for (std::string in : {"", "a", "a\r\n", "a\nb", ".x\n..y\r", "\r\r\n\n", "x\r"}) {
    std::string out = stuff(in, 1000);
    // The transform's output minus the stuffed dots and the ".\r\n" terminator.
    size_t stuffed = 0;
    for (size_t i = 0; i + 3 < out.size(); i++)
      if (out[i] == '.' && (i == 0 || out[i - 1] == '\n')) stuffed++, i++;
    EXPECT_EQ(dotstuff_wire_size(in.data(), in.size()), out.size() - 3 - stuffed) << in;
  }
}

// The submit path's fast scan against the plain definition: CRLF line ends only, and a
// final CRLF (or nothing at all).
static bool canonical_ref(const std::string& b) {
  if (b.empty()) return true;
  if (b.size() < 2 || b.compare(b.size() - 2, 2, "\r\n") != 0) return false;
  for (size_t i = 0; i < b.size(); i++) {
    if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) return false;
    if (b[i] == '\r' && (i + 1 == b.size() || b[i + 1] != '\n')) return false;
  }
  return true;
}

TEST(Dotstuff, IsCanonicalMatchesTheDefinition) {
  for (const char* s : {"", "\r\n", "a\r\n", "\n", "\r", "a", "a\n", "a\r", "\r\r\n",
                        "\n\r\n", "a\rb\r\n", "a\nb\r\n", "a\r\nb\r\n", ".\r\n"}) {
    std::string b(s);
    EXPECT_EQ(dotstuff_is_canonical(b.data(), b.size()) != 0, canonical_ref(b)) << b;
  }
  std::mt19937 rng(7);
  const char alphabet[] = {'a', '\r', '\n', '.'};
  for (int i = 0; i < 20000; i++) {
    std::string b(rng() % 40, 'a');
    for (char& c : b) c = alphabet[rng() % 4];
    if (rng() % 2) b += "\r\n";
    ASSERT_EQ(dotstuff_is_canonical(b.data(), b.size()) != 0, canonical_ref(b)) << i;
  }
}
