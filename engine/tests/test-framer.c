/* The line framer: splits, CRLF, the length bound and 0xFF resync. */
#include "orrery/framer.h"
#include "task.h"

typedef struct {
  char lines[16][64];
  int n;
  int stop_after;   /* the callback returns 7 after this many lines; 0: never */
  int resync_after; /* calls orr_framer_resync() after this many; 0: never */
  orr_framer *f;
} sink;

static int collect(void *arg, const char *line, size_t len) {
  sink *s = arg;

  ASSERT_LT(s->n, 16);
  ASSERT_LT(len, 64);
  memcpy(s->lines[s->n], line, len);
  s->lines[s->n][len] = '\0';
  s->n++;
  if (s->resync_after != 0 && s->n == s->resync_after)
    orr_framer_resync(s->f);
  return s->stop_after != 0 && s->n == s->stop_after ? 7 : 0;
}

static void feed(orr_framer *f, const char *text) {
  ASSERT_OK(orr_framer_feed(f, text, strlen(text)));
}

static void test_split_chunks(void) {
  static const char text[] = "{\"a\":1}\n{\"b\":22}\n\n{\"c\":333}\n";
  size_t i, step;

  /* Every chunk size from one byte to the whole, same lines each time. */
  for (step = 1; step <= sizeof text - 1; step++) {
    orr_framer f;
    sink s = {0};

    orr_framer_init(&f, 0, collect, &s);
    for (i = 0; i < sizeof text - 1; i += step) {
      size_t n = sizeof text - 1 - i < step ? sizeof text - 1 - i : step;

      ASSERT_OK(orr_framer_feed(&f, text + i, n));
    }
    ASSERT_EQ(s.n, 3); /* the empty line is skipped */
    ASSERT_STR_EQ(s.lines[0], "{\"a\":1}");
    ASSERT_STR_EQ(s.lines[1], "{\"b\":22}");
    ASSERT_STR_EQ(s.lines[2], "{\"c\":333}");
    orr_framer_free(&f);
  }
}

static void test_partial_kept(void) {
  orr_framer f;
  sink s = {0};

  orr_framer_init(&f, 0, collect, &s);
  feed(&f, "abc");
  ASSERT_EQ(s.n, 0);
  feed(&f, "def\nxyz");
  ASSERT_EQ(s.n, 1);
  ASSERT_STR_EQ(s.lines[0], "abcdef");
  feed(&f, "\n");
  ASSERT_STR_EQ(s.lines[1], "xyz");
  orr_framer_free(&f);
}

static void test_crlf(void) {
  orr_framer f;
  sink s = {0};

  orr_framer_init(&f, 0, collect, &s);
  feed(&f, "one\r\ntwo\r");
  feed(&f, "\nthree\n\r\n");
  ASSERT_EQ(s.n, 3);
  ASSERT_STR_EQ(s.lines[0], "one");
  ASSERT_STR_EQ(s.lines[1], "two");
  ASSERT_STR_EQ(s.lines[2], "three");
  orr_framer_free(&f);
}

static void test_overlong(void) {
  orr_framer f;
  sink s = {0};

  /* Exactly max bytes is fine, whole or split. */
  orr_framer_init(&f, 8, collect, &s);
  feed(&f, "12345678\n1234");
  feed(&f, "5678\n");
  ASSERT_EQ(s.n, 2);

  /* One more, without a newline yet: refused before it is buffered. */
  feed(&f, "12345");
  ASSERT_ERR(orr_framer_feed(&f, "6789", 4), ORR_EIO);
  /* Sticky until reset: the connection is to be dropped. */
  ASSERT_ERR(orr_framer_feed(&f, "ok\n", 3), ORR_EIO);
  ASSERT_EQ(s.n, 2);
  orr_framer_reset(&f);
  feed(&f, "ok\n");
  ASSERT_EQ(s.n, 3);
  ASSERT_STR_EQ(s.lines[2], "ok");

  /* A whole overlong line inside one chunk fails the same way. */
  ASSERT_ERR(orr_framer_feed(&f, "123456789\n", 10), ORR_EIO);
  orr_framer_free(&f);

  /* The default bound is 16 MiB and a line that size goes through. */
  {
    size_t big = ORR_FRAMER_DEFAULT_MAX;
    char *buf = malloc(big + 2);
    orr_framer g;
    sink t = {0};
    size_t i;

    ASSERT_NOT_NULL(buf);
    memset(buf, 'x', big + 2);
    orr_framer_init(&g, 0, collect, &t);
    /* Fed in 64 KiB pieces like a socket would; the line itself is too big
    ** for the sink, so check only that nothing arrives until it is cut. */
    for (i = 0; i < big; i += 65536)
      ASSERT_OK(orr_framer_feed(&g, buf, 65536));
    ASSERT_EQ(t.n, 0);
    ASSERT_ERR(orr_framer_feed(&g, buf, 1), ORR_EIO);
    orr_framer_free(&g);
    free(buf);
  }
}

static void test_stop(void) {
  orr_framer f;
  sink s = {0};

  s.stop_after = 1;
  orr_framer_init(&f, 0, collect, &s);
  ASSERT_EQ(orr_framer_feed(&f, "a\nb\nc\n", 6), 7);
  ASSERT_EQ(s.n, 1);
  orr_framer_free(&f);
}

static void test_resync(void) {
  orr_framer f;
  sink s = {0};

  orr_framer_init(&f, 0, collect, &s);
  s.f = &f;

  /* A partial line and stale lines before the 0xFF are dropped. */
  feed(&f, "{\"stale\":");
  orr_framer_resync(&f);
  ASSERT(orr_framer_resyncing(&f));
  feed(&f, "1}\n{\"old\":2}\n");
  ASSERT_EQ(s.n, 0);
  feed(&f, "junk\xff{\"return\":");
  ASSERT(!orr_framer_resyncing(&f));
  feed(&f, "42}\n");
  ASSERT_EQ(s.n, 1);
  ASSERT_STR_EQ(s.lines[0], "{\"return\":42}");

  /* The 0xFF alone in its chunk, then the reply in the next. */
  orr_framer_resync(&f);
  feed(&f, "\xff");
  feed(&f, "{\"x\":1}\n");
  ASSERT_STR_EQ(s.lines[1], "{\"x\":1}");

  /* A resync asked for from the callback applies to the rest of the same
  ** chunk: "skipped" goes, the line after the 0xFF stays. */
  s.resync_after = 3;
  feed(&f, "third\nskipped\n\xffkept\n");
  ASSERT_EQ(s.n, 4);
  ASSERT_STR_EQ(s.lines[2], "third");
  ASSERT_STR_EQ(s.lines[3], "kept");
  orr_framer_free(&f);
}

int main(void) {
  RUN_TEST(test_split_chunks);
  RUN_TEST(test_partial_kept);
  RUN_TEST(test_crlf);
  RUN_TEST(test_overlong);
  RUN_TEST(test_stop);
  RUN_TEST(test_resync);
  return 0;
}
