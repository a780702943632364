// HTTP/1.1 server (Boost.Beast) on a unix socket and optionally loopback
// TCP, keep-alive, idle timeouts. The route table lives here and only here.
#pragma once

#include "config.hpp"
#include "handlers.hpp"

#include <memory>

namespace llm {

class Server {
public:
  // Binds the listeners; throws std::runtime_error on failure.
  Server(Handlers &handlers, const ListenConfig &listen, int threads);
  ~Server();

  // Serves until stop(); blocks the caller, which becomes one of the
  // io threads.
  void run();
  void stop();

  // Route table: dispatches one request (exposed for tests and bench).
  void dispatch(HttpRequest req, Reply reply);

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace llm
