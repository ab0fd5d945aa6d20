// The HTTP/1.1 listener: one Boost.Beast coroutine per connection, bounded bodies, timeouts on
// every read and write, shutdown by cancellation. Requests go to a Handler as plain values.
// Threading: start()/stop() from one thread; the handler runs on the I/O threads and may
// answer from any thread.
#pragma once

#include <cstdint>
#include <memory>

#include "base/status.hpp"
#include "bot/http/http.hpp"
#include "config/config.hpp"

namespace dmz {

class HttpServer {
 public:
  // Bodies over cfg.body_limit get 413; a request not read within cfg.read_timeout is dropped;
  // a handler that has not answered within cfg.answer_timeout is answered 503 for it (its late
  // answer is dropped); connections beyond cfg.max_connections get 503 and are closed.
  HttpServer(config::Server cfg, Handler handler);
  ~HttpServer();  // stops

  // Binds cfg.host:cfg.port (port 0 = any free port), starts cfg.threads I/O threads, returns
  // the bound port.
  Result<std::uint16_t> start();
  void stop();  // closes the listener, cancels connections, joins the threads

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmz
