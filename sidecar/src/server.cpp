#include "server.hpp"

#include "log.hpp"
#include "store/journal.hpp"

#include <utility> // Boost 1.74's asio uses std::exchange without it

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <thread>

namespace llm {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using unix_proto = asio::local::stream_protocol;
using tcp = asio::ip::tcp;

namespace {

constexpr auto k_idle_timeout = std::chrono::seconds(75);
constexpr std::uint64_t k_body_limit = 32 * 1024 * 1024;
constexpr std::size_t k_read_buffer = 64 * 1024;

template <class Socket>
class Session : public std::enable_shared_from_this<Session<Socket>> {
public:
  Session(Socket sock, Server &server)
      : m_sock(std::move(sock)), m_timer(m_sock.get_executor()),
        m_server(server) {
    // beast reads what the buffer has room for (at least 512 bytes): with
    // the capacity left by the headers, a 250 KB usage batch came in
    // ~400 recv() calls and as many epoll wake-ups
    m_buf.reserve(k_read_buffer);
  }

  void start() { read(); }

private:
  void read() {
    m_parser.emplace();
    m_parser->body_limit(k_body_limit);
    m_timer.expires_after(k_idle_timeout);
    m_timer.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) {
        beast::error_code ignored;
        self->m_sock.close(ignored);
      }
    });
    http::async_read(
        m_sock, m_buf, *m_parser,
        [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
          self->on_read(ec);
        });
  }

  void on_read(beast::error_code ec) {
    m_timer.cancel();
    if (ec) {
      if (ec != http::error::end_of_stream &&
          ec != asio::error::operation_aborted &&
          ec != asio::error::connection_reset && ec != asio::error::eof) {
        // Malformed request: answer once, then close.
        HttpResponse r =
            Handlers::error(ec == http::error::body_limit ? 413 : 400,
                            "bad_request", ec.message());
        m_keep_alive = false;
        write(std::move(r));
        return;
      }
      close();
      return;
    }
    auto &req = m_parser->get();
    m_keep_alive = req.keep_alive();
    HttpRequest hr;
    hr.method = std::string(req.method_string());
    const std::string_view target = req.target();
    const auto q = target.find('?');
    hr.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) {
      hr.query = std::string(target.substr(q + 1));
    }
    auto auth = req.find(http::field::authorization);
    if (auth != req.end()) {
      hr.authorization = std::string(auth->value());
    }
    hr.body = std::move(req.body());
    auto self = this->shared_from_this();
    m_server.dispatch(std::move(hr), [self](HttpResponse r) {
      // May run on another thread (journal): back to our strand.
      asio::post(
          self->m_sock.get_executor(),
          [self, r = std::move(r)]() mutable { self->write(std::move(r)); });
    });
  }

  void write(HttpResponse r) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), 11);
    res->set(http::field::server, "llm-sidecar");
    res->set(http::field::content_type, r.content_type);
    res->keep_alive(m_keep_alive);
    res->body() = std::move(r.body);
    res->prepare_payload();
    http::async_write(m_sock, *res,
                      [self = this->shared_from_this(),
                       res](beast::error_code ec, std::size_t) {
                        if (ec || !self->m_keep_alive) {
                          self->close();
                          return;
                        }
                        self->read();
                      });
  }

  void close() {
    beast::error_code ignored;
    m_sock.shutdown(Socket::shutdown_send, ignored);
    m_sock.close(ignored);
  }

  Socket m_sock;
  beast::flat_buffer m_buf;
  std::optional<http::request_parser<http::string_body>> m_parser;
  asio::steady_timer m_timer;
  Server &m_server;
  bool m_keep_alive = true;
};

template <class Acceptor, class Socket>
void accept_loop(Acceptor &acc, asio::io_context &ioc, Server &server) {
  acc.async_accept(
      asio::make_strand(ioc),
      [&acc, &ioc, &server](beast::error_code ec, Socket sock) {
        if (!acc.is_open()) {
          return;
        }
        if (!ec) {
          std::make_shared<Session<Socket>>(std::move(sock), server)->start();
        }
        accept_loop<Acceptor, Socket>(acc, ioc, server);
      });
}

// "/v1/budgets/team/t1" -> {"team", "t1"}
bool split_budget_path(const std::string &path, std::string &scope,
                       std::string &id) {
  const std::string prefix = "/v1/budgets/";
  if (path.rfind(prefix, 0) != 0) {
    return false;
  }
  const std::string rest = path.substr(prefix.size());
  const auto slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= rest.size()) {
    return false;
  }
  scope = rest.substr(0, slash);
  id = rest.substr(slash + 1);
  return id.find('/') == std::string::npos;
}

} // namespace

struct Server::Impl {
  Handlers &handlers;
  asio::io_context ioc;
  std::optional<unix_proto::acceptor> unix_acc;
  std::optional<tcp::acceptor> tcp_acc;
  std::string unix_path;
  int threads;

  Impl(Handlers &h, int n) : handlers(h), ioc(n), threads(n) {}
};

Server::Server(Handlers &handlers, const ListenConfig &listen, int threads)
    : m_impl(std::make_unique<Impl>(handlers, threads)) {
  Impl &im = *m_impl;
  if (!listen.unix_path.empty()) {
    const auto slash = listen.unix_path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      make_dirs(listen.unix_path.substr(0, slash));
    }
    // A stale socket file from a crash would make bind fail.
    struct stat st {};
    if (::lstat(listen.unix_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      ::unlink(listen.unix_path.c_str());
    }
    try {
      im.unix_acc.emplace(im.ioc, unix_proto::endpoint(listen.unix_path));
    } catch (const std::exception &e) {
      throw std::runtime_error("listen.unix: cannot bind " + listen.unix_path +
                               ": " + e.what());
    }
    if (::chmod(listen.unix_path.c_str(), listen.unix_mode) != 0) {
      throw std::runtime_error("listen.unix_mode: cannot chmod " +
                               listen.unix_path);
    }
    im.unix_path = listen.unix_path;
    log_info("listening on unix:" + listen.unix_path);
  }
  if (listen.tcp_port != 0) {
    try {
      const auto addr = asio::ip::make_address(
          listen.tcp_host == "localhost" ? "127.0.0.1" : listen.tcp_host);
      im.tcp_acc.emplace(
          im.ioc,
          tcp::endpoint(addr, static_cast<unsigned short>(listen.tcp_port)));
    } catch (const std::exception &e) {
      throw std::runtime_error("listen.tcp: cannot bind " + listen.tcp_host +
                               ":" + std::to_string(listen.tcp_port) + ": " +
                               e.what());
    }
    log_info("listening on " + listen.tcp_host + ":" +
             std::to_string(listen.tcp_port));
  }
}

Server::~Server() {
  if (!m_impl->unix_path.empty()) {
    ::unlink(m_impl->unix_path.c_str());
  }
}

void Server::run() {
  Impl &im = *m_impl;
  if (im.unix_acc) {
    accept_loop<unix_proto::acceptor, unix_proto::socket>(*im.unix_acc, im.ioc,
                                                          *this);
  }
  if (im.tcp_acc) {
    accept_loop<tcp::acceptor, tcp::socket>(*im.tcp_acc, im.ioc, *this);
  }
  std::vector<std::thread> pool;
  for (int i = 1; i < im.threads; ++i) {
    pool.emplace_back([&im] { im.ioc.run(); });
  }
  im.ioc.run();
  for (auto &t : pool) {
    t.join();
  }
}

void Server::stop() {
  Impl &im = *m_impl;
  asio::post(im.ioc, [&im] {
    beast::error_code ignored;
    if (im.unix_acc) {
      im.unix_acc->close(ignored);
    }
    if (im.tcp_acc) {
      im.tcp_acc->close(ignored);
    }
    im.ioc.stop();
  });
}

void Server::dispatch(HttpRequest req, Reply reply) {
  Handlers &h = m_impl->handlers;
  const std::string &m = req.method;
  const std::string &p = req.path;
  auto method_not_allowed = [&] {
    reply(Handlers::error(405, "method_not_allowed",
                          m + " is not allowed on " + p));
  };
  if (p == "/v1/route") {
    m == "POST" ? reply(h.route(req)) : method_not_allowed();
  } else if (p == "/v1/usage") {
    if (m == "POST") {
      h.usage(req, std::move(reply));
    } else {
      method_not_allowed();
    }
  } else if (p == "/v1/spend") {
    m == "GET" ? reply(h.spend(req)) : method_not_allowed();
  } else if (p == "/v1/budgets") {
    if (m == "GET") {
      reply(h.budgets_list(req));
    } else if (m == "PUT" || m == "POST") {
      reply(h.budget_put(req, "", ""));
    } else {
      method_not_allowed();
    }
  } else if (std::string scope, id; split_budget_path(p, scope, id)) {
    if (m == "GET") {
      reply(h.budget_get(req, scope, id));
    } else if (m == "PUT") {
      reply(h.budget_put(req, scope, id));
    } else if (m == "DELETE") {
      reply(h.budget_delete(req, scope, id));
    } else {
      method_not_allowed();
    }
  } else if (p == "/metrics") {
    m == "GET" ? reply(h.metrics(req)) : method_not_allowed();
  } else if (p == "/health") {
    m == "GET" ? reply(h.health(req)) : method_not_allowed();
  } else {
    reply(Handlers::error(404, "not_found", "no route for " + p));
  }
}

} // namespace llm
