// libFuzzer target for the sidecar's configuration (sidecar/src/config.cpp):
// the input is the config file, then optionally a NUL byte and the price
// table it names (any path reads that text; without a NUL, a fixed valid
// table). Any bytes give a Config or a ConfigError ("config: ..." or
// "price table ...: ..."), never a crash or another exception; an
// accepted config holds what the sidecar relies on at start.

#include "config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#define check(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "fuzz_sidecar_config: %s:%d: %s\n", __FILE__,       \
                   __LINE__, #cond);                                           \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

namespace {

const char *const k_prices = R"({"models":[
 {"name":"gpt-4o-mini","provider":"openai","input_per_mtok":150000,
  "output_per_mtok":600000,"cache_read_per_mtok":75000,
  "cache_write_per_mtok":0,"context_window":128000,
  "source":"https://openai.com/api/pricing/","date":"2025-06-01"}]})";

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = reinterpret_cast<const char *>(data);
  const void *nul = std::memchr(p, '\0', size);
  const size_t text_len = nul ? static_cast<const char *>(nul) - p : size;

  const std::string text(p, text_len);
  const std::string prices =
      nul ? std::string(p + text_len + 1, size - text_len - 1) : k_prices;

  llm::Config c;
  try {
    c = llm::parse_config(text, "/nonexistent",
                          [&prices](const std::string &) { return prices; });
  } catch (const llm::ConfigError &e) {
    const std::string what = e.what();
    check(what.rfind("config: ", 0) == 0 || what.rfind("price table ", 0) == 0);
    return 0;
  }

  check(!c.listen.unix_path.empty() || c.listen.tcp_port != 0);
  check(c.listen.tcp_port <= 65535 && c.listen.unix_mode <= 0777);
  check(c.threads >= 1 && c.threads <= 64);
  check(!c.data_dir.empty());
  check(c.admin_token.size() >= 16);
  check(!c.router.models.empty() && !c.router.classes.empty());
  check(c.budget_downgrade_permille >= 0 &&
        c.budget_downgrade_permille <= 1000);
  for (const auto &m : c.router.models) {
    check(c.prices.count(m.name) == 1);
    check(m.api == "openai" || m.api == "anthropic");
    check(m.tier >= 1 && m.tier <= 100);
    for (const auto &f : m.fallbacks) {
      bool found = false;
      for (const auto &o : c.router.models) {
        found = found || o.name == f;
      }
      check(found);
    }
  }

  return 0;
}
