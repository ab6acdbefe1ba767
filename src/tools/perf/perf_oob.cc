// The out-of-band channel: a TCP connection carrying one text line per message
// ("VERB key=value key=value\n"), like perftest's socket exchange of QPN, PSN, rkey, address
// and GID. Text keeps it independent of byte order and readable in a packet capture.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "tools/perf/perf.h"

namespace softrdma::tools::perf {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// One non-blocking connect attempt bounded by the deadline. Returns the fd or -1 with errno.
int connect_once(const addrinfo* ai, Clock::time_point deadline) {
  int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      int e = errno;
      ::close(fd);
      errno = e;
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r <= 0) {
      ::close(fd);
      errno = r == 0 ? ETIMEDOUT : errno;
      return -1;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
      ::close(fd);
      errno = soerr;
      return -1;
    }
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

}  // namespace

// ---- Msg ------------------------------------------------------------------------------------

std::string Msg::str() const {
  std::string s = verb;
  for (const auto& [k, v] : kv) {
    s += ' ';
    s += k;
    s += '=';
    s += v;
  }
  return s;
}

std::optional<Msg> Msg::parse(std::string_view line) {
  Msg m;
  size_t i = 0;
  auto next_word = [&]() -> std::string_view {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    return line.substr(start, i - start);
  };
  std::string_view w = next_word();
  if (w.empty()) return std::nullopt;
  m.verb = std::string(w);
  for (w = next_word(); !w.empty(); w = next_word()) {
    size_t eq = w.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    m.kv[std::string(w.substr(0, eq))] = std::string(w.substr(eq + 1));
  }
  return m;
}

uint64_t Msg::u64(const std::string& key, uint64_t dflt) const {
  auto it = kv.find(key);
  return it == kv.end() ? dflt : std::strtoull(it->second.c_str(), nullptr, 0);
}

double Msg::dbl(const std::string& key, double dflt) const {
  auto it = kv.find(key);
  return it == kv.end() ? dflt : std::strtod(it->second.c_str(), nullptr);
}

std::string Msg::get(const std::string& key) const {
  auto it = kv.find(key);
  return it == kv.end() ? std::string() : it->second;
}

// ---- Channel --------------------------------------------------------------------------------

Channel::Channel(int fd) : fd_(fd) { set_nodelay(fd); }

Channel::~Channel() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<Channel> Channel::adopt(int fd) { return std::unique_ptr<Channel>(new Channel(fd)); }

std::unique_ptr<Channel> Channel::connect(const std::string& host, uint16_t port, milliseconds timeout,
                                          std::string* err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    *err = "cannot resolve " + host + ": " + gai_strerror(rc);
    return nullptr;
  }
  auto deadline = Clock::now() + timeout;
  int last = ETIMEDOUT;
  for (;;) {
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      int fd = connect_once(ai, deadline);
      if (fd >= 0) {
        freeaddrinfo(res);
        return std::unique_ptr<Channel>(new Channel(fd));
      }
      last = errno;
    }
    // A server that is starting up refuses for a moment: retry until the deadline.
    if (Clock::now() + milliseconds(100) >= deadline) break;
    if (last != ECONNREFUSED && last != ETIMEDOUT && last != EAGAIN) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  freeaddrinfo(res);
  *err = "cannot reach the perf server at " + host + ":" + service + ": " + strerror(last) +
         " (is `softrdma perf --server` running there?)";
  return nullptr;
}

bool Channel::send(const Msg& m, std::string* err) {
  std::string line = m.str() + "\n";
  if (!write_all(line.data(), line.size())) {
    *err = "control connection lost while sending " + m.verb + ": " + strerror(errno);
    return false;
  }
  return true;
}

bool Channel::readable() {
  if (inbuf_.find('\n') != std::string::npos) return true;
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

bool Channel::recv(Msg* m, milliseconds timeout, std::string* err) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    size_t nl = inbuf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = inbuf_.substr(0, nl);
      inbuf_.erase(0, nl + 1);
      auto parsed = Msg::parse(line);
      if (!parsed) {
        *err = "malformed control message: '" + line + "'";
        return false;
      }
      *m = std::move(*parsed);
      return true;
    }
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, timeout.count() < 0 ? -1 : remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      *err = "timed out waiting for the peer's control message";
      return false;
    }
    char buf[4096];
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *err = n == 0 ? "the peer closed the control connection" : std::string("control connection: ") + strerror(errno);
      return false;
    }
    inbuf_.append(buf, static_cast<size_t>(n));
  }
}

bool Channel::expect(const char* verb, Msg* m, milliseconds timeout, std::string* err) {
  if (!recv(m, timeout, err)) return false;
  if (m->verb == verb) return true;
  if (m->verb == "ERROR") {
    std::string why = m->get("why");
    for (char& c : why)
      if (c == '_') c = ' ';
    *err = "the peer reports: " + why;
  } else {
    *err = "protocol error: expected " + std::string(verb) + ", got '" + m->str() + "'";
  }
  return false;
}

bool Channel::write_all(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::send(fd_, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool Channel::read_all(void* p, size_t n) {
  char* c = static_cast<char*>(p);
  // Bytes already buffered by the line reader come first.
  size_t from_buf = std::min(n, inbuf_.size());
  if (from_buf) {
    std::memcpy(c, inbuf_.data(), from_buf);
    inbuf_.erase(0, from_buf);
    c += from_buf;
    n -= from_buf;
  }
  while (n > 0) {
    ssize_t r = ::read(fd_, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool Channel::read_all_spin(void* p, size_t n) {
  char* c = static_cast<char*>(p);
  size_t from_buf = std::min(n, inbuf_.size());
  if (from_buf) {
    std::memcpy(c, inbuf_.data(), from_buf);
    inbuf_.erase(0, from_buf);
    c += from_buf;
    n -= from_buf;
  }
  uint32_t idle = 0;
  Clock::time_point since{};
  while (n > 0) {
    ssize_t r = ::recv(fd_, c, n, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      // A silent peer: give up after kStallLimit rather than spin forever.
      if ((++idle & 4095) == 0) {
        if (since == Clock::time_point{}) since = Clock::now();
        else if (Clock::now() - since > kStallLimit) return false;
      }
      continue;
    }
    if (r <= 0) return false;
    idle = 0;
    since = {};
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

std::string Channel::peer() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

// ---- Listener -------------------------------------------------------------------------------

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<Listener> Listener::open(const std::string& host, uint16_t port, std::string* err) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (host.empty()) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    a->sin_port = htons(port);
    len = sizeof *a;
  } else {
    auto ip = wire::IpAddr::parse(host);
    if (!ip) {
      *err = "not an IP address: " + host;
      return nullptr;
    }
    wire::Endpoint ep{*ip, port};
    len = ep.to_sockaddr(ss);
    family = ip->is_v4() ? AF_INET : AF_INET6;
  }
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = std::string("socket: ") + strerror(errno);
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 4) != 0) {
    *err = "cannot listen on " + (host.empty() ? std::string("*") : host) + ":" + std::to_string(port) + ": " +
           strerror(errno);
    ::close(fd);
    return nullptr;
  }
  sockaddr_storage bound{};
  socklen_t bl = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
  auto l = std::unique_ptr<Listener>(new Listener());
  l->fd_ = fd;
  l->port_ = bound.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                                        : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return l;
}

std::unique_ptr<Channel> Listener::accept(milliseconds timeout, std::string* err) {
  pollfd p{fd_, POLLIN, 0};
  for (;;) {
    int r = ::poll(&p, 1, timeout.count() < 0 ? -1 : static_cast<int>(timeout.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      *err = r == 0 ? "no client connected in time" : std::string("poll: ") + strerror(errno);
      return nullptr;
    }
    break;
  }
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    *err = std::string("accept: ") + strerror(errno);
    return nullptr;
  }
  return Channel::adopt(fd);
}

}  // namespace softrdma::tools::perf
