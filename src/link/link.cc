#include "link/link.h"

#include <algorithm>

#include "wire/fields.h"
#include "wire/icrc.h"

namespace softrdma::link {

void fill_icrc(const TxFrame& f, const Endpoint& src) {
  // The ICRC is the last 4 bytes of the last part (the engine's trailer: pad bytes, then ICRC).
  if (f.nparts == 0 || f.parts[f.nparts - 1].iov_len < wire::kIcrcSize) return;
  iovec body[kMaxTxParts];
  std::copy_n(f.parts, f.nparts, body);
  iovec& last = body[f.nparts - 1];
  last.iov_len -= wire::kIcrcSize;
  auto* at = static_cast<uint8_t*>(last.iov_base) + last.iov_len;
  const size_t n = last.iov_len == 0 ? f.nparts - 1u : f.nparts;
  wire::IcrcContext ctx{src.ip, f.dst.ip, src.port, f.dst.port};
  wire::icrc_store(at, wire::icrc_compute(ctx, body, n, 0));
}

}  // namespace softrdma::link
