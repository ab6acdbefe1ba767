// softrdma perf: the pieces of the perftest-like benchmark, shared by its files.
//
//   cmd_perf.cc      command line, then one of run_server / run_client / run_local
//   perf_session.cc  the session: out-of-band handshake, QP bring-up, one test after another
//   perf_oob.cc      the out-of-band TCP channel (text lines, like perftest's socket exchange)
//   perf_rdma.cc     devices, QPs and the measurement loops (bandwidth, rate, latency)
//   perf_tcp.cc      the TCP baseline (ping-pong latency and stream bandwidth)
//   perf_report.cc   the perftest-style table, CSV and the gnuplot plot
//
// A session is one TCP connection from a client to a server. The client says what to run; the
// server opens QPs toward the client, then serves each test (reposting receives, echoing
// ping-pongs, or just making progress for one-sided operations) until the client says DONE.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "device/device.h"

namespace softrdma::tools::perf {

enum class Op : uint8_t { kSend, kWrite, kRead, kAtomic, kTcp };
enum class Mode : uint8_t { kBw, kLat, kRate };
enum class AtomicKind : uint8_t { kFetchAdd, kCompSwap };

std::string_view name(Op op);
std::string_view name(Mode mode);
std::optional<Op> parse_op(std::string_view s);
std::optional<Mode> parse_mode(std::string_view s);

inline constexpr uint16_t kDefaultOobPort = 18515;  // perftest's port
inline constexpr uint32_t kMaxSize = 64u << 20;  // largest message (each side registers 2x this)
// No completion (or no ping-pong answer) for this long while work is outstanding: the test
// fails and says so, instead of hanging.
inline constexpr std::chrono::seconds kStallLimit{5};
// No test (one row) runs longer than this (plus --duration).
inline constexpr std::chrono::seconds kTestLimit{120};

struct Options {
  // Role.
  bool server = false;
  bool local = false;
  std::string client_host;        // --client SERVER_IP
  std::optional<std::string> addr;  // local RoCEv2 address (also the server's listening address)
  uint16_t oob_port = kDefaultOobPort;
  bool persist = false;           // server: serve sessions until killed

  // What to measure.
  Op op = Op::kWrite;
  Mode mode = Mode::kBw;
  AtomicKind atomic = AtomicKind::kFetchAdd;
  std::vector<uint32_t> sizes;    // one per row of the table
  uint64_t iters = 0;             // 0 = chosen per size (bounded run time)
  double duration = 0;            // seconds per size; overrides iters
  uint32_t window = 128;          // outstanding operations per QP (bw / rate)
  uint32_t cq_mod = 0;            // signal every cq_mod-th operation; 0 = automatic
  uint32_t post_list = 16;        // work requests chained into one post_send call
  uint32_t qps = 1;
  bool uc = false;                // unreliable connected QPs instead of RC (SEND / WRITE only)
  uint32_t inline_max = 236;      // send data inline up to this size (perftest's default for SEND)
  uint32_t mtu = 4096;
  bool passive = false;           // target leaves one-sided operations to its progress thread
  bool busy_poll = false;         // devices' background threads spin (DeviceConfig::busy_poll)
  bool no_thread = false;         // devices without a background progress thread (experiments)
  uint32_t engine_window = 0;     // transport::EngineConfig::window_packets (0 = the default)
  uint32_t engine_ackreq = 0;     // transport::EngineConfig::ackreq_every (0 = the default)
  std::string fault;              // fault-injection spec for this process's device(s)

  // Output.
  bool tcp_baseline = false;      // run the matching TCP test after each row: adds a ratio
  std::string plot;               // .svg or .png
  std::string csv;
  bool verbose = false;
};

struct LatStats {
  double min = 0, median = 0, avg = 0, p99 = 0, p999 = 0, max = 0;  // microseconds
};

struct Result {
  Op op = Op::kWrite;
  Mode mode = Mode::kBw;
  uint32_t size = 0;
  uint64_t iters = 0;  // operations timed (bw/rate) or samples (lat)
  double seconds = 0;
  double mbytes_per_s = 0;  // 10^6 bytes per second, like perftest's MB/sec
  double gbits_per_s = 0;
  double mpps = 0;
  LatStats lat;
  // TCP baseline of the same size and kind (0 = not run): MB/s for bw, median us for lat.
  double tcp_ref = 0;
  double tcp_p99 = 0;
  uint64_t all_ops = 0;  // operations including the warm-up (for the exactly-once check)
  uint64_t uc_lost = 0;  // UC SEND: messages sent but never received (UC does not retransmit)
};

LatStats lat_stats(std::vector<double>& samples_us);

// ---- out-of-band channel (perf_oob.cc) ------------------------------------------------------

// One control message: a verb and key=value pairs, sent as one text line.
struct Msg {
  std::string verb;
  std::map<std::string, std::string> kv;
  std::string str() const;
  static std::optional<Msg> parse(std::string_view line);
  uint64_t u64(const std::string& key, uint64_t dflt = 0) const;
  double dbl(const std::string& key, double dflt = 0) const;
  std::string get(const std::string& key) const;
};

class Channel {
 public:
  ~Channel();
  // Connects to host:port, retrying refused connections until timeout.
  static std::unique_ptr<Channel> connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout,
                                          std::string* err);
  static std::unique_ptr<Channel> adopt(int fd);

  bool send(const Msg& m, std::string* err);
  // Waits up to timeout (negative: forever) for the next message; false on EOF, error, timeout.
  bool recv(Msg* m, std::chrono::milliseconds timeout, std::string* err);
  // Like recv, but fails unless the verb is `verb` (an ERROR message's text becomes *err).
  bool expect(const char* verb, Msg* m, std::chrono::milliseconds timeout, std::string* err);
  // A message (or EOF) is waiting: recv will not block.
  bool readable();

  // Raw bytes for the TCP baseline (after the line protocol has agreed on what follows).
  bool write_all(const void* p, size_t n);
  bool read_all(void* p, size_t n);
  // Like read_all, but spins on non-blocking reads instead of sleeping (busy-polled TCP).
  bool read_all_spin(void* p, size_t n);
  int fd() const { return fd_; }
  std::string peer() const;

 private:
  explicit Channel(int fd);
  int fd_;
  std::string inbuf_;
};

class Listener {
 public:
  ~Listener();
  // Binds host (empty: any IPv4 address) and port (0: an ephemeral one).
  static std::unique_ptr<Listener> open(const std::string& host, uint16_t port, std::string* err);
  // Waits for a client (negative timeout: forever).
  std::unique_ptr<Channel> accept(std::chrono::milliseconds timeout, std::string* err);
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// ---- RDMA side (perf_rdma.cc) ---------------------------------------------------------------

// What the other side tells us about itself in the handshake.
struct PeerInfo {
  wire::IpAddr gid;
  uint64_t addr = 0;  // base of its buffer
  uint64_t half = 0;  // size of each half of that buffer
  uint32_t rkey = 0;
  uint32_t mtu = 4096;
  std::vector<uint32_t> qpns, psns;
};

// One side's adapter, QPs and registered buffer. The buffer has two halves of `half` bytes:
// [0, half) is where the peer writes / we receive / atomics land; [half, 2*half) is what we
// send from and what the peer reads.
class Rdma {
 public:
  ~Rdma();
  static std::unique_ptr<Rdma> open(const Options& o, const std::string& dev_name, const std::optional<std::string>& addr,
                                    std::string* err);
  // QPs, CQs and the buffer; window and qps come from the client.
  bool setup(uint32_t nqps, uint32_t window, uint32_t rx_depth, size_t half, uint32_t inline_max, bool uc,
             std::string* err);
  PeerInfo local_info() const;
  bool connect(const PeerInfo& peer, std::string* err);

  Device& dev() { return *dev_; }
  uint32_t nqps() const { return static_cast<uint32_t>(qps_.size()); }
  bool uc() const { return uc_; }
  uint64_t addr(size_t off) const { return reinterpret_cast<uint64_t>(buf_) + off; }
  uint8_t* ptr(size_t off) { return buf_ + off; }
  size_t half() const { return half_; }
  const PeerInfo& peer() const { return peer_; }
  std::string describe_counters();

  // ---- client-side tests (each returns false with *err on failure or stall) ----
  bool run_bw(const Options& o, Op op, uint32_t size, uint64_t iters, double duration, Result* r, std::string* err);
  bool run_lat(const Options& o, Op op, uint32_t size, uint64_t iters, double duration, Result* r, std::string* err);

  // ---- server side: serve one test until the channel says DONE ----
  struct ServeStats {
    uint64_t recvs = 0, bytes = 0, echoes = 0;
  };
  bool serve(Channel& ch, Op op, Mode mode, uint32_t size, bool passive, std::chrono::seconds limit, ServeStats* st,
             Msg* done, std::string* err);

 private:
  Rdma() = default;
  void release();
  bool post_recvs(uint32_t qp_index, uint32_t n, std::string* err);
  bool repost_from(const Wc* wc, int n, std::string* err);
  bool check_wc(const Wc& wc, std::string* err);
  bool ping_pong_send(uint32_t size, uint64_t total, uint64_t warmup, double duration, std::vector<double>* samples,
                      std::string* err);
  bool ping_pong_write(uint32_t size, uint64_t total, uint64_t warmup, double duration, std::vector<double>* samples,
                       std::string* err);
  bool round_trips(const Options& o, Op op, uint32_t size, uint64_t total, uint64_t warmup, double duration,
                   std::vector<double>* samples, std::string* err);
  bool reap_sends(std::string* err);
  bool bw_loop(const Options& o, Op op, uint32_t size, uint64_t per_qp, double duration, uint64_t* done_ops,
               double* seconds, std::string* err);

  std::unique_ptr<Device> dev_;
  Pd* pd_ = nullptr;
  Cq* scq_ = nullptr;
  Cq* rcq_ = nullptr;
  std::vector<QueuePair*> qps_;
  std::vector<uint32_t> psns_;
  std::vector<uint32_t> recv_posted_;
  uint8_t* buf_ = nullptr;
  size_t buf_len_ = 0;
  size_t half_ = 0;
  Mr* mr_ = nullptr;
  uint32_t window_ = 0;
  uint32_t rx_depth_ = 0;
  uint32_t inline_max_ = 0;
  bool uc_ = false;
  uint64_t unsignaled_lat_ = 0;  // latency loops: sends since the last signaled one
  PeerInfo peer_;
  // Receive work requests, built once for the session's buffer (post_recvs): a ping-pong
  // reposts one per message, and building 64 each time cost more than the post itself.
  Sge recv_sge_{};
  RecvWr recv_wrs_[64];
};

// ---- TCP baseline (perf_tcp.cc) -------------------------------------------------------------

// Client side, over the session's channel (the server echoes / sinks as the TEST message says).
bool tcp_lat(Channel& ch, uint32_t size, uint64_t iters, uint64_t warmup, Result* r, std::string* err);
bool tcp_bw(Channel& ch, uint32_t size, uint64_t bytes, Result* r, std::string* err);
// Server side.
bool tcp_serve(Channel& ch, Mode mode, uint32_t size, uint64_t count, std::string* err);

// ---- sessions (perf_session.cc) -------------------------------------------------------------

int run_server(const Options& o);
int run_client(const Options& o);
int run_local(const Options& o);

// ---- output (perf_report.cc) ----------------------------------------------------------------

void print_header(const Options& o, Op op, Mode mode, const std::string& local, const std::string& remote,
                  Rdma* rdma);
void print_row_header(Mode mode, bool tcp_baseline);
void print_row(const Result& r, bool tcp_baseline);
void print_footer();
bool write_csv(const std::string& path, const std::vector<Result>& rows, std::string* err);
// Writes a plot with gnuplot; returns false with a message when gnuplot is missing or fails.
bool write_plot(const std::string& path, const std::vector<Result>& rows, std::string* msg);

// Iterations used when --iters is not given: enough for a stable figure, bounded in time.
uint64_t default_iters(Op op, Mode mode, uint32_t size);
uint64_t warmup_iters(Mode mode, uint64_t iters);

double seconds_since(std::chrono::steady_clock::time_point t0);
std::string human_size(uint64_t bytes);

}  // namespace softrdma::tools::perf
