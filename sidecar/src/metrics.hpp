// Prometheus text exposition: families with HELP/TYPE and escaped labels.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llm {

class PromWriter {
public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  void family(const std::string &name, const char *type,
              const std::string &help);
  void sample(const std::string &name, const Labels &labels,
              const std::string &value);
  void sample(const std::string &name, const Labels &labels,
              std::int64_t value) {
    sample(name, labels, std::to_string(value));
  }
  void sample_double(const std::string &name, const Labels &labels,
                     double value);
  std::string &str() { return m_out; }

private:
  std::string m_out;
};

} // namespace llm
