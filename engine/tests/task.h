/*
** A tiny assert kit for the C tests, after libuv's test/task.h: each check
** prints file:line, the expression and both values (error codes by name
** and text) and exits non-zero, so ctest reports the failing line. A test
** file is one executable whose main() runs its cases with RUN_TEST.
*/
#ifndef ORRERY_TEST_TASK_H
#define ORRERY_TEST_TASK_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "orrery/error.h"

#define TEST_FAIL_(...)                                                        \
  do {                                                                         \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    exit(1);                                                                   \
  } while (0)

#define ASSERT(expr)                                                           \
  do {                                                                         \
    if (!(expr))                                                               \
      TEST_FAIL_("assertion failed: %s", #expr);                               \
  } while (0)

#define ASSERT_INT_(a, op, b)                                                  \
  do {                                                                         \
    int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                              \
    if (!(a_ op b_))                                                           \
      TEST_FAIL_("%s %s %s: %" PRId64 " vs %" PRId64, #a, #op, #b, a_, b_);    \
  } while (0)

#define ASSERT_EQ(a, b) ASSERT_INT_(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_(a, !=, b)
#define ASSERT_GT(a, b) ASSERT_INT_(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_(a, >=, b)
#define ASSERT_LT(a, b) ASSERT_INT_(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_(a, <=, b)

/* An orr_err (or 0) compared by name: "expected EVMGONE, got ECANCELED". */
#define ASSERT_ERR(expr, want)                                                 \
  do {                                                                         \
    int got_ = (expr), want_ = (want);                                         \
    if (got_ != want_)                                                         \
      TEST_FAIL_("%s: expected %s, got %s (%s)", #expr, orr_err_name(want_),   \
                 orr_err_name(got_), orr_strerror(got_));                      \
  } while (0)

#define ASSERT_OK(expr) ASSERT_ERR(expr, 0)

/* A libuv call that must return 0. */
#define ASSERT_UV_OK(expr)                                                     \
  do {                                                                         \
    int got_ = (expr);                                                         \
    if (got_ != 0)                                                             \
      TEST_FAIL_("%s: %s", #expr, uv_strerror(got_));                          \
  } while (0)

#define ASSERT_NULL(p) ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

#define ASSERT_STR_EQ(a, b)                                                    \
  do {                                                                         \
    const char *a_ = (a), *b_ = (b);                                           \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                       \
      TEST_FAIL_("%s == %s: \"%s\" vs \"%s\"", #a, #b, a_ ? a_ : "(null)",     \
                 b_ ? b_ : "(null)");                                          \
  } while (0)

#define ASSERT_STR_CONTAINS(hay, needle)                                       \
  do {                                                                         \
    const char *h_ = (hay), *n_ = (needle);                                    \
    if (h_ == NULL || strstr(h_, n_) == NULL)                                  \
      TEST_FAIL_("%s does not contain \"%s\": \"%s\"", #hay, n_,               \
                 h_ ? h_ : "(null)");                                          \
  } while (0)

/* A byte range compared with a C string. */
#define ASSERT_MEM_EQ(p, n, str)                                               \
  do {                                                                         \
    size_t n_ = (n);                                                           \
    if (n_ != strlen(str) || memcmp((p), (str), n_) != 0)                      \
      TEST_FAIL_("%s: \"%.*s\" vs \"%s\"", #p, (int)n_, (const char *)(p),     \
                 (str));                                                       \
  } while (0)

/* Every test ends here. Runs what is still pending, then the loop must be
** empty: a handle left open by the code under test fails the test (EBUSY)
** instead of being closed for it. */
#define MAKE_VALGRIND_HAPPY(loop)                                              \
  do {                                                                         \
    ASSERT_UV_OK(uv_run((loop), UV_RUN_DEFAULT));                              \
    ASSERT_UV_OK(uv_loop_close(loop));                                         \
  } while (0)

#define RUN_TEST(fn)                                                           \
  do {                                                                         \
    fn();                                                                      \
    printf("ok - %s\n", #fn);                                                  \
    fflush(stdout);                                                            \
  } while (0)

#endif
