/*
 * What the C verbs test programs share: per-section failure reporting (FAIL, CHECK, CHECK_RC
 * return -1 from the calling function after printing "FAIL section: file:line: what"), -v
 * notes, and polling one completion within TIMEOUT_MS. Each program includes it once, after
 * defining TIMEOUT_MS.
 */
#ifndef SOFTRDMA_TESTS_VERBS_CHECK_H
#define SOFTRDMA_TESTS_VERBS_CHECK_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>

static const char *g_section = "setup";
static int g_failures;
static bool g_verbose;

#define FAIL(...)                                                        \
  do {                                                                   \
    fprintf(stderr, "FAIL %s: %s:%d: ", g_section, __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__);                                        \
    fprintf(stderr, "\n");                                               \
    g_failures++;                                                        \
    return -1;                                                           \
  } while (0)

/* CHECK(cond, fmt...): fail the section with errno shown. */
#define CHECK(cond, ...)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      int e_ = errno;                                                                 \
      fprintf(stderr, "FAIL %s: %s:%d: %s: ", g_section, __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                                   \
      fprintf(stderr, " (errno %d %s)\n", e_, strerror(e_));                          \
      g_failures++;                                                                   \
      return -1;                                                                      \
    }                                                                                 \
  } while (0)

/* CHECK_RC(call): for verbs that return 0 or an errno value. */
#define CHECK_RC(call)                                                                                   \
  do {                                                                                                   \
    int rc_ = (call);                                                                                    \
    if (rc_ != 0) {                                                                                      \
      fprintf(stderr, "FAIL %s: %s:%d: %s returned %d (%s)\n", g_section, __FILE__, __LINE__, #call, rc_, \
              strerror(rc_ < 0 ? -rc_ : rc_));                                                           \
      g_failures++;                                                                                      \
      return -1;                                                                                         \
    }                                                                                                    \
  } while (0)

static void note(const char *fmt, ...) {
  if (!g_verbose) return;
  va_list ap;
  va_start(ap, fmt);
  printf("  ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Polls one completion from cq within TIMEOUT_MS. */
static int poll_one(struct ibv_cq *cq, struct ibv_wc *wc) {
  uint64_t deadline = now_ms() + TIMEOUT_MS;
  for (;;) {
    int n = ibv_poll_cq(cq, 1, wc);
    if (n < 0) FAIL("ibv_poll_cq returned %d", n);
    if (n == 1) return 0;
    if (now_ms() > deadline) FAIL("no completion within %d ms", TIMEOUT_MS);
    usleep(10);
  }
}

#endif
