// Completion queues: ring order, overrun, and the arm/complete race of completion channels.
#include "queue/cq.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace softrdma::queue {
namespace {

Wc wc_with_id(uint64_t id) {
  Wc wc{};
  wc.wr_id = id;
  return wc;
}

TEST(CompletionQueue, PollsInOrderAndReportsOverrun) {
  CompletionQueue cq(4, nullptr);
  const uint32_t cap = cq.capacity();
  ASSERT_GE(cap, 4u);
  uint32_t accepted = 0;
  while (accepted < cap + 2 && cq.push(wc_with_id(accepted), false)) ++accepted;
  EXPECT_GE(accepted, cap);  // at least what it promises
  EXPECT_LE(accepted, cap + 1);
  EXPECT_TRUE(cq.overrun());
  Wc out[64];
  ASSERT_EQ(int(accepted), cq.poll(out, 64));
  for (uint32_t i = 0; i < accepted; ++i) EXPECT_EQ(out[i].wr_id, i);
  EXPECT_TRUE(cq.empty());
}

// ibv_req_notify_cq then ibv_poll_cq on one thread, a completion pushed on another at the same
// moment: either the poll finds it or the channel is notified, never neither (then a program
// sleeping in ibv_get_cq_event would wait forever; ibv_rc_pingpong -e once did). Both sides
// store then load, so each needs a full fence between the two.
TEST(CompletionQueue, ArmRacingACompletionNeverLosesBoth) {
  CompletionChannel ch;
  ASSERT_TRUE(ch.valid());
  CompletionQueue cq(8, &ch);
  std::atomic<uint64_t> go{0}, done{0};
  const uint64_t kRounds = 100'000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    for (uint64_t r = 1; r <= kRounds && !stop.load(); ++r) {
      while (go.load(std::memory_order_acquire) != r && !stop.load()) {
      }
      cq.push(wc_with_id(r), false);
      while (done.load(std::memory_order_acquire) != r && !stop.load()) {
      }
    }
  });
  uint64_t lost = 0, rounds = 0, events = 0;
  for (uint64_t r = 1; r <= kRounds && std::chrono::steady_clock::now() < deadline; ++r) {
    go.store(r, std::memory_order_release);  // the producer pushes now, while we arm and poll
    cq.arm(false);
    Wc out[2];
    int got = cq.poll(out, 2);
    while (got == 0) {
      // Not there yet: an event must come (a stale one from an earlier round may come first).
      pollfd p{ch.fd(), POLLIN, 0};
      if (::poll(&p, 1, 1000) == 1) {
        ASSERT_EQ(ch.get_event(), &cq);
        ++events;
      } else {
        ++lost;  // armed, and neither the poll nor the channel saw the completion
        while ((got = cq.poll(out, 2)) == 0) {
        }
        break;
      }
      got = cq.poll(out, 2);
    }
    ASSERT_EQ(got, 1);
    ASSERT_EQ(out[0].wr_id, r);
    ++rounds;
    done.store(r, std::memory_order_release);
  }
  stop.store(true);
  producer.join();
  EXPECT_EQ(lost, 0u) << "of " << rounds << " rounds (" << events << " by event)";
  EXPECT_GT(rounds, 1000u);
}

}  // namespace
}  // namespace softrdma::queue
