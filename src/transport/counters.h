// Counters, per device and per QP. Each list is written once; names for `softrdma stat` and
// the struct fields come from the same X-macro. Plain integers: only the engine writes them
// (under its lock); readers take a snapshot and tolerate tearing between fields.
#pragma once

#include <cstdint>
#include <string_view>

namespace softrdma::transport {

#define SOFTRDMA_DEVICE_COUNTERS(X)                                                   \
  X(rx_packets, "packets received")                                                   \
  X(rx_bytes, "bytes received (UDP payload)")                                         \
  X(tx_packets, "packets sent")                                                       \
  X(tx_bytes, "bytes sent (UDP payload)")                                             \
  X(tx_busy_drops, "packets the link could not take (recovered by retransmission)")  \
  X(drop_truncated, "dropped: datagram larger than the receive buffer")              \
  X(drop_parse, "dropped: malformed headers")                                         \
  X(drop_icrc, "dropped: bad ICRC")                                                   \
  X(icrc_inferred_id, "accepted with an IPv4 ID recovered from the ICRC")            \
  X(drop_unknown_qp, "dropped: no such QP")                                           \
  X(drop_qp_type, "dropped: opcode not valid for the QP type")                        \
  X(drop_qp_state, "dropped: QP state does not accept the packet")                    \
  X(drop_pkey, "dropped: P_Key mismatch")                                             \
  X(drop_qkey, "dropped: Q_Key mismatch")                                             \
  X(drop_source, "dropped: source is not the connected peer")                         \
  X(drop_no_recv_wqe, "dropped: UD/UC message and no receive WQE")                   \
  X(cnp_received, "congestion notification packets received")                       \
  X(link_gso_sends, "UDP sends that carried several frames (GSO)")                    \
  X(link_gso_frames, "frames sent in them")                                           \
  X(link_gro_receives, "UDP receives that carried several frames (GRO)")              \
  X(link_gro_frames, "frames received in them")                                       \
  X(link_shm_tx_frames, "frames sent through the same-host shared-memory link")       \
  X(link_shm_rx_frames, "frames received through the same-host shared-memory link")  \
  X(link_plain_receives, "UDP datagrams received by recvfrom, GRO off (a ping-pong)")   \
  X(link_gro_switches, "times UDP GRO was switched off for that or back on")

#define SOFTRDMA_QP_COUNTERS(X)                                                   \
  X(tx_packets, "packets sent")                                                   \
  X(tx_bytes, "payload bytes sent")                                               \
  X(rx_packets, "packets received")                                               \
  X(rx_bytes, "payload bytes received")                                           \
  X(retransmits, "packets sent again (go-back after a NAK or timeout)")           \
  X(timeouts, "local ACK timeouts")                                               \
  X(acks_sent, "ACKs sent")                                                       \
  X(acks_received, "ACKs received")                                               \
  X(nak_seq_sent, "NAK PSN sequence error sent")                                  \
  X(nak_seq_received, "NAK PSN sequence error received")                          \
  X(rnr_nak_sent, "RNR NAKs sent")                                                \
  X(rnr_nak_received, "RNR NAKs received")                                        \
  X(nak_inv_req_sent, "NAK invalid request sent")                                 \
  X(nak_access_sent, "NAK remote access error sent")                              \
  X(nak_op_sent, "NAK remote operational error sent")                             \
  X(nak_error_received, "NAK invalid request/access/operational received")        \
  X(duplicates, "duplicate requests received")                                    \
  X(out_of_sequence, "requests past the expected PSN")                            \
  X(stale_responses, "responses for nothing outstanding, dropped")                \
  X(read_resends, "READ requests re-served from memory")                          \
  X(atomic_replays, "atomic results replayed from the cache")                     \
  X(uc_dropped_messages, "UC messages broken by loss and dropped")                \
  X(mw_binds, "memory windows bound through the send queue")                      \
  X(fast_registrations, "regions registered through the send queue")              \
  X(invalidations, "keys invalidated through the send queue")                     \
  X(remote_invalidations, "keys invalidated by an incoming SEND with Invalidate")  \
  X(one_touch_refused, "second accesses to a one-touch entry refused")            \
  X(page_faults, "on-demand pages the responder had brought in")                  \
  X(page_fault_naks_sent, "RNR NAKs sent while on-demand pages came in")          \
  X(page_fault_pauses, "pauses for the peer's on-demand paging (no retry counted)")     \
  X(ack_probes, "last packets sent again to ask for an ACK (no retry counted)")

#define SOFTRDMA_COUNTER_FIELD(n, d) uint64_t n = 0;
#define SOFTRDMA_COUNTER_NAME(n, d) {#n, d},

struct CounterName {
  std::string_view name;
  std::string_view description;
};

struct DeviceCounters {
  SOFTRDMA_DEVICE_COUNTERS(SOFTRDMA_COUNTER_FIELD)
  static constexpr CounterName kNames[] = {SOFTRDMA_DEVICE_COUNTERS(SOFTRDMA_COUNTER_NAME)};
  const uint64_t* values() const { return &rx_packets; }
};

struct QpCounters {
  SOFTRDMA_QP_COUNTERS(SOFTRDMA_COUNTER_FIELD)
  static constexpr CounterName kNames[] = {SOFTRDMA_QP_COUNTERS(SOFTRDMA_COUNTER_NAME)};
  const uint64_t* values() const { return &tx_packets; }
};

static_assert(sizeof(DeviceCounters) == sizeof(uint64_t) * std::size(DeviceCounters::kNames));
static_assert(sizeof(QpCounters) == sizeof(uint64_t) * std::size(QpCounters::kNames));

// Where the counters live: the device places them in a shared memory file that
// `softrdma stat` maps from another process (device/stats.cc); one slot per possible QP.
struct QpStatsSlot {
  uint32_t qpn = 0;  // 0: slot unused
  uint8_t type = 0;
  uint8_t state = 0;
  uint16_t reserved = 0;
  QpCounters counters;
};

struct StatsArea {
  DeviceCounters* device = nullptr;
  QpStatsSlot* qps = nullptr;  // max_qp slots, indexed like the engine's QP table
};

}  // namespace softrdma::transport
