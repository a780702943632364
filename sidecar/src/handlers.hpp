// Thin HTTP handlers: JSON in, domain calls, JSON (or CSV/text) out.
#pragma once

#include "engine.hpp"

#include <functional>
#include <string>

namespace llm {

struct HttpRequest {
  std::string method;
  std::string path;
  std::string query; // without '?'
  std::string body;
  std::string authorization;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using Reply = std::function<void(HttpResponse)>;

class Handlers {
public:
  explicit Handlers(Engine &engine) : m_engine(engine) {}

  HttpResponse route(const HttpRequest &req);
  void usage(const HttpRequest &req, Reply reply);
  HttpResponse spend(const HttpRequest &req);
  HttpResponse budgets_list(const HttpRequest &req);
  HttpResponse budget_get(const HttpRequest &req, const std::string &scope,
                          const std::string &id);
  HttpResponse budget_put(const HttpRequest &req, const std::string &scope,
                          const std::string &id);
  HttpResponse budget_delete(const HttpRequest &req, const std::string &scope,
                             const std::string &id);
  HttpResponse metrics(const HttpRequest &req);
  HttpResponse health(const HttpRequest &req);

  static HttpResponse error(int status, const std::string &code,
                            const std::string &message);

private:
  bool authorized(const HttpRequest &req) const;

  Engine &m_engine;
};

// Percent-decoded value of a query parameter; nullopt when absent.
std::optional<std::string> query_param(const std::string &query,
                                       const std::string &name);

} // namespace llm
