// Small synchronous Redis client over hiredis: RAII context, timeouts on
// connect and on every command, reconnect on the next call after an error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct redisContext;

namespace llm {

struct RedisValue {
  enum class Type { nil, integer, string, status, error, array };
  Type type = Type::nil;
  std::int64_t integer = 0;
  std::string str;
  std::vector<RedisValue> elements;

  bool is_error() const { return type == Type::error; }
};

class RedisClient {
public:
  RedisClient(std::string host, unsigned port, std::int64_t timeout_ms);
  ~RedisClient();
  RedisClient(const RedisClient &) = delete;
  RedisClient &operator=(const RedisClient &) = delete;

  // One command; false (and err) on connection/protocol failure. A Redis
  // error reply is returned as a value of type error.
  bool command(const std::vector<std::string> &argv, RedisValue &out,
               std::string &err);
  // Several commands in one round trip; replies in order.
  bool pipeline(const std::vector<std::vector<std::string>> &cmds,
                std::vector<RedisValue> &out, std::string &err);

  bool connected() const { return m_ctx != nullptr; }

private:
  bool ensure(std::string &err);
  void drop(std::string &err);

  struct Free {
    void operator()(redisContext *c) const;
  };
  std::string m_host;
  unsigned m_port;
  std::int64_t m_timeout_ms;
  std::unique_ptr<redisContext, Free> m_ctx;
};

} // namespace llm
