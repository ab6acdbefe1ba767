#include "tools/table.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace softrdma::tools {

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)), align_(headers_.size(), Align::kRight) {
  if (!align_.empty()) align_[0] = Align::kLeft;
}

void Table::set_align(size_t column, Align align) {
  if (column < align_.size()) align_[column] = align;
}

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::str(std::string_view indent) const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& r : rows_) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l(indent);
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) l += "  ";
      size_t pad = width[c] - cells[c].size();
      if (align_[c] == Align::kRight) l.append(pad, ' ');
      l += cells[c];
      if (align_[c] == Align::kLeft && c + 1 < cells.size()) l.append(pad, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l;
    out += '\n';
  };
  line(headers_);
  std::vector<std::string> rule;
  for (size_t w : width) rule.emplace_back(w, '-');
  line(rule);
  for (const auto& r : rows_) line(r);
  return out;
}

void Table::print(std::FILE* out, std::string_view indent) const {
  std::string s = str(indent);
  std::fwrite(s.data(), 1, s.size(), out);
  std::fflush(out);
}

std::string fixed(double value, int decimals) {
  if (std::isnan(value)) return "-";
  return fmt::format("{:.{}f}", value, decimals);
}

}  // namespace softrdma::tools
