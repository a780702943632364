#include "clients/redis.hpp"

#include <hiredis/hiredis.h>

#include <sys/time.h>

namespace llm {

namespace {

struct ReplyFree {
  void operator()(void *r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<void, ReplyFree>;

RedisValue convert(const redisReply *r) {
  RedisValue v;
  switch (r->type) {
  case REDIS_REPLY_INTEGER:
    v.type = RedisValue::Type::integer;
    v.integer = r->integer;
    break;
  case REDIS_REPLY_STRING:
    v.type = RedisValue::Type::string;
    v.str.assign(r->str, r->len);
    break;
  case REDIS_REPLY_STATUS:
    v.type = RedisValue::Type::status;
    v.str.assign(r->str, r->len);
    break;
  case REDIS_REPLY_ERROR:
    v.type = RedisValue::Type::error;
    v.str.assign(r->str, r->len);
    break;
  case REDIS_REPLY_ARRAY:
    v.type = RedisValue::Type::array;
    v.elements.reserve(r->elements);
    for (size_t i = 0; i < r->elements; ++i) {
      v.elements.push_back(convert(r->element[i]));
    }
    break;
  default:
    v.type = RedisValue::Type::nil;
  }
  return v;
}

timeval to_tv(std::int64_t ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

} // namespace

void RedisClient::Free::operator()(redisContext *c) const { redisFree(c); }

RedisClient::RedisClient(std::string host, unsigned port,
                         std::int64_t timeout_ms)
    : m_host(std::move(host)), m_port(port), m_timeout_ms(timeout_ms) {}

RedisClient::~RedisClient() = default;

bool RedisClient::ensure(std::string &err) {
  if (m_ctx) {
    return true;
  }
  const timeval tv = to_tv(m_timeout_ms);
  std::unique_ptr<redisContext, Free> ctx(
      redisConnectWithTimeout(m_host.c_str(), static_cast<int>(m_port), tv));
  if (!ctx) {
    err = "redis: out of memory";
    return false;
  }
  if (ctx->err) {
    err = std::string("redis: connect ") + m_host + ":" +
          std::to_string(m_port) + ": " + ctx->errstr;
    return false;
  }
  if (redisSetTimeout(ctx.get(), tv) != REDIS_OK) {
    err = "redis: cannot set timeout";
    return false;
  }
  m_ctx = std::move(ctx);
  return true;
}

void RedisClient::drop(std::string &err) {
  err = std::string("redis: ") +
        (m_ctx && m_ctx->errstr[0] != '\0' ? m_ctx->errstr : "connection lost");
  m_ctx.reset();
}

bool RedisClient::command(const std::vector<std::string> &argv, RedisValue &out,
                          std::string &err) {
  std::vector<RedisValue> replies;
  if (!pipeline({argv}, replies, err)) {
    return false;
  }
  out = std::move(replies.front());
  return true;
}

bool RedisClient::pipeline(const std::vector<std::vector<std::string>> &cmds,
                           std::vector<RedisValue> &out, std::string &err) {
  if (!ensure(err)) {
    return false;
  }
  std::vector<const char *> args;
  std::vector<size_t> lens;
  for (const auto &argv : cmds) {
    args.clear();
    lens.clear();
    for (const std::string &a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(m_ctx.get(), static_cast<int>(args.size()),
                               args.data(), lens.data()) != REDIS_OK) {
      drop(err);
      return false;
    }
  }
  out.clear();
  out.reserve(cmds.size());
  for (size_t i = 0; i < cmds.size(); ++i) {
    void *raw = nullptr;
    if (redisGetReply(m_ctx.get(), &raw) != REDIS_OK || raw == nullptr) {
      drop(err);
      return false;
    }
    ReplyPtr reply(raw);
    out.push_back(convert(static_cast<redisReply *>(raw)));
  }
  return true;
}

} // namespace llm
