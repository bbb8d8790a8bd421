/*
** The image inspector (image.c): its probe agrees with QEMU's own (qemu-img
** info, the same probers, on images qemu-img made), it finds every file a
** header names, and a chain is refused where QEMU would follow a protocol,
** a json: pseudo-file, a cycle or an endless chain, or open what it cannot
** open correctly; crafted headers (wrong lengths, unknown features, NULs)
** give an error, never a crash.
*/
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "task.h"

static char dir[64];

static const char *at(const char *name) {
  static char buf[8][512];
  static int i;
  i = (i + 1) % 8;
  snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
  return buf[i];
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  if (system(cmd) != 0)
    TEST_FAIL_("failed: %s", cmd);
}

/* qemu-img's own probe of name: its "file format" without -f. */
static void qemu_probe(const char *name, char *out, size_t size) {
  char cmd[1024];
  FILE *p;
  snprintf(cmd, sizeof cmd,
           "qemu-img info --force-share '%s' | sed -n 's/^file format: //p'",
           at(name));
  p = popen(cmd, "r");
  ASSERT_NOT_NULL(p);
  if (fgets(out, (int)size, p) == NULL)
    out[0] = '\0';
  out[strcspn(out, "\n")] = '\0';
  pclose(p);
}

static int open_ro(const char *name) {
  int fd = open(at(name), O_RDONLY | O_CLOEXEC);
  ASSERT(fd >= 0);
  return fd;
}

static void write_at(const char *name, const void *buf, size_t n, off_t off) {
  int fd = open(at(name), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT(fd >= 0);
  ASSERT_EQ((ssize_t)n, pwrite(fd, buf, n, off));
  close(fd);
}

static void test_probe_matches_qemu(void) {
  static const char *const images[] = {
      "r.raw", "q2.qcow2", "q.qed", "s.vmdk",  "flat.vmdk", "v.vhdx", "d.vpc",
      "f.vpc", "v.vdi",    "p.prl", "q1.qcow", "l.luks",    "empty"};
  static const char cloop[] =
      "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 "
      "/dev/cloop $1\n";
  uint8_t bochs[512] = {0};
  sh("cd %s && qemu-img create -q -f raw r.raw 1M && "
     "qemu-img create -q -f qcow2 q2.qcow2 1M && "
     "qemu-img create -q -f qed q.qed 1M && "
     "qemu-img create -q -f vmdk s.vmdk 1M && "
     "qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 1M && "
     "qemu-img create -q -f vhdx v.vhdx 1M && "
     "qemu-img create -q -f vpc d.vpc 1M && "
     "qemu-img create -q -f vpc -o subformat=fixed f.vpc 1M && "
     "qemu-img create -q -f vdi v.vdi 1M && "
     "qemu-img create -q -f parallels p.prl 1M && "
     "qemu-img create -q -f qcow -b r.raw -F raw q1.qcow && "
     /* LUKS times its key derivation on the CPU clock and gives up
     ** ("Unable to get accurate CPU usage") when a busy host's reading
     ** comes back coarse: try again rather than fail the image tests. */
     "{ for i in 1 2 3 4 5; do qemu-img create -q --object secret,id=s,data=x "
     "-f luks -o key-secret=s l.luks 1M && break; sleep 0.2; done; "
     "[ -s l.luks ]; } && "
     "qemu-img create -q -f raw x.dmg 1M && : > empty",
     dir);
  write_at("cl.img", cloop, sizeof cloop - 1, 0);
  memcpy(bochs, "Bochs Virtual HD Image", 22);
  memcpy(bochs + 32, "Redolog", 7);
  memcpy(bochs + 48, "Growing", 7);
  bochs[66] = 2; /* version 0x00020000, little-endian */
  write_at("bochs.img", bochs, sizeof bochs, 0);
  for (size_t i = 0; i < sizeof images / sizeof *images; i++) {
    char want[64];
    int fd = open_ro(images[i]);
    const char *got = orr__image_probe(fd, at(images[i]));
    close(fd);
    qemu_probe(images[i], want, sizeof want);
    if (strcmp(want, got) != 0)
      TEST_FAIL_("%s: QEMU probes %s, the engine %s", images[i], want, got);
  }
  /* The engine's rule for an image a document names: a fixed VHD by its
  ** footer (QEMU probes it as raw), .raw pinned whatever it holds. */
  {
    int fd = open_ro("f.vpc");
    ASSERT_STR_EQ(orr__image_top_format(fd, at("f.vpc")), "vpc");
    close(fd);
    sh("cp %s %s", at("q2.qcow2"), at("pinned.raw"));
    fd = open_ro("pinned.raw");
    ASSERT_STR_EQ(orr__image_top_format(fd, at("pinned.raw")), "raw");
    close(fd);
    fd = open_ro("q1.qcow");
    ASSERT_STR_EQ(orr__image_top_format(fd, at("q1.qcow")), "qcow");
    close(fd);
    ASSERT_STR_EQ(orr__image_top_format(-1, "/x/y.qcow2"), "qcow2");
  }
  /* QEMU probes these, but qemu-img cannot open such stand-ins: by rule. */
  {
    static const char *const by_rule[][2] = {
        {"x.dmg", "dmg"}, {"cl.img", "cloop"}, {"bochs.img", "bochs"}};
    for (size_t i = 0; i < 3; i++) {
      int fd = open_ro(by_rule[i][0]);
      ASSERT_STR_EQ(orr__image_probe(fd, at(by_rule[i][0])), by_rule[i][1]);
      close(fd);
    }
  }
  printf("ok - the probe agrees with qemu-img on %zu images\n",
         sizeof images / sizeof *images);
}

static orr_image_refs refs(const char *name, const char *format, int want) {
  orr_image_refs r;
  orr_error e = {0, ""};
  int fd = open_ro(name), rc = orr__image_refs(fd, format, &r, &e);
  close(fd);
  if (rc != want)
    TEST_FAIL_("%s as %s: expected %s, got %s: %s", name, format,
               orr_err_name(want), orr_err_name(rc), e.msg);
  if (rc != 0 && e.msg[0] == '\0')
    TEST_FAIL_("%s: an error without a message", name);
  return r;
}

static void test_refs(void) {
  orr_image_refs r;
  uint8_t b[512];
  sh("cd %s && qemu-img create -q -f qcow2 -b r.raw -F raw back.qcow2 && "
     "qemu-img create -q -f qcow2 -o data_file=data.raw,data_file_raw=on "
     "df.qcow2 1M && "
     "qemu-img create -q -f qed -b r.raw -F raw nop.qed && "
     "qemu-img create -q -f qed -b back.qcow2 -F qcow2 probe.qed && "
     "qemu-img create -q -f vmdk -b s.vmdk -F vmdk child.vmdk",
     dir);
  r = refs("back.qcow2", "qcow2", 0);
  ASSERT_STR_EQ(r.backing, "r.raw");
  ASSERT_STR_EQ(r.backing_format, "raw");
  r = refs("df.qcow2", "qcow2", 0);
  ASSERT_STR_EQ(r.data_file, "data.raw");
  ASSERT(r.data_file_raw);
  ASSERT_STR_EQ(r.backing, "");
  r = refs("nop.qed", "qed", 0);
  ASSERT_STR_EQ(r.backing, "r.raw");
  ASSERT_STR_EQ(r.backing_format, "raw"); /* QED_F_BACKING_FORMAT_NO_PROBE */
  r = refs("probe.qed", "qed", 0);
  ASSERT_STR_EQ(r.backing, "back.qcow2");
  ASSERT_STR_EQ(r.backing_format, ""); /* QEMU probes it */
  r = refs("child.vmdk", "vmdk", 0);
  ASSERT_STR_EQ(r.backing, "s.vmdk");
  ASSERT_STR_EQ(r.backing_format, "vmdk");
  r = refs("q1.qcow", "qcow", 0);
  ASSERT_STR_EQ(r.backing, "r.raw");
  refs("flat.vmdk", "vmdk", ORR_ENOTSUP); /* extents by name */
  refs("l.luks", "luks", ORR_ENOTSUP);    /* needs a key */
  refs("v.vhdx", "vhdx", 0);
  refs("d.vpc", "vpc", 0);
  refs("r.raw", "nbd", ORR_EINVAL); /* not an image format */

  /* Crafted qcow2 headers. */
  sh("cp %s %s", at("q2.qcow2"), at("bad.qcow2"));
  memset(b, 0, 8);
  b[7] = 0x80; /* an unknown incompatible feature */
  write_at("bad.qcow2", b, 8, 72);
  refs("bad.qcow2", "qcow2", ORR_ENOTSUP);
  b[7] = 0x04; /* an external data file, but no name for it */
  write_at("bad.qcow2", b, 8, 72);
  refs("bad.qcow2", "qcow2", ORR_EINVAL);
  sh("cp %s %s", at("q2.qcow2"), at("enc.qcow2"));
  memset(b, 0, 4);
  b[3] = 1; /* AES */
  write_at("enc.qcow2", b, 4, 32);
  refs("enc.qcow2", "qcow2", ORR_ENOTSUP);
  /* A backing name with a NUL in it, and one longer than QEMU reads. */
  sh("cp %s %s", at("back.qcow2"), at("nul.qcow2"));
  {
    uint8_t off[8];
    int fd = open_ro("nul.qcow2");
    ASSERT_EQ(8, pread(fd, off, 8, 8));
    close(fd);
    write_at("nul.qcow2", "\0", 1, (off_t)((uint64_t)off[6] << 8 | off[7]) + 1);
    refs("nul.qcow2", "qcow2", ORR_EINVAL);
    memset(b, 0, 4);
    b[2] = 0x10; /* 4096 bytes */
    write_at("nul.qcow2", b, 4, 16);
    refs("nul.qcow2", "qcow2", ORR_EINVAL);
  }
  /* A header extension that claims more than its space. */
  sh("cp %s %s", at("q2.qcow2"), at("ext.qcow2"));
  {
    uint8_t ext[8] = {0xe2, 0x79, 0x2a, 0xca, 0x7f, 0xff, 0xff, 0xff};
    int fd = open_ro("ext.qcow2");
    uint8_t hl[4];
    ASSERT_EQ(4, pread(fd, hl, 4, 100));
    close(fd);
    write_at("ext.qcow2", ext, 8, hl[3] | hl[2] << 8);
    refs("ext.qcow2", "qcow2", ORR_EINVAL);
  }
  /* A differencing VHD names its parent (UTF-16BE): refused. */
  sh("cp %s %s", at("d.vpc"), at("diff.vpc"));
  {
    uint8_t f[512], t[4] = {0, 0, 0, 4}, name[8] = {0, 'p', 0, '.', 0, 'v'};
    int fd = open_ro("diff.vpc");
    orr_error e = {0, ""};
    orr_image_refs rr;
    uint64_t dyn;
    ASSERT_EQ(512, pread(fd, f, 512, 0));
    close(fd);
    dyn = (uint64_t)f[22] << 8 | f[23];
    write_at("diff.vpc", t, 4, 60);
    write_at("diff.vpc", name, sizeof name, (off_t)dyn + 64);
    fd = open_ro("diff.vpc");
    ASSERT_ERR(orr__image_refs(fd, "vpc", &rr, &e), ORR_ENOTSUP);
    ASSERT_STR_CONTAINS(e.msg, "\"p.v\"");
    close(fd);
  }
  /* A differencing VHDX (HasParent, a parent locator): refused, naming
  ** the parent. The layout: region table at 192 KiB, metadata at 1 MiB. */
  {
    static const uint8_t md_guid[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47,
                                        0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f,
                                        0x05, 0x0f, 0x88, 0x6e};
    static const uint8_t fp_guid[16] = {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa,
                                        0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0,
                                        0xaa, 0x44, 0xe7, 0x6b};
    static const uint8_t pl_guid[16] = {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3,
                                        0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8,
                                        0x48, 0x34, 0xab, 0x0c};
    uint8_t rt[48] = {'r', 'e', 'g', 'i', 0, 0, 0, 0, 1};
    uint8_t md[96] = {'m', 'e', 't', 'a', 'd', 'a', 't', 'a', 0, 0, 2};
    uint8_t fp[8] = {0, 0, 0x20, 0, 2}, loc[128] = {0};
    const char *key = "relative_path", *val = "..\\base.vhdx";
    size_t kl = strlen(key), vl = strlen(val);
    orr_image_refs rr;
    orr_error e = {0, ""};
    int fd;
    memcpy(rt + 16, md_guid, 16);
    rt[16 + 16 + 2] = 0x10; /* file_offset 1 MiB, little-endian */
    memcpy(md + 32, fp_guid, 16);
    md[32 + 17] = 0x10; /* at +4 KiB */
    memcpy(md + 64, pl_guid, 16);
    md[64 + 17] = 0x20; /* at +8 KiB */
    md[64 + 20] = sizeof loc;
    loc[18] = 1;  /* one key/value pair */
    loc[20] = 32; /* key offset */
    loc[24] = (uint8_t)(32 + 2 * kl);
    loc[28] = (uint8_t)(2 * kl);
    loc[30] = (uint8_t)(2 * vl);
    for (size_t i = 0; i < kl; i++)
      loc[32 + 2 * i] = (uint8_t)key[i];
    for (size_t i = 0; i < vl; i++)
      loc[32 + 2 * kl + 2 * i] = (uint8_t)val[i];
    write_at("diff.vhdx", "vhdxfile", 8, 0);
    write_at("diff.vhdx", rt, sizeof rt, 192 * 1024);
    write_at("diff.vhdx", md, sizeof md, 1 << 20);
    write_at("diff.vhdx", fp, sizeof fp, (1 << 20) + 0x1000);
    write_at("diff.vhdx", loc, sizeof loc, (1 << 20) + 0x2000);
    fd = open_ro("diff.vhdx");
    ASSERT_ERR(orr__image_refs(fd, "vhdx", &rr, &e), ORR_ENOTSUP);
    ASSERT_STR_CONTAINS(e.msg, "\"..\\base.vhdx\"");
    close(fd);
    fp[4] = 0; /* HasParent off: a plain VHDX */
    write_at("diff.vhdx", fp, sizeof fp, (1 << 20) + 0x1000);
    refs("diff.vhdx", "vhdx", 0);
  }
  printf("ok - refs of every format, crafted headers refused\n");
}

/* A plain opener: no policy, every file by its name. */
static int plain_open(void *arg, const char *name, const char *what,
                      bool writable, int k, bool lenient, int *fd,
                      struct stat *st, char *ref, size_t size,
                      bool *locking_off, orr_error *e) {
  int *opened = arg;
  (void)writable, (void)k;
  *locking_off = false;
  *fd = open(name, O_RDONLY | O_CLOEXEC);
  if (*fd < 0)
    return lenient ? 0 : orr_error_set(e, ORR_ENOENT, "%s: cannot open", what);
  opened[opened[0] + 1] = *fd;
  opened[0]++;
  fstat(*fd, st);
  snprintf(ref, size, "%s", name);
  return 0;
}

static int chain(const char *name, orr_image **out, orr_error *e) {
  int opened[64] = {0}, rc;
  rc = orr__image_chain(at(name), true, "t", plain_open, opened, out, e);
  for (int i = 1; i <= opened[0]; i++)
    close(opened[i]);
  return rc;
}

static void test_chains(void) {
  orr_image *c;
  orr_error e = {0, ""};
  sh("cd %s && qemu-img create -q -f qcow2 -b back.qcow2 -F qcow2 "
     "top.qcow2 && "
     "qemu-img create -q -f qcow2 -b probe.qed -F qed onqed.qcow2 && "
     "qemu-img create -q -f qcow2 -b child.vmdk -F vmdk onvmdk.qcow2 && "
     "qemu-img create -q -f qcow2 -u -b 'json:{\"driver\":\"file\","
     "\"filename\":\"/etc/passwd\"}' -F raw json.qcow2 1M && "
     "qemu-img create -q -f qcow2 -u -b nbd:localhost:10809 -F raw "
     "nbd.qcow2 1M && "
     "qemu-img create -q -f qcow2 -u -b c2.qcow2 -F qcow2 c1.qcow2 1M && "
     "qemu-img create -q -f qcow2 -u -b c1.qcow2 -F qcow2 c2.qcow2 1M && "
     "qemu-img create -q -f qcow2 -u -b r.raw -F host_device hd.qcow2 1M && "
     "qemu-img create -q -f qcow2 -u -b nowhere.raw -F raw gone.qcow2 1M && "
     "qemu-img create -q -f qcow2 -b flat.vmdk -F vmdk onflat.qcow2",
     dir);
  /* Two levels, each format pinned, the names resolved from the image. */
  ASSERT_OK(chain("top.qcow2", &c, &e));
  ASSERT_STR_EQ(c->format, "qcow2");
  ASSERT(c->writable && !c->backing->writable);
  ASSERT_STR_EQ(c->backing->name, at("back.qcow2"));
  ASSERT_STR_EQ(c->backing->format, "qcow2");
  ASSERT_STR_EQ(c->backing->backing->name, at("r.raw"));
  ASSERT_STR_EQ(c->backing->backing->format, "raw");
  ASSERT_NULL(c->backing->backing->backing);
  orr__image_free(c);
  /* A QED naming a qcow2 without a format: probed as QEMU would. */
  ASSERT_OK(chain("onqed.qcow2", &c, &e));
  ASSERT_STR_EQ(c->backing->format, "qed");
  ASSERT_STR_EQ(c->backing->backing->format, "qcow2");
  ASSERT_STR_EQ(c->backing->backing->backing->format, "raw");
  orr__image_free(c);
  ASSERT_OK(chain("onvmdk.qcow2", &c, &e));
  ASSERT_STR_EQ(c->backing->format, "vmdk");
  ASSERT_STR_EQ(c->backing->backing->format, "vmdk");
  orr__image_free(c);
  /* The data file is written with the image. */
  ASSERT_OK(chain("df.qcow2", &c, &e));
  ASSERT_NOT_NULL(c->data_file);
  ASSERT_STR_EQ(c->data_file->name, at("data.raw"));
  ASSERT(c->data_file->writable);
  orr__image_free(c);
  /* Refused. */
  ASSERT_ERR(chain("json.qcow2", &c, &e), ORR_EPERM);
  ASSERT_STR_CONTAINS(e.msg, "json:");
  ASSERT_ERR(chain("nbd.qcow2", &c, &e), ORR_EPERM);
  ASSERT_STR_CONTAINS(e.msg, "protocol");
  ASSERT_ERR(chain("c1.qcow2", &c, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "cycle");
  ASSERT_ERR(chain("hd.qcow2", &c, &e), ORR_EPERM);
  ASSERT_STR_CONTAINS(e.msg, "host_device");
  ASSERT_ERR(chain("gone.qcow2", &c, &e), ORR_ENOENT);
  ASSERT_ERR(chain("onflat.qcow2", &c, &e), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(e.msg, "backing file 1");
  /* Deeper than ORR_IMAGE_MAX_CHAIN. */
  sh("cd %s && qemu-img create -q -f qcow2 deep0.qcow2 1M && for i in "
     "$(seq 1 %d); do qemu-img create -q -f qcow2 -b deep$((i-1)).qcow2 -F "
     "qcow2 deep$i.qcow2; done",
     dir, ORR_IMAGE_MAX_CHAIN);
  {
    char name[32];
    snprintf(name, sizeof name, "deep%d.qcow2", ORR_IMAGE_MAX_CHAIN - 1);
    ASSERT_OK(chain(name, &c, &e));
    orr__image_free(c);
    snprintf(name, sizeof name, "deep%d.qcow2", ORR_IMAGE_MAX_CHAIN);
    ASSERT_ERR(chain(name, &c, &e), ORR_EINVAL);
    ASSERT_STR_CONTAINS(e.msg, "deeper");
  }
  /* An image that cannot be opened: named as is, QEMU will say why. */
  ASSERT_OK(chain("missing.qcow2", &c, &e));
  ASSERT_STR_EQ(c->format, "qcow2");
  ASSERT_NULL(c->backing);
  orr__image_free(c);
  printf("ok - chains: explicit, probed as QEMU would, refused where QEMU "
         "would follow a name it must not\n");
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/orr-image-XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(dir));
  test_probe_matches_qemu();
  test_refs();
  test_chains();
  sh("rm -rf '%s'", dir);
  return 0;
}
