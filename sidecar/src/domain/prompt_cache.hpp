// Prompt-cache policy: Anthropic cache_control breakpoints and OpenAI-style
// prompt_cache_key. Pure functions of the request shape.
#pragma once

#include "domain/types.hpp"

#include <string>
#include <vector>

namespace llm {

// What the module knows about the prompt layout. Block counts of 0 mean
// the field is a plain string (the module turns it into a single text block
// when it applies a breakpoint there) or absent when its tokens are 0.
struct PromptShape {
  std::int64_t tools_count = 0;
  std::int64_t tools_tokens = 0;
  std::int64_t system_blocks = 0;
  std::int64_t system_tokens = 0;
  std::int64_t last_user_index = -1; // index in messages, -1: none
  std::int64_t last_user_blocks = 0;
  std::int64_t client_breakpoints = 0;   // cache_control already present
  std::vector<std::string> client_paths; // their positions, if known
};

struct PromptCacheParams {
  bool enabled = true;
  int max_breakpoints = 4;               // Anthropic's limit per request
  std::int64_t rolling_min_messages = 3; // rolling turn from this many
};

// JSON pointers of the blocks to mark with cache_control, in priority
// order: end of system, the rolling last user turn, end of tools. A
// breakpoint is placed only where the cached prefix (tools, then system,
// then messages) reaches the model's minimum cacheable size, never on a
// position the client marked, and never beyond max_breakpoints counting
// the client's own.
std::vector<std::string> anthropic_breakpoints(const PromptShape &shape,
                                               std::int64_t prompt_tokens,
                                               std::int64_t messages,
                                               std::int64_t min_cacheable,
                                               const PromptCacheParams &p);

// Stable key "pck_<16 hex>" from the tenant and the prompt-prefix hash, so
// requests of one tenant sharing a prefix land on the same cache shard.
// Empty when there is no prefix hash.
std::string prompt_cache_key(const std::string &tenant,
                             const std::string &prefix_hash);

std::uint64_t fnv1a64(std::string_view s,
                      std::uint64_t seed = 0xcbf29ce484222325ULL);

} // namespace llm
