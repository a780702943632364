#include "metrics.hpp"

#include <cstdio>

namespace llm {

void PromWriter::family(const std::string &name, const char *type,
                        const std::string &help) {
  m_out +=
      "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void PromWriter::sample(const std::string &name, const Labels &labels,
                        const std::string &value) {
  m_out += name;
  if (!labels.empty()) {
    m_out.push_back('{');
    bool first = true;
    for (const auto &[k, v] : labels) {
      if (!first) {
        m_out.push_back(',');
      }
      first = false;
      m_out += k + "=\"";
      for (char c : v) {
        if (c == '\\' || c == '"') {
          m_out.push_back('\\');
          m_out.push_back(c);
        } else if (c == '\n') {
          m_out += "\\n";
        } else {
          m_out.push_back(c);
        }
      }
      m_out.push_back('"');
    }
    m_out.push_back('}');
  }
  m_out.push_back(' ');
  m_out += value;
  m_out.push_back('\n');
}

void PromWriter::sample_double(const std::string &name, const Labels &labels,
                               double value) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", value);
  sample(name, labels, std::string(buf));
}

} // namespace llm
