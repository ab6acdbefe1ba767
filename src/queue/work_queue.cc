#include "queue/work_queue.h"

#include <cerrno>

namespace softrdma::queue {

int RecvQueue::post(const RecvWr& wr) {
  if (wr.num_sge > max_sge()) return EINVAL;
  uint64_t index;
  RecvWqe* e = reserve(&index);
  if (e == nullptr) return ENOMEM;
  Sge* sg = sges(index);
  uint64_t total = 0;
  for (uint32_t i = 0; i < wr.num_sge; ++i) {
    sg[i] = wr.sg_list[i];
    total += wr.sg_list[i].length;
  }
  e->wr_id = wr.wr_id;
  e->num_sge = wr.num_sge;
  e->length = total;
  commit();
  return 0;
}

}  // namespace softrdma::queue
