#include "domain/classifier.hpp"

#include <algorithm>

namespace llm {

std::optional<Complexity> parse_complexity(const std::string &s) {
  if (s == "low") {
    return Complexity::low;
  }
  if (s == "medium") {
    return Complexity::medium;
  }
  if (s == "high") {
    return Complexity::high;
  }
  return std::nullopt;
}

const char *complexity_name(Complexity c) {
  switch (c) {
  case Complexity::low:
    return "low";
  case Complexity::medium:
    return "medium";
  case Complexity::high:
    return "high";
  }
  return "medium";
}

namespace {

bool matches(const RequestClass &c, const RequestShape &s) {
  if (c.max_prompt_tokens > 0 && s.prompt_tokens > c.max_prompt_tokens) {
    return false;
  }
  if (!c.complexity.empty() &&
      std::find(c.complexity.begin(), c.complexity.end(), s.complexity) ==
          c.complexity.end()) {
    return false;
  }
  if (c.tools && *c.tools != s.tools) {
    return false;
  }
  if (c.images && *c.images != s.images) {
    return false;
  }
  return true;
}

} // namespace

std::size_t classify(const std::vector<RequestClass> &classes,
                     const RequestShape &shape) {
  for (std::size_t i = 0; i + 1 < classes.size(); ++i) {
    if (matches(classes[i], shape)) {
      return i;
    }
  }
  return classes.size() - 1;
}

} // namespace llm
