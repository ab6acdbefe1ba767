// A plain-text table for the command line, shared by every subcommand (and `softrdma perf`).
//
//   tools::Table t({"op", "bytes", "MB/s"});      // column 0 is left-aligned, the rest right
//   t.add_row({"WRITE", "4096", tools::fixed(1234.5, 1)});
//   t.print(stdout, "  ");                         // indent each line by two spaces
//
// prints
//
//     op     bytes    MB/s
//     -----  -----  ------
//     WRITE   4096  1234.5
//
// Every column is as wide as its widest cell; columns are separated by two spaces. Rows with
// fewer cells than headers are padded with empty cells; extra cells are dropped. Cells are
// UTF-8-unaware byte strings (keep them ASCII).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace softrdma::tools {

class Table {
 public:
  enum class Align { kLeft, kRight };

  explicit Table(std::vector<std::string> headers);

  void set_align(size_t column, Align align);
  void add_row(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }

  // The whole table, one '\n'-terminated line per row, each prefixed by indent.
  std::string str(std::string_view indent = "") const;
  void print(std::FILE* out = stdout, std::string_view indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// "12.35" for fixed(12.345, 2); "-" for NaN, so "no value" needs no special case.
std::string fixed(double value, int decimals);

}  // namespace softrdma::tools
