#include "domain/prompt_cache.hpp"

#include <algorithm>
#include <cstdio>

namespace llm {

std::uint64_t fnv1a64(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {

std::string block_path(const char *field, std::int64_t blocks) {
  if (blocks <= 0) {
    return std::string("/") + field;
  }
  return std::string("/") + field + "/" + std::to_string(blocks - 1);
}

} // namespace

std::vector<std::string> anthropic_breakpoints(const PromptShape &shape,
                                               std::int64_t prompt_tokens,
                                               std::int64_t messages,
                                               std::int64_t min_cacheable,
                                               const PromptCacheParams &p) {
  std::vector<std::string> out;
  if (!p.enabled) {
    return out;
  }
  std::int64_t budget = p.max_breakpoints - shape.client_breakpoints;
  const std::int64_t tools_prefix = shape.tools_tokens;
  const std::int64_t system_prefix = tools_prefix + shape.system_tokens;

  struct Candidate {
    std::string path;
    std::int64_t prefix;
    bool present;
  };
  std::string user_path;
  if (shape.last_user_index >= 0) {
    user_path = "/messages/" + std::to_string(shape.last_user_index) +
                (shape.last_user_blocks > 0
                     ? "/content/" + std::to_string(shape.last_user_blocks - 1)
                     : "/content");
  }
  const Candidate candidates[] = {
      {block_path("system", shape.system_blocks), system_prefix,
       shape.system_tokens > 0},
      {user_path, prompt_tokens,
       shape.last_user_index >= 0 && messages >= p.rolling_min_messages},
      {block_path("tools", shape.tools_count), tools_prefix,
       shape.tools_count > 0 && shape.tools_tokens > 0},
  };
  for (const Candidate &c : candidates) {
    if (budget <= 0) {
      break;
    }
    if (!c.present || c.prefix < min_cacheable || min_cacheable <= 0) {
      continue;
    }
    if (std::find(shape.client_paths.begin(), shape.client_paths.end(),
                  c.path) != shape.client_paths.end()) {
      continue;
    }
    // A later segment that adds nothing new to the prefix would only
    // duplicate an earlier breakpoint.
    bool same_prefix = false;
    for (const Candidate &o : candidates) {
      if (&o == &c) {
        break;
      }
      same_prefix = same_prefix ||
                    (std::find(out.begin(), out.end(), o.path) != out.end() &&
                     o.prefix == c.prefix);
    }
    if (same_prefix) {
      continue;
    }
    out.push_back(c.path);
    --budget;
  }
  return out;
}

std::string prompt_cache_key(const std::string &tenant,
                             const std::string &prefix_hash) {
  if (prefix_hash.empty()) {
    return {};
  }
  const std::uint64_t h = fnv1a64(prefix_hash, fnv1a64(tenant + '\x1f'));
  char buf[24];
  std::snprintf(buf, sizeof buf, "pck_%016llx",
                static_cast<unsigned long long>(h));
  return buf;
}

} // namespace llm
