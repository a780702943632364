#include "clients/http.hpp"

#include <curl/curl.h>

namespace llm {

namespace {

size_t collect(char *ptr, size_t size, size_t n, void *user) {
  auto *out = static_cast<std::string *>(user);
  if (out->size() < 65536) {
    out->append(ptr, size * n);
  }
  return size * n;
}

struct SlistFree {
  void operator()(curl_slist *l) const { curl_slist_free_all(l); }
};

} // namespace

void HttpClient::Free::operator()(void *h) const { curl_easy_cleanup(h); }

void HttpClient::global_init() { curl_global_init(CURL_GLOBAL_DEFAULT); }

HttpClient::HttpClient() : m_curl(curl_easy_init()) {}

HttpClient::~HttpClient() = default;

HttpResult HttpClient::post_json(const std::string &url,
                                 const std::string &body,
                                 std::int64_t timeout_ms) {
  HttpResult res;
  CURL *c = m_curl.get();
  if (c == nullptr) {
    res.error = "curl: cannot create a handle";
    return res;
  }
  curl_easy_reset(c);
  std::unique_ptr<curl_slist, SlistFree> headers(
      curl_slist_append(nullptr, "Content-Type: application/json"));
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, "llm-sidecar/1");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &res.body);
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    res.error = curl_easy_strerror(rc);
    return res;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res.status);
  return res;
}

} // namespace llm
