// Moving payload between packets and registered memory, with the local key checks of
// seed 002 FIG. 15 made on every packet. Retransmissions read registered memory again through
// the same checks (seed 001): no copy of sent data is kept anywhere.
#include <cstring>

#include "transport/engine.h"

namespace softrdma::transport {

namespace {

WcStatus local_status(mem::KeyError e) {
  // Every local key failure is a local protection error (IBA 10.7.2.1); a length beyond the
  // region too, because the region's bounds are part of its protection.
  return e == mem::KeyError::kOk ? WcStatus::kSuccess : WcStatus::kLocProtErr;
}

}  // namespace

bool gather(Engine& e, Qp& qp, uint64_t index, uint32_t offset, uint32_t len, iovec* out, uint8_t max_parts,
            uint8_t* nparts, uint8_t* bounce, WcStatus* status) {
  SendWqe& w = qp.sq.at(index);
  *nparts = 0;
  if (len == 0) return true;
  if (w.is_inline) {
    out[(*nparts)++] = {qp.inline_data(index) + offset, len};
    return true;
  }
  const Sge* sg = qp.sq.sges(index);
  uint64_t pos = 0;
  for (uint32_t i = 0; i < w.num_sge && len > 0; ++i) {
    uint64_t end = pos + sg[i].length;
    if (offset < end) {
      uint32_t in_sge = static_cast<uint32_t>(offset - pos);
      uint32_t take = std::min<uint32_t>(len, sg[i].length - in_sge);
      mem::Translation t;
      mem::KeyError err = e.mrs().check(sg[i].lkey, qp.pd, sg[i].addr + in_sge, take, mem::Need::kLocalRead, &t);
      if (err != mem::KeyError::kOk) {
        *status = local_status(err);
        return false;
      }
      // The range may cross pages of an indirectly translated region (FIG. 12): one part each.
      for (uint64_t at = 0; at < take;) {
        uint8_t* host;
        uint32_t n = static_cast<uint32_t>(t.chunk(at, &host));
        at += n;
        if (*nparts == max_parts) {
          // More pieces than a frame gathers: copy them all into the bounce buffer instead.
          uint32_t copied = 0;
          for (uint8_t k = 0; k < *nparts; ++k) {
            std::memcpy(bounce + copied, out[k].iov_base, out[k].iov_len);
            copied += static_cast<uint32_t>(out[k].iov_len);
          }
          out[0] = {bounce, copied};
          *nparts = 1;
        }
        if (*nparts == 1 && out[0].iov_base == bounce) {
          std::memcpy(static_cast<uint8_t*>(out[0].iov_base) + out[0].iov_len, host, n);
          out[0].iov_len += n;
        } else if (*nparts > 0 && static_cast<uint8_t*>(out[*nparts - 1].iov_base) + out[*nparts - 1].iov_len ==
                                      host) {
          out[*nparts - 1].iov_len += n;  // adjacent pages: still one part
        } else {
          out[(*nparts)++] = {host, n};
        }
      }
      offset += take;
      len -= take;
    }
    pos = end;
  }
  if (len != 0) {
    *status = WcStatus::kLocLenErr;
    return false;
  }
  return true;
}

bool scatter(Engine& e, uint32_t pd, const Sge* sg, uint32_t nsge, uint64_t offset, const uint8_t* data,
             uint32_t len, WcStatus* status) {
  uint64_t pos = 0;
  for (uint32_t i = 0; i < nsge && len > 0; ++i) {
    uint64_t end = pos + sg[i].length;
    if (offset < end) {
      uint32_t in_sge = static_cast<uint32_t>(offset - pos);
      uint32_t take = std::min<uint32_t>(len, sg[i].length - in_sge);
      mem::Translation t;
      mem::KeyError err = e.mrs().check(sg[i].lkey, pd, sg[i].addr + in_sge, take, mem::Need::kLocalWrite, &t);
      if (err != mem::KeyError::kOk) {
        *status = local_status(err);
        return false;
      }
      t.store(data);
      data += take;
      offset += take;
      len -= take;
    }
    pos = end;
  }
  if (len != 0) {
    *status = WcStatus::kLocLenErr;
    return false;
  }
  return true;
}

}  // namespace softrdma::transport
