/*
** The confinement policy's host primitives (policy.c) on a real file
** system: what is allowed is judged by where the kernel resolves it, a
** symlink or a hard link cannot carry a write outside, and a refusal
** leaves nothing behind.
*/
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/policy.h"
#include "policy_host.h"
#include "task.h"

static char root[256], allowed[300], outside[300];

static void path(char *buf, const char *dir, const char *name) {
  snprintf(buf, 600, "%s/%s", dir, name);
}

static int exists(const char *dir, const char *name) {
  char p[600];
  struct stat st;
  path(p, dir, name);
  return lstat(p, &st) == 0;
}

static void touch(const char *dir, const char *name) {
  char p[600];
  int fd;
  path(p, dir, name);
  fd = open(p, O_WRONLY | O_CREAT, 0600);
  ASSERT(fd >= 0);
  close(fd);
}

static orr_policy *policy(void) {
  const char *dirs[] = {allowed, NULL};
  orr_policy *p;
  orr_error e = {0, ""};
  ASSERT_OK(orr_policy_new(dirs, &p, &e));
  return p;
}

static void test_open(void) {
  orr_policy *p = policy();
  orr_error e = {0, ""};
  char a[600], b[600], ln[600];
  int fd;

  path(a, allowed, "new.txt");
  ASSERT_OK(orr_policy_open(p, a, O_WRONLY | O_CREAT | O_TRUNC, "t", &fd, &e));
  ASSERT_EQ(2, write(fd, "hi", 2));
  close(fd);
  /* Existing, through a symlink that stays inside: fine. */
  path(ln, allowed, "alias");
  ASSERT_OK(symlink(a, ln));
  ASSERT_OK(orr_policy_open(p, ln, O_WRONLY | O_APPEND, "t", &fd, &e));
  close(fd);
  /* Outside, directly and through a symlinked directory. */
  path(b, outside, "x.txt");
  ASSERT_ERR(orr_policy_open(p, b, O_WRONLY | O_CREAT, "t", &fd, &e),
             ORR_EPERM);
  ASSERT_STR_CONTAINS(e.msg, "outside the directories");
  path(ln, allowed, "out");
  ASSERT_OK(symlink(outside, ln));
  path(b, allowed, "out/y.txt");
  ASSERT_ERR(orr_policy_open(p, b, O_WRONLY | O_CREAT, "t", &fd, &e),
             ORR_EPERM);
  ASSERT_STR_CONTAINS(e.msg, "resolves to");
  ASSERT(!exists(outside, "x.txt") && !exists(outside, "y.txt"));
  /* A dangling symlink inside pointing outside would create its target. */
  path(ln, allowed, "dangling");
  path(b, outside, "z.txt");
  ASSERT_OK(symlink(b, ln));
  ASSERT_ERR(orr_policy_open(p, ln, O_WRONLY | O_CREAT, "t", &fd, &e),
             ORR_EPERM);
  ASSERT_STR_CONTAINS(e.msg, "dangling symlink");
  ASSERT(!exists(outside, "z.txt"));
  /* A hard link inside to a file outside: the write would land there. */
  touch(outside, "target");
  path(a, outside, "target");
  path(b, allowed, "hardlink");
  ASSERT_OK(link(a, b));
  ASSERT_ERR(orr_policy_open(p, b, O_WRONLY, "t", &fd, &e), ORR_EPERM);
  ASSERT_STR_CONTAINS(e.msg, "hard links");
  /* Not a regular file. */
  ASSERT_ERR(orr_policy_open(p, "/dev/null", O_WRONLY, "t", &fd, &e),
             ORR_EPERM);
  /* Reads: anywhere, but no device node (/dev/null is harmless), no FIFO. */
  path(b, outside, "target");
  ASSERT_OK(orr_policy_open_read(p, b, "t", &fd, &e));
  close(fd);
  ASSERT_OK(orr_policy_open_read(p, "/dev/null", "t", &fd, &e));
  close(fd);
  ASSERT_ERR(orr_policy_open_read(p, "/dev/tty", "t", &fd, &e), ORR_EPERM);
  path(b, outside, "fifo");
  ASSERT_OK(mkfifo(b, 0600));
  ASSERT_ERR(orr_policy_open_read(p, b, "t", &fd, &e), ORR_EPERM);
  ASSERT_ERR(orr_policy_check_read(p, b, "t", &e), ORR_EPERM);
  ASSERT_OK(orr_policy_check_read(p, outside, "t", &e));
  orr_policy_free(p);
}

static void test_remove_rename(void) {
  orr_policy *p = policy();
  orr_error e = {0, ""};
  char a[600], b[600];
  touch(allowed, "r1");
  touch(outside, "keep");
  path(a, allowed, "r1");
  path(b, allowed, "r2");
  ASSERT_OK(orr_policy_rename(p, a, b, "t", &e));
  ASSERT_OK(orr_policy_remove(p, b, "t", &e));
  ASSERT(!exists(allowed, "r2"));
  path(a, outside, "keep");
  ASSERT_ERR(orr_policy_remove(p, a, "t", &e), ORR_EPERM);
  ASSERT_ERR(orr_policy_rename(p, a, b, "t", &e), ORR_EPERM);
  ASSERT(exists(outside, "keep") && !exists(allowed, "r2"));
  orr_policy_free(p);
}

static void test_engine_primitives(void) {
  orr_policy *p = policy();
  orr_error e = {0, ""};
  struct stat st;
  bool out;
  char a[600];
  int fd;
  /* Reads anywhere, of regular files only; writes inside. */
  touch(outside, "ro.img");
  path(a, outside, "ro.img");
  ASSERT_OK(orr__policy_open_file(p, a, false, "t", &fd, &out, &st, &e));
  ASSERT(out);
  close(fd);
  ASSERT_ERR(orr__policy_open_file(p, a, true, "t", &fd, &out, &st, &e),
             ORR_EPERM);
  ASSERT_ERR(
      orr__policy_open_file(p, "/dev/zero", false, "t", &fd, &out, &st, &e),
      ORR_EPERM);
  touch(allowed, "rw.img");
  path(a, allowed, "rw.img");
  ASSERT_OK(orr__policy_open_file(p, a, true, "t", &fd, &out, &st, &e));
  ASSERT(!out);
  close(fd);
  /* A socket is bound where its directory resolves, and only inside. */
  path(a, allowed, "com.sock");
  ASSERT_OK(orr__policy_listen(p, a, "t", &fd, &e));
  close(fd);
  ASSERT(exists(allowed, "com.sock"));
  ASSERT_OK(orr__policy_listen(p, a, "t", &fd, &e)); /* a stale one goes */
  close(fd);
  path(a, allowed, "out/com.sock"); /* "out" links outside (test_open) */
  ASSERT_ERR(orr__policy_listen(p, a, "t", &fd, &e), ORR_EPERM);
  ASSERT(!exists(outside, "com.sock"));
  path(a, allowed, "rw.img"); /* not a socket: never replaced */
  ASSERT_ERR(orr__policy_listen(p, a, "t", &fd, &e), ORR_EPERM);
  /* Runtime directories. */
  path(a, allowed, "run/vm1");
  ASSERT_ERR(orr__policy_check_new_dir(p, a, "t", &e), ORR_ENOENT);
  path(a, allowed, "vm1");
  ASSERT_OK(orr__policy_check_new_dir(p, a, "t", &e));
  ASSERT_OK(orr__policy_check_new_dir(p, allowed, "t", &e));
  path(a, outside, "vm1");
  ASSERT_ERR(orr__policy_check_new_dir(p, a, "t", &e), ORR_EPERM);
  ASSERT(orr__policy_raw_qmp_allowed("query-block"));
  ASSERT(!orr__policy_raw_qmp_allowed("migrate"));
  orr_policy_free(p);
}

static void test_engine_one_way(void) {
  orr_engine *eng;
  orr_error e = {0, ""};
  ASSERT_OK(orr_engine_new(NULL, &eng, &e));
  ASSERT_NULL(orr_engine_policy(eng));
  ASSERT_OK(orr_engine_confine(eng, policy(), &e));
  ASSERT_NOT_NULL(orr_engine_policy(eng));
  ASSERT_ERR(orr_engine_confine(eng, policy(), &e), ORR_EPERM);
  orr_engine_free(eng);
}

int main(void) {
  char cmd[600];
  snprintf(root, sizeof root, "/tmp/orr-policy-XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(root));
  snprintf(allowed, sizeof allowed, "%s/allowed", root);
  snprintf(outside, sizeof outside, "%s/outside", root);
  ASSERT_OK(mkdir(allowed, 0700));
  ASSERT_OK(mkdir(outside, 0700));
  test_open();
  test_remove_rename();
  test_engine_primitives();
  test_engine_one_way();
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  ASSERT_EQ(0, system(cmd));
  printf("ok\n");
  return 0;
}
