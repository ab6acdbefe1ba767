// System tests of the `softrdma` command line, run as a user runs it: the built binary in
// child processes, against devices this test process opens and against each other.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/pair.h"

namespace softrdma::test {
namespace {

const std::string kSoftrdma = std::string(SOFTRDMA_BINARY_DIR) + "/src/tools/softrdma";

// A child running the softrdma binary, its stdout and stderr on one pipe.
struct Child {
  pid_t pid = -1;
  int fd = -1;
  std::string out;

  explicit Child(const std::vector<std::string>& args) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return;
    pid = fork();
    if (pid == 0) {
      dup2(p[1], 1);
      dup2(p[1], 2);
      std::vector<char*> argv{const_cast<char*>(kSoftrdma.c_str())};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(kSoftrdma.c_str(), argv.data());
      _exit(127);
    }
    close(p[1]);
    fd = p[0];
  }
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (fd >= 0) close(fd);
  }
  // Reads until `until` appears in the output (or EOF, or the deadline); true if it appeared.
  bool read_until(const std::string& until, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    char buf[4096];
    while (until.empty() || out.find(until) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd pfd{fd, POLLIN, 0};
      if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) return !until.empty() && out.find(until) != std::string::npos;
      out.append(buf, size_t(n));
    }
    return true;
  }
  // Reads everything and waits for the exit; returns the exit status (-1: killed or timed out).
  int finish(std::chrono::seconds limit = std::chrono::seconds(120)) {
    read_until("", limit);
    int status = 0;
    pid_t p = pid;
    pid = -1;
    for (int i = 0; waitpid(p, &status, WNOHANG) == 0; ++i) {  // output closed: it should exit now
      if (i == 500) {
        kill(p, SIGKILL);
        waitpid(p, &status, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

struct Result {
  int status;
  std::string out;
};

Result run(const std::vector<std::string>& args) {
  Child c(args);
  int status = c.finish();
  return {status, c.out};
}

bool has_row(const std::string& out, const std::string& row_regex) {
  return std::regex_search(out, std::regex("(^|\n)" + row_regex));
}

TEST(Cli, BinaryExists) { ASSERT_EQ(0, access(kSoftrdma.c_str(), X_OK)) << kSoftrdma << " is not built"; }

TEST(Cli, DemoChecksEveryOperationAndPrintsTheTable) {
  Result r = run({"demo", "--iters", "50"});
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("RoCEv2"), std::string::npos) << r.out;
  for (const char* op : {"SEND", "WRITE", "WRITE_IMM", "READ"})
    for (const char* size : {"8", "4096", "65536"})
      EXPECT_TRUE(has_row(r.out, std::string(op) + " +" + size + " +50 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+"))
          << op << " " << size << "\n" << r.out;
  EXPECT_TRUE(has_row(r.out, "FETCH_ADD +8 +50 ")) << r.out;
  EXPECT_TRUE(has_row(r.out, "CMP_SWAP +8 +50 ")) << r.out;
  EXPECT_TRUE(has_row(r.out, "UD SEND +4096 +50 ")) << r.out;
  EXPECT_TRUE(has_row(r.out, "OK: [0-9]+ operations checked")) << r.out;
  EXPECT_NE(r.out.find("softrdma stat"), std::string::npos);
}

TEST(Cli, DemoDataArrivesIntactThroughLossAndReordering) {
  Result r = run({"demo", "--iters", "20", "--size", "8", "--size", "20000", "--fault", "loss=0.05,reorder=0.03,seed=5"});
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has_row(r.out, "  fault:dropped +[0-9]+ +[0-9]+")) << r.out;
  EXPECT_TRUE(has_row(r.out, "  qp:retransmits +[0-9]+ +[0-9]+")) << r.out;
  EXPECT_NE(r.out.find("RC data arrived intact despite the faults"), std::string::npos) << r.out;
}

TEST(Cli, DemoRefusesBadOptionsWithExitCode) {
  Result r = run({"demo", "--mtu", "1000"});
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("FAILED"), std::string::npos) << r.out;
  EXPECT_NE(run({"demo", "--fault", "loss=banana"}).status, 0);
}

// Two devices of this process with RC traffic between them; `devices` and `stat` (other
// processes) must find them and show the counters this process sees.
class CliWithOpenDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "systest" + std::to_string(getpid());
    PairOptions o;
    o.timeout = 14;  // ~67 ms: no spurious retransmissions on a loaded machine
    for (Side* s : {&a_, &b_}) {
      DeviceConfig cfg;
      cfg.name = name_ + (s == &a_ ? "a" : "b");
      std::string err;
      s->dev = Device::open(cfg, &err);
      ASSERT_TRUE(s->dev) << err;
      int e = 0;
      s->pd = s->dev->alloc_pd();
      s->cq = s->dev->create_cq(256, nullptr, nullptr, &e);
      QpInitAttr init;
      init.send_cq = init.recv_cq = s->cq;
      init.cap = {64, 64, 1, 1, 0};
      s->qp = s->dev->create_qp(s->pd, init, &e);
      ASSERT_TRUE(s->qp) << e;
      s->buf.assign(1 << 16, 0);
      s->mr = s->dev->reg_mr(s->pd, s->buf.data(), s->buf.size(), o.access, &e);
      ASSERT_TRUE(s->mr) << e;
    }
    connect(a_, b_, o);
    connect(b_, a_, o);
    for (uint64_t i = 0; i < kMessages; ++i) {
      Sge rs = b_.sge(0, 4096);
      RecvWr rw{i, &rs, 1};
      ASSERT_EQ(0, b_.dev->post_recv(b_.qp, &rw, 1, nullptr));
      Sge ss = a_.sge(0, 3000);
      SendWr sw;
      sw.wr_id = i;
      sw.flags = kSignaled;
      sw.sg_list = &ss;
      sw.num_sge = 1;
      ASSERT_EQ(0, a_.dev->post_send(a_.qp, &sw, 1, nullptr));
      ASSERT_EQ(wait_for(b_, 1).size(), 1u);
      ASSERT_EQ(wait_for(a_, 1).size(), 1u);
    }
  }
  static constexpr uint64_t kMessages = 25;
  std::string name_;
  Side a_, b_;
};

TEST_F(CliWithOpenDevice, DevicesListsThisProcess) {
  Result r = run({"devices"});
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has_row(r.out, "hca_id:\t")) << r.out;
  EXPECT_TRUE(has_row(r.out, "\ttransport:\t+RoCEv2")) << r.out;
  EXPECT_TRUE(has_row(r.out, "\tnode_guid:\t+[0-9a-f]{4}:[0-9a-f]{4}:[0-9a-f]{4}:[0-9a-f]{4}")) << r.out;
  EXPECT_TRUE(has_row(r.out, "\t+state:\t+PORT_ACTIVE \\(4\\)")) << r.out;
  EXPECT_TRUE(has_row(r.out, "\t+active_mtu:\t+4096 \\(5\\)")) << r.out;
  EXPECT_TRUE(has_row(r.out, "\t+link_layer:\t+Ethernet")) << r.out;
  EXPECT_TRUE(has_row(r.out, "\t+GID\\[  0\\]:\t+::ffff:127\\.0\\.0\\.[0-9]+, RoCE v2")) << r.out;
  for (Side* s : {&a_, &b_})
    EXPECT_TRUE(has_row(r.out, "  " + s->dev->name() + " +" + std::to_string(getpid()) + " +" +
                                   s->dev->address().str() + " +1 "))
        << r.out;
  Result v = run({"devices", "-v"});
  EXPECT_TRUE(has_row(v.out, "\tmax_qp_wr:\t+[0-9]+")) << v.out;
}

TEST_F(CliWithOpenDevice, StatShowsTheLiveCounters) {
  // Let late duplicates and ACKs settle (a loaded machine may have retransmitted), so the
  // snapshot and what `stat` prints describe the same moment.
  auto dev = a_.dev->counters();
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto now = a_.dev->counters();
    if (now.rx_packets == dev.rx_packets && now.tx_packets == dev.tx_packets) break;
    dev = now;
  }
  auto qps = a_.dev->qp_counters();
  ASSERT_EQ(qps.size(), 1u);
  Result r = run({"stat", "--name", a_.dev->name()});
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has_row(r.out, a_.dev->name() + "  pid " + std::to_string(getpid()))) << r.out;
  EXPECT_EQ(r.out.find(b_.dev->name()), std::string::npos) << "--name selects one device\n" << r.out;
  EXPECT_TRUE(has_row(r.out, "  tx_packets +" + std::to_string(dev.tx_packets) + "  packets sent")) << r.out;
  EXPECT_TRUE(has_row(r.out, "  rx_packets +" + std::to_string(dev.rx_packets) + " ")) << r.out;
  // The QP row: qpn, type, state, then tx_packets and tx_bytes (the first nonzero counters).
  EXPECT_TRUE(has_row(r.out, "  " + std::to_string(a_.qp->qpn()) + " +RC +RTS +" +
                                 std::to_string(qps[0].counters.tx_packets) + " +" +
                                 std::to_string(qps[0].counters.tx_bytes)))
      << r.out;

  Result w = run({"stat", "--name", a_.dev->name(), "--watch", "0.2", "--count", "2"});
  ASSERT_EQ(w.status, 0) << w.out;
  size_t refreshes = 0;
  for (size_t at = 0; (at = w.out.find("--- after", at)) != std::string::npos; ++at) ++refreshes;
  EXPECT_EQ(refreshes, 2u) << w.out;
  EXPECT_TRUE(has_row(w.out, "  tx_packets +" + std::to_string(dev.tx_packets) + " +\\+0 +0\\.0 ")) << w.out;

  EXPECT_EQ(run({"stat", "--name", "no-such-device-" + name_}).status, 1);
}

// Two processes, each with its own adapter on its own 127.0.0.x, talk RC over loopback: the
// client's SENDs are echoed, its WRITEs read back, its FETCH_ADDs counted by the server.
TEST(Cli, TwoProcessesTalkRcOverLoopback) {
  Child server({"demo", "--role", "server", "--size", "8", "--size", "5000"});
  ASSERT_TRUE(server.read_until(")\n", std::chrono::seconds(30))) << server.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(server.out, m, std::regex("listening on ([0-9.]+:[0-9]+) .* at ([0-9.]+):4791")))
      << server.out;
  std::string endpoint = m[1], server_ip = m[2];
  Result client = run({"demo", "--role", "client", "--connect", endpoint, "--iters", "100", "--size", "8",
                       "--size", "5000"});
  EXPECT_EQ(client.status, 0) << client.out;
  EXPECT_EQ(server.finish(std::chrono::seconds(30)), 0) << server.out;
  std::smatch cm;
  ASSERT_TRUE(std::regex_search(client.out, cm, std::regex("client: \\S+ at ([0-9.]+):4791"))) << client.out;
  EXPECT_NE(cm[1], server_ip) << "each process has its own address";
  for (const char* row : {"SEND \\(echo\\) +5000 +100 ", "WRITE +5000 +100 ", "READ +5000 +100 ", "FETCH_ADD +8 +100 "})
    EXPECT_TRUE(has_row(client.out, row)) << row << "\n" << client.out;
  EXPECT_NE(client.out.find("client: OK, 700 operations checked"), std::string::npos) << client.out;
  EXPECT_NE(server.out.find("server: echoed 200 messages; counter 100 as the client expected"), std::string::npos)
      << server.out;
}

}  // namespace
}  // namespace softrdma::test
