// Rule-based request classes: size, tools and declared complexity.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llm {

enum class Complexity { low, medium, high };

std::optional<Complexity> parse_complexity(const std::string &s);
const char *complexity_name(Complexity c);

// A class matches when every condition it sets holds; classes are tried in
// order and the last one is the catch-all.
struct RequestClass {
  std::string name;
  int min_tier = 1;
  std::int64_t max_prompt_tokens = 0; // 0: any size
  std::vector<Complexity> complexity; // empty: any
  std::optional<bool> tools;          // set: request must match
  std::optional<bool> images;
};

struct RequestShape {
  std::int64_t prompt_tokens = 0;
  bool tools = false;
  bool images = false;
  Complexity complexity = Complexity::medium;
};

// Index of the first matching class; the last class when none matches.
// Precondition: classes is not empty.
std::size_t classify(const std::vector<RequestClass> &classes,
                     const RequestShape &shape);

} // namespace llm
