/*
** The default guest known by its manifest, not by where it lies: a copy
** anywhere (even reached through a symlink) is still the default guest, a
** kernel beside a manifest that names another file is not, malformed
** manifests are refused naming the field, $ORRERY_GUEST_DIR is used alone,
** and this test program (in the build tree) finds the build's guest and
** its source tree through the build-tree marker.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/guest_image.h"
#include "orrery/install.h"
#include "task.h"

static char root[64];

static void spit(const char *dir, const char *name, const char *text) {
  char path[256];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs(text, f);
  fclose(f);
}

/* A fake image: two files and a manifest (text) in root/name. */
static const char *image(const char *name, const char *manifest) {
  static char dir[128];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  ASSERT_EQ(0, mkdir(dir, 0755));
  spit(dir, "vmlinux", "kernel");
  spit(dir, "initramfs.cpio.gz", "initrd");
  if (manifest)
    spit(dir, ORR_GUEST_MANIFEST, manifest);
  return dir;
}

static const char good[] =
    "{\"orrery_guest\": 1, \"kernel\": \"vmlinux\", \"bzimage\": \"vmlinuz\","
    " \"initrd\": \"initramfs.cpio.gz\", \"cmdline\": \"console=ttyS0\","
    " \"agent\": \"org.qemu.guest_agent.0\", \"kernel_release\": \"6.1\"}";

static void test_load(void) {
  orr_guest_image img;
  orr_error e = {0, ""};
  const char *dir = image("good", good);
  char path[256];
  ASSERT_OK(orr_guest_image_load(dir, &img, &e));
  snprintf(path, sizeof path, "%s/vmlinux", dir);
  ASSERT_STR_EQ(img.kernel, path);
  snprintf(path, sizeof path, "%s/initramfs.cpio.gz", dir);
  ASSERT_STR_EQ(img.initrd, path);
  ASSERT_STR_EQ(img.cmdline, "console=ttyS0");
  ASSERT_STR_EQ(img.agent, "org.qemu.guest_agent.0");
  ASSERT_STR_EQ(img.release, "6.1");
  ASSERT_STR_EQ(img.ready_line, "");
}

static void test_refused(void) {
  static const struct {
    const char *name, *manifest, *says;
    int code;
  } cases[] = {
      {"none", NULL, "no orrery-guest.json in", ORR_ENOENT},
      {"syntax", "{\"orrery_guest\": 1,", "line 1", ORR_EINVAL},
      {"format", "{\"orrery_guest\": 2}", "\"orrery_guest\" must be 1",
       ORR_EINVAL},
      {"array", "[1]", "\"orrery_guest\" must be 1", ORR_EINVAL},
      {"nokernel",
       "{\"orrery_guest\": 1, \"initrd\": \"initramfs.cpio.gz\", "
       "\"cmdline\": \"\"}",
       "\"kernel\" must be a file name in the same directory", ORR_EINVAL},
      {"escape",
       "{\"orrery_guest\": 1, \"kernel\": \"../good/vmlinux\", "
       "\"initrd\": \"initramfs.cpio.gz\", \"cmdline\": \"\"}",
       "\"kernel\" must be a file name in the same directory", ORR_EINVAL},
      {"cmdline",
       "{\"orrery_guest\": 1, \"kernel\": \"vmlinux\", "
       "\"initrd\": \"initramfs.cpio.gz\", \"cmdline\": 3}",
       "\"cmdline\" must be a string", ORR_EINVAL},
      {"missing",
       "{\"orrery_guest\": 1, \"kernel\": \"vmlinux\", "
       "\"initrd\": \"gone.gz\", \"cmdline\": \"\"}",
       "names the initramfs", ORR_ENOENT},
      {"twice",
       "{\"orrery_guest\": 1, \"orrery_guest\": 1, \"kernel\": \"vmlinux\"}",
       "duplicate", ORR_EINVAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    orr_guest_image img;
    orr_error e = {0, ""};
    const char *dir = image(cases[i].name, cases[i].manifest);
    ASSERT_ERR(orr_guest_image_load(dir, &img, &e), cases[i].code);
    ASSERT_STR_CONTAINS(e.msg, cases[i].says);
    /* And such a kernel is not taken for the default guest. */
    snprintf(img.kernel, sizeof img.kernel, "%s/vmlinux", dir);
    ASSERT_EQ(0, orr_guest_image_is_kernel(img.kernel));
  }
}

static void test_is_kernel(void) {
  char path[256], link[256];
  const char *dir = image("named", good);
  snprintf(path, sizeof path, "%s/vmlinux", dir);
  ASSERT_EQ(1, orr_guest_image_is_kernel(path));
  /* The bzImage the manifest names counts too. */
  spit(dir, "vmlinuz", "bzimage");
  snprintf(path, sizeof path, "%s/vmlinuz", dir);
  ASSERT_EQ(1, orr_guest_image_is_kernel(path));
  /* A file beside it that the manifest does not name does not. */
  spit(dir, "other", "x");
  snprintf(path, sizeof path, "%s/other", dir);
  ASSERT_EQ(0, orr_guest_image_is_kernel(path));
  /* Reached through a symlink from elsewhere: still the same kernel. */
  snprintf(path, sizeof path, "%s/vmlinux", dir);
  snprintf(link, sizeof link, "%s/elsewhere-vmlinux", root);
  ASSERT_EQ(0, symlink(path, link));
  ASSERT_EQ(1, orr_guest_image_is_kernel(link));
  ASSERT_EQ(0, orr_guest_image_is_kernel(NULL));
  ASSERT_EQ(0, orr_guest_image_is_kernel(""));
  ASSERT_EQ(0, orr_guest_image_is_kernel("/nonexistent/vmlinux"));
}

static void test_default(void) {
  orr_guest_image img;
  orr_error e = {0, ""};
  char build[512], want[600];
  const char *dir = image("env", good);
  /* $ORRERY_GUEST_DIR wins, and is the only place looked at when set. */
  setenv("ORRERY_GUEST_DIR", dir, 1);
  ASSERT_OK(orr_guest_image_default(&img, &e));
  ASSERT_STR_EQ(img.dir, dir);
  setenv("ORRERY_GUEST_DIR", root, 1);
  ASSERT_ERR(orr_guest_image_default(&img, &e), ORR_ENOENT);
  ASSERT_STR_CONTAINS(e.msg, "$ORRERY_GUEST_DIR");
  ASSERT_STR_CONTAINS(e.msg, root);
  unsetenv("ORRERY_GUEST_DIR");
  /* This program runs from the build tree: the marker names the build's
  ** guest (built by `cmake --build`, as the suite requires). */
  ASSERT_OK(orr_install_dir(ORR_DIR_BUILD, build, sizeof build));
  ASSERT_OK(orr_guest_image_default(&img, &e));
  snprintf(want, sizeof want, "%s/guest", build);
  ASSERT_STR_EQ(img.dir, want);
  ASSERT(img.cmdline[0] != '\0');
  ASSERT_EQ(1, orr_guest_image_is_kernel(img.kernel));
}

static void test_install_dirs(void) {
  char build[512], lua[512], path[600];
  ASSERT_OK(orr_install_dir(ORR_DIR_BUILD, build, sizeof build));
  snprintf(path, sizeof path, "%s/%s", build, ORR_BUILD_TREE_MARKER);
  ASSERT_EQ(0, access(path, R_OK));
  ASSERT_OK(orr_install_dir(ORR_DIR_LUA, lua, sizeof lua));
  snprintf(path, sizeof path, "%s/orrery/init.lua", lua);
  ASSERT_EQ(0, access(path, R_OK));
  ASSERT_OK(orr_install_dir(ORR_DIR_EXAMPLES, path, sizeof path));
  ASSERT_STR_CONTAINS(path, "scripts/recipes");
  ASSERT_ERR(orr_install_dir((orr_dir)99, path, sizeof path), ORR_ENOENT);
  ASSERT_ERR(orr_install_dir(ORR_DIR_LUA, path, 4), ORR_ENOENT);
}

int main(void) {
  char cmd[128];
  snprintf(root, sizeof root, "/tmp/orr-guest-image.XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(root));
  RUN_TEST(test_load);
  RUN_TEST(test_refused);
  RUN_TEST(test_is_kernel);
  RUN_TEST(test_default);
  RUN_TEST(test_install_dirs);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  ASSERT_EQ(0, system(cmd));
  return 0;
}
