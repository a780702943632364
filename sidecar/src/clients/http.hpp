// Small blocking HTTP client over libcurl for the sidecar's own calls
// (webhooks): RAII handle, connect and total timeouts on every call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace llm {

struct HttpResult {
  long status = 0; // 0: transport failure
  std::string body;
  std::string error;
  bool ok() const { return status >= 200 && status < 300; }
};

class HttpClient {
public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient &) = delete;
  HttpClient &operator=(const HttpClient &) = delete;

  HttpResult post_json(const std::string &url, const std::string &body,
                       std::int64_t timeout_ms);

  // Once per process, before threads start.
  static void global_init();

private:
  struct Free {
    void operator()(void *h) const;
  };
  std::unique_ptr<void, Free> m_curl;
};

} // namespace llm
