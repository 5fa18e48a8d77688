// Our own sink (tools/sink_server.h), in-process on the test's backend: started by the
// constructor, stopped by the destructor. A test sets what it needs in the options
// defaults() returns (faults, a rate, a unix socket) and starts it.
#pragma once

#include <gtest/gtest.h>

#include <vector>

extern "C" {
#include "sink_server.h"
}

#include "engine_helpers.h"

namespace sbtest {

struct OwnSinkServer {
  sink_server* srv = nullptr;

  // 127.0.0.1 on a free port, 2 threads, the test's backend.
  static sink_options defaults() {
    sink_options o{};
    o.host = "127.0.0.1";
    o.threads = 2;
    o.backend = test_backend();
    o.cfg.name = "sink.test";
    o.cfg.size_max = 10000000;
    return o;
  }
  explicit OwnSinkServer(const sink_options& o = defaults()) {
    const char* why = nullptr;
    int rc = sink_server_start(&o, &srv, &why);
    EXPECT_EQ(rc, 0) << why;
  }
  ~OwnSinkServer() { sink_server_stop(srv); }
  OwnSinkServer(const OwnSinkServer&) = delete;
  OwnSinkServer& operator=(const OwnSinkServer&) = delete;

  uint16_t port() const { return sink_server_port(srv); }
  sink_totals totals() {
    sink_totals t;
    sink_server_totals(srv, &t);
    return t;
  }
  // Messages accepted in each second since it started (by their MAIL's second).
  std::vector<uint64_t> per_second() {
    std::vector<uint64_t> v(3600);
    v.resize(sink_server_per_second(srv, v.data(), v.size()));
    return v;
  }
};

}  // namespace sbtest
