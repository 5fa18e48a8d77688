// DebugPath templates: the seed's placeholders, "default", odd host names.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

extern "C" {
#include "debug_log.h"
}

static std::string expand(const char* t, const char* host = "mx.example.com",
                          const char* thread = "3") {
  struct tm tm = {};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 10;  // November
  tm.tm_mday = 23;
  tm.tm_hour = 9;
  tm.tm_min = 5;
  tm.tm_sec = 7;
  tm.tm_wday = 1;
  tm.tm_yday = 326;
  char out[256];
  int n = sb_debug_path_expand(t, host, thread, &tm, out, sizeof(out));
  return n < 0 ? "ERR" : std::string(out, (size_t)n);
}

TEST(DebugPath, Placeholders) {
  EXPECT_EQ(expand("logs/[YYYY]-[MM]-[DD]/[HOST]_[THREAD].log"),
            "logs/2026-11-23/mx.example.com_3.log");
  EXPECT_EQ(expand("[hh][mm][ss]"), "090507");
  EXPECT_EQ(expand("w[WK]"), "w48");  // ISO week of 2026-11-23 (a Monday)
  EXPECT_EQ(expand("default"), "debug_mx.example.com_3.txt");
  EXPECT_EQ(expand("plain.txt"), "plain.txt");
  EXPECT_EQ(expand("[NOPE]/[HOST"), "[NOPE]/[HOST");  // unknown ones stay
}

TEST(DebugPath, HostCannotEscapeTheDirectory) {
  EXPECT_EQ(expand("d/[HOST].log", "../../etc/passwd"), "d/.._.._etc_passwd.log");
  EXPECT_EQ(expand("[HOST]", "a\nb"), "a_b");
}

TEST(DebugPath, TooLongIsAnError) {
  struct tm tm = {};
  char out[8];
  EXPECT_EQ(sb_debug_path_expand("[HOST]", "a-long-host-name", "0", &tm, out, sizeof(out)),
            -ENAMETOOLONG);
}
