// The device's object lists: lookups that keep a bad handle from the API from being used.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

namespace softrdma {

template <typename T>
inline bool erase_owned(std::vector<std::unique_ptr<T>>& v, T* p) {
  auto it = std::find_if(v.begin(), v.end(), [p](const auto& u) { return u.get() == p; });
  if (it == v.end()) return false;
  v.erase(it);
  return true;
}

template <typename T>
inline bool owns(const std::vector<std::unique_ptr<T>>& v, const T* p) {
  return std::any_of(v.begin(), v.end(), [p](const auto& u) { return u.get() == p; });
}

}  // namespace softrdma
