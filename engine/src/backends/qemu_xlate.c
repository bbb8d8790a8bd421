/*
** Names, config, field rules and the JSON of the devices that exist both at
** boot (argv) and at run time (QMP): SCSI attachments, NICs, VPCI devices.
*/
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/qemu_xlate.h"
#include "orrery/document.h"
#include "schema.h"
#include "image.h"

/* ---------------------------------------------------------------------- */
/* Config                                                                 */
/* ---------------------------------------------------------------------- */

void orr__qemu_config_init(orr_qemu_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->binary = ORR_QEMU_DEFAULT_BINARY;
  cfg->accel = "tcg";
  cfg->hotplug_ports = ORR_QEMU_DEFAULT_HOTPLUG_PORTS;
  cfg->ovmf_code = ORR_QEMU_OVMF_CODE;
  cfg->ovmf_vars_template = ORR_QEMU_OVMF_VARS;
}

void orr__qemu_probe_host(orr_qemu_host_facts *facts) {
  facts->vhost_vsock = access("/dev/vhost-vsock", F_OK) == 0;
  facts->vhost_net = access("/dev/vhost-net", F_OK) == 0;
  facts->kvm = access("/dev/kvm", F_OK) == 0;
}

/* ---------------------------------------------------------------------- */
/* Names                                                                  */
/* ---------------------------------------------------------------------- */

static orr_qemu_name name_fmt(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static orr_qemu_name name_fmt(const char *fmt, ...) {
  orr_qemu_name n;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(n.s, sizeof n.s, fmt, ap);
  va_end(ap);
  return n;
}

orr_qemu_name orr__qemu_port_id(int n) {
  return name_fmt("rp%d", n);
}
orr_qemu_name orr__qemu_scsi_ctrl_qdev(int c) {
  return name_fmt("scsi%d", c);
}
orr_qemu_name orr__qemu_scsi_bus(int c) {
  return name_fmt("scsi%d.0", c);
}
orr_qemu_name orr__qemu_disk_qdev(int c, int lun) {
  return name_fmt("disk-%d-%d", c, lun);
}
orr_qemu_name orr__qemu_disk_file_node(int c, int lun) {
  return name_fmt("file-%d-%d", c, lun);
}
orr_qemu_name orr__qemu_disk_fmt_node(int c, int lun) {
  return name_fmt("fmt-%d-%d", c, lun);
}
orr_qemu_name orr__qemu_disk_key(int c, int lun) {
  return name_fmt("%d-%d", c, lun);
}
orr_qemu_name orr__qemu_disk_qos_node(int c, int lun) {
  return name_fmt("qos-%d-%d", c, lun);
}
orr_qemu_name orr__qemu_vpci_qdev(const char *guid) {
  return name_fmt("vpci-%s", guid);
}
orr_qemu_name orr__qemu_nic_qdev(const char *guid) {
  return name_fmt("nic-%s", guid);
}
orr_qemu_name orr__qemu_nic_netdev(const char *guid) {
  return name_fmt("net-%s", guid);
}
orr_qemu_name orr__qemu_p9_fsdev(int k) {
  return name_fmt("fs%d", k);
}
orr_qemu_name orr__qemu_p9_qdev(int k) {
  return name_fmt("p9-%d", k);
}
orr_qemu_name orr__qemu_pmem_qdev(int k) {
  return name_fmt("pmem-%d", k);
}
orr_qemu_name orr__qemu_pmem_memdev(int k) {
  return name_fmt("pmem-%d-mem", k);
}
orr_qemu_name orr__qemu_com_chardev(int n) {
  return name_fmt("com%d", n);
}
orr_qemu_name orr__qemu_com_qdev(int n) {
  return name_fmt("serial%d", n);
}

orr_qemu_name orr__qemu_snap_node(int c, int lun, int k) {
  return name_fmt("snap-%d-%d-%d", c, lun, k);
}
orr_qemu_name orr__qemu_snap_file_node(int c, int lun, int k) {
  return name_fmt("sfile-%d-%d-%d", c, lun, k);
}

orr_qemu_name orr__qemu_pipe_qdev(int n) {
  return name_fmt("pipe-%d", n);
}
orr_qemu_name orr__qemu_pipe_chardev(int n) {
  return name_fmt("pipechr-%d", n);
}

int orr__qemu_qmp_chardev(char *buf, size_t size, const char *run_dir) {
  int n = snprintf(buf, size, "socket,id=%s,path=%s/%s,server=on,wait=off",
                   ORR_QEMU_QMP_CHARDEV, run_dir, ORR_QEMU_QMP_SOCK);
  return n < 0 || (size_t)n >= size ? ORR_EINVAL : 0;
}

/* "<prefix><0..3>-<0..63>" exactly. */
static bool disk_name(const char *s, const char *prefix) {
  size_t n = strlen(prefix);
  int c, lun, end = 0;
  return strncmp(s, prefix, n) == 0 &&
         sscanf(s + n, "%1d-%2d%n", &c, &lun, &end) == 2 &&
         s[n + end] == '\0' && c >= 0 && c <= 3 && lun >= 0 && lun <= 63 &&
         strcmp(s + n, name_fmt("%d-%d", c, lun).s) == 0;
}

char orr__qemu_name_kind(const char *s) {
  int k, end = 0;
  if (s == NULL)
    return 0;
  if (disk_name(s, "disk-"))
    return 'd';
  if (disk_name(s, "file-") || disk_name(s, "fmt-") || disk_name(s, "qos-"))
    return 'n';
  if ((strncmp(s, "vpci-", 5) == 0 &&
       orr__check_guid(s + 5, strlen(s + 5)) == NULL) ||
      (strncmp(s, "nic-", 4) == 0 &&
       orr__check_guid(s + 4, strlen(s + 4)) == NULL))
    return 'd';
  if (sscanf(s, "p9-%3d%n", &k, &end) == 1 && s[end] == '\0' && k >= 0 &&
      strcmp(s, name_fmt("p9-%d", k).s) == 0)
    return 'd';
  if (strncmp(s, "net-", 4) == 0 &&
      orr__check_guid(s + 4, strlen(s + 4)) == NULL)
    return 'N';
  {
    int c, lun, n2 = 0;
    if ((sscanf(s, "snap-%1d-%2d-%1d%n", &c, &lun, &k, &n2) == 3 ||
         sscanf(s, "sfile-%1d-%2d-%1d%n", &c, &lun, &k, &n2) == 3) &&
        s[n2] == '\0' && c >= 0 && c <= 3 && lun >= 0 && lun <= 63 && k >= 1 &&
        k <= ORR_QEMU_MAX_SNAPSHOTS &&
        (strcmp(s, name_fmt("snap-%d-%d-%d", c, lun, k).s) == 0 ||
         strcmp(s, name_fmt("sfile-%d-%d-%d", c, lun, k).s) == 0))
      return 'n';
  }
  if (sscanf(s, "pipe-%3d%n", &k, &end) == 1 && s[end] == '\0' && k >= 0 &&
      strcmp(s, name_fmt("pipe-%d", k).s) == 0)
    return 'd';
  if (sscanf(s, "pipechr-%3d%n", &k, &end) == 1 && s[end] == '\0' && k >= 0 &&
      strcmp(s, name_fmt("pipechr-%d", k).s) == 0)
    return 'c';
  if (sscanf(s, "pmem-%3d%n", &k, &end) == 1 && k >= 0 && k <= 255) {
    if (s[end] == '\0' && strcmp(s, name_fmt("pmem-%d", k).s) == 0)
      return 'd';
    if (strcmp(s, name_fmt("pmem-%d-mem", k).s) == 0)
      return 'o';
  }
  return 0;
}

int orr__qemu_run_path(char *buf, size_t size, const orr_qemu_config *cfg,
                       const char *file) {
  int n = snprintf(buf, size, "%s/%s", cfg->run_dir ? cfg->run_dir : "", file);
  if (n < 0 || (size_t)n >= size)
    return ORR_EINVAL;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Field rules and getters                                                */
/* ---------------------------------------------------------------------- */

void orr__qemu_ignore(json_t *ignored, const char *path, const char *key) {
  char buf[512];
  if (ignored == NULL)
    return;
  snprintf(buf, sizeof buf, "%s%s%s", path, *path ? "." : "", key);
  json_array_append_new(ignored, json_string(buf));
}

static bool is_set(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_NULL:
  case JSON_FALSE:
    return false;
  case JSON_INTEGER:
    return json_integer_value(v) != 0;
  case JSON_REAL:
    return json_real_value(v) != 0;
  case JSON_STRING:
    return json_string_length(v) != 0;
  case JSON_OBJECT:
    return json_object_size(v) != 0;
  case JSON_ARRAY:
    return json_array_size(v) != 0;
  default:
    return true;
  }
}

int orr__qemu_check_fields(const json_t *obj, const char *path,
                           const orr_qemu_field_rule *rules, json_t *ignored,
                           orr_error *err) {
  const char *key;
  json_t *val;
  if (!json_is_object(obj))
    return orr_error_set(err, ORR_EINVAL, "%s must be an object", path);
  json_object_foreach((json_t *)obj, key, val) {
    const orr_qemu_field_rule *r = rules;
    while (r->key != NULL && strcmp(r->key, key) != 0)
      r++;
    if (r->key == NULL)
      return orr_error_set(err, ORR_ENOTSUP,
                           "%s%s%s: unknown to the qemu backend", path,
                           *path ? "." : "", key);
    switch (r->kind) {
    case ORR_QF_USE:
    case ORR_QF_VMLAYER:
      break;
    case ORR_QF_ADVISORY:
      if (!json_is_null(val))
        orr__qemu_ignore(ignored, path, key);
      break;
    case ORR_QF_REFUSE_SET:
    case ORR_QF_REFUSE:
      if (r->kind == ORR_QF_REFUSE_SET ? !is_set(val) : json_is_null(val))
        break;
      return orr_error_set(
          err, ORR_ENOTSUP, "%s%s%s: %s", path, *path ? "." : "", key,
          r->why ? r->why : "not supported by the qemu backend");
    }
  }
  return 0;
}

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  default:
    return "null";
  }
}

static int get_int(const json_t *obj, const char *key, const char *path,
                   long long lo, long long hi, bool required, long long dflt,
                   long long *out, orr_error *err) {
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v)) {
    if (required)
      return orr_error_set(err, ORR_EINVAL, "%s.%s is required", path, key);
    *out = dflt;
    return 0;
  }
  if (!json_is_integer(v))
    return orr_error_set(err, ORR_EINVAL,
                         "%s.%s must be an integer in %lld..%lld, got %s", path,
                         key, lo, hi, type_name(v));
  if (json_integer_value(v) < lo || json_integer_value(v) > hi)
    return orr_error_set(err, ORR_EINVAL,
                         "%s.%s must be an integer in %lld..%lld, got %lld",
                         path, key, lo, hi, (long long)json_integer_value(v));
  *out = json_integer_value(v);
  return 0;
}

int orr__qemu_get_int(const json_t *obj, const char *key, const char *path,
                      long long lo, long long hi, long long dflt,
                      long long *out, orr_error *err) {
  return get_int(obj, key, path, lo, hi, false, dflt, out, err);
}

int orr__qemu_req_int(const json_t *obj, const char *key, const char *path,
                      long long lo, long long hi, long long *out,
                      orr_error *err) {
  return get_int(obj, key, path, lo, hi, true, 0, out, err);
}

int orr__qemu_get_bool(const json_t *obj, const char *key, const char *path,
                       bool dflt, bool *out, orr_error *err) {
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_boolean(v))
    return orr_error_set(err, ORR_EINVAL, "%s.%s must be a boolean, got %s",
                         path, key, type_name(v));
  *out = json_is_true(v);
  return 0;
}

int orr__qemu_get_str(const json_t *obj, const char *key, const char *path,
                      const char **out, orr_error *err) {
  json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return orr_error_set(err, ORR_EINVAL, "%s.%s must be a string, got %s",
                         path, key, type_name(v));
  if (strlen(json_string_value(v)) != json_string_length(v))
    return orr_error_set(err, ORR_EINVAL,
                         "%s.%s must not contain a NUL character", path, key);
  *out = json_string_value(v);
  return 0;
}

int orr__qemu_req_str(const json_t *obj, const char *key, const char *path,
                      const char **out, orr_error *err) {
  int rc = orr__qemu_get_str(obj, key, path, out, err);
  if (rc == 0 && (*out == NULL || **out == '\0'))
    return orr_error_set(err, ORR_EINVAL,
                         "%s.%s is required (a non-empty string)", path, key);
  return rc;
}

/* ---------------------------------------------------------------------- */
/* Disks                                                                  */
/* ---------------------------------------------------------------------- */

/*
** Opens path for reading only if it is a regular file. Opening a device
** node is not harmless: it can arm a watchdog (/dev/watchdog reboots the
** host unless fed), rewind a tape or block on a FIFO, and a recipe's disk
** Path may name any of them. So the path is first opened with O_PATH, which
** runs no driver code, and checked with fstat; only then is the same inode
** reopened for reading through /proc/self/fd, so a rename in between cannot
** swap in something else. -1 when it is not a readable regular file.
*/
static int open_regular(const char *path) {
  struct stat st;
  char proc[64];
  int pfd = open(path, O_PATH | O_CLOEXEC), fd = -1;
  if (pfd < 0)
    return -1;
  if (fstat(pfd, &st) == 0 && S_ISREG(st.st_mode)) {
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    fd = open(proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  }
  close(pfd);
  return fd;
}

const char *orr__qemu_disk_format(const char *path) {
  int fd = open_regular(path);
  const char *fmt = orr__image_top_format(fd, path);
  if (fd >= 0)
    close(fd);
  return fmt;
}

static const orr_qemu_field_rule attachment_rules[] = {
    {"Type", ORR_QF_USE, NULL},
    {"Path", ORR_QF_USE, NULL},
    {"ReadOnly", ORR_QF_USE, NULL},
    {"IgnoreFlushes", ORR_QF_ADVISORY, NULL},
    {"CachingMode", ORR_QF_ADVISORY, NULL},
    {"NoWriteHardening", ORR_QF_ADVISORY, NULL},
    {"DisableExpansionOptimization", ORR_QF_ADVISORY, NULL},
    {"IgnoreRelativeLocator", ORR_QF_ADVISORY, NULL},
    {"CaptureIoAttributionContext", ORR_QF_ADVISORY, NULL},
    {"SupportCompressedVolumes", ORR_QF_ADVISORY, NULL},
    {"AlwaysAllowSparseFiles", ORR_QF_ADVISORY, NULL},
    {"ExtensibleVirtualDiskType", ORR_QF_REFUSE_SET,
     "extensible virtual disks are a Windows storage provider feature"},
    {NULL, 0, NULL},
};

/* The image chain opener (image.h) of the disk at (ctrl, lun): each file
** through hr, member k into fdset ORR_QEMU_FDSET(ctrl, lun, k). */
typedef struct {
  orr_hostres *hr;
  int ctrl, lun;
} disk_opener;

static int open_member(void *arg, const char *name, const char *what,
                       bool writable, int k, bool lenient, int *fd,
                       struct stat *st, char *ref, size_t size,
                       bool *locking_off, orr_error *e) {
  disk_opener *o = arg;
  return orr__hostres_image(o->hr, name, writable, what,
                            ORR_QEMU_FDSET(o->ctrl, o->lun, k), lenient, fd, st,
                            ref, size, locking_off, e);
}

/* A file node over img's file (ref, read-only unless written, no lock when
** the policy says so). */
static json_t *file_node(const orr_image *img, const char *node) {
  json_t *n =
      json_pack("{s:s, s:s, s:s, s:b}", "driver", "file", "node-name", node,
                "filename", img->ref, "read-only", !img->writable);
  if (n != NULL && img->locking_off &&
      json_object_set_new(n, "locking", json_string("off")) != 0) {
    json_decref(n);
    n = NULL;
  }
  return n;
}

static json_t *member_node(const orr_image *img, int ctrl, int lun, int depth);

/* What a format node gets from the chain: its backing explicitly, or null
** (else QEMU would open the one its header names), and a qcow2's data
** file explicitly. Returns nonzero when out of memory. */
static int chain_refs(json_t *node, const orr_image *img, int ctrl, int lun,
                      int depth) {
  char name[64];
  int bad = 0;
  if (orr__image_has_backing(img->format))
    bad |= json_object_set_new(
               node, "backing",
               img->backing ? member_node(img->backing, ctrl, lun, depth + 1)
                            : json_null()) != 0;
  if (img->data_file != NULL) {
    snprintf(name, sizeof name, "data-%d-%d-%d", ctrl, lun, depth);
    bad |= json_object_set_new(node, "data-file",
                               file_node(img->data_file, name)) != 0;
  }
  return bad;
}

/* A backing image as a nested node (its chain below it): deleted with the
** format node that holds it. */
static json_t *member_node(const orr_image *img, int ctrl, int lun, int depth) {
  char fmt[64], file[64];
  json_t *node;
  snprintf(fmt, sizeof fmt, "back-%d-%d-%d", ctrl, lun, depth);
  snprintf(file, sizeof file, "bfile-%d-%d-%d", ctrl, lun, depth);
  node =
      json_pack("{s:s, s:s, s:b, s:o}", "driver", img->format, "node-name", fmt,
                "read-only", !img->writable, "file", file_node(img, file));
  if (node != NULL && chain_refs(node, img, ctrl, lun, depth) != 0) {
    json_decref(node);
    node = NULL;
  }
  return node;
}

int orr__qemu_disk_objects(int ctrl, int lun, const json_t *att,
                           const char *path, bool throttle_group,
                           orr_hostres *hr, json_t *ignored, json_t **nodes,
                           json_t **device, orr_error *err) {
  disk_opener opener = {hr, ctrl, lun};
  const char *type, *file, *dev_driver = "scsi-hd";
  char what[700];
  orr_image *chain = NULL;
  bool ro, oom;
  json_t *fnode, *fmtnode, *qos = NULL;
  int rc;

  *nodes = *device = NULL;
  if (ctrl < 0 || ctrl > 3 || lun < 0 || lun > 63)
    return orr_error_set(err, ORR_EINVAL,
                         "%s: controller must be 0..3 and LUN 0..63, got %d "
                         "and %d",
                         path, ctrl, lun);
  if ((rc = orr__qemu_check_fields(att, path, attachment_rules, ignored,
                                   err)) != 0 ||
      (rc = orr__qemu_req_str(att, "Type", path, &type, err)) != 0 ||
      (rc = orr__qemu_req_str(att, "Path", path, &file, err)) != 0 ||
      (rc = orr__qemu_get_bool(att, "ReadOnly", path, false, &ro, err)) != 0)
    return rc;
  if (file[0] != '/')
    return orr_error_set(err, ORR_EINVAL,
                         "%s.Path must be an absolute host path, got '%s'",
                         path, file);
  snprintf(what, sizeof what, "%s.Path", path);
  if (strcmp(type, "PassThru") == 0) {
    /* A host block device: raw, by name, never for a confined engine. */
    if ((rc = orr__hostres_host_device(hr, what, file, err)) != 0)
      return rc;
    fnode = json_pack("{s:s, s:s, s:s, s:b}", "driver", "host_device",
                      "node-name", orr__qemu_disk_file_node(ctrl, lun).s,
                      "filename", file, "read-only", ro);
    fmtnode = json_pack("{s:s, s:s, s:s, s:b}", "driver", "raw", "node-name",
                        orr__qemu_disk_fmt_node(ctrl, lun).s, "file",
                        orr__qemu_disk_file_node(ctrl, lun).s, "read-only", ro);
  } else if (strcmp(type, "VirtualDisk") == 0 || strcmp(type, "Iso") == 0) {
    if (strcmp(type, "Iso") == 0) {
      /* An ISO is raw and read-only: its content is never a header. */
      int fd;
      struct stat st;
      dev_driver = "scsi-cd";
      ro = true;
      if ((chain = calloc(1, sizeof *chain)) == NULL)
        return orr_error_set(err, ORR_ENOMEM, "%s: out of memory", path);
      snprintf(chain->name, sizeof chain->name, "%s", file);
      chain->format = "raw";
      rc = open_member(&opener, file, what, false, 0, true, &fd, &st,
                       chain->ref, sizeof chain->ref, &chain->locking_off, err);
    } else {
      rc = orr__image_chain(file, !ro, what, open_member, &opener, &chain, err);
    }
    if (rc != 0) {
      orr__image_free(chain);
      return rc;
    }
    fnode = file_node(chain, orr__qemu_disk_file_node(ctrl, lun).s);
    fmtnode =
        json_pack("{s:s, s:s, s:s, s:b}", "driver", chain->format, "node-name",
                  orr__qemu_disk_fmt_node(ctrl, lun).s, "file",
                  orr__qemu_disk_file_node(ctrl, lun).s, "read-only", ro);
    if (fmtnode != NULL && chain_refs(fmtnode, chain, ctrl, lun, 0) != 0) {
      json_decref(fmtnode);
      fmtnode = NULL;
    }
    orr__image_free(chain);
  } else {
    return orr_error_set(err, ORR_ENOTSUP,
                         "%s.Type: '%s' is not supported by the qemu backend "
                         "(use VirtualDisk, Iso or PassThru)",
                         path, type);
  }
  if (throttle_group)
    qos = json_pack("{s:s, s:s, s:s, s:s, s:b}", "driver", "throttle",
                    "node-name", orr__qemu_disk_qos_node(ctrl, lun).s,
                    "throttle-group", ORR_QEMU_THROTTLE_GROUP, "file",
                    orr__qemu_disk_fmt_node(ctrl, lun).s, "read-only", ro);
  *nodes = json_array();
  *device =
      json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i}", "driver", dev_driver,
                "id", orr__qemu_disk_qdev(ctrl, lun).s, "drive",
                throttle_group ? orr__qemu_disk_qos_node(ctrl, lun).s
                               : orr__qemu_disk_fmt_node(ctrl, lun).s,
                "bus", orr__qemu_scsi_bus(ctrl).s, "channel", 0, "scsi-id", 0,
                "lun", lun);
  oom = fnode == NULL || fmtnode == NULL || (throttle_group && qos == NULL) ||
        *nodes == NULL || *device == NULL;
  if (oom || json_array_append_new(*nodes, fnode) != 0 ||
      json_array_append_new(*nodes, fmtnode) != 0 ||
      (qos != NULL && json_array_append_new(*nodes, qos) != 0)) {
    if (oom) {
      json_decref(fnode);
      json_decref(fmtnode);
      json_decref(qos);
    }
    json_decref(*nodes);
    json_decref(*device);
    *nodes = *device = NULL;
    return orr_error_set(err, ORR_ENOMEM, "%s: out of memory", path);
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* NICs                                                                   */
/* ---------------------------------------------------------------------- */

static const orr_qemu_field_rule nic_rules[] = {
    {"EndpointId", ORR_QF_USE, NULL},
    {"MacAddress", ORR_QF_USE, NULL},
    {"IovSettings", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

/* "00-15-5D-52-C0-0A" (or with ':') -> "00:15:5d:52:c0:0a". */
static bool mac_to_qemu(const char *in, char out[18]) {
  for (int i = 0; i < 6; i++) {
    const char *p = in + 3 * i;
    if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]))
      return false;
    if (i < 5 ? (p[2] != '-' && p[2] != ':') : p[2] != '\0')
      return false;
    out[3 * i] = (char)tolower((unsigned char)p[0]);
    out[3 * i + 1] = (char)tolower((unsigned char)p[1]);
    out[3 * i + 2] = i < 5 ? ':' : '\0';
  }
  return true;
}

/* A Linux interface name: 1..15 of [A-Za-z0-9_.-]. */
static bool is_ifname(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 15)
    return false;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
      return false;
  return true;
}

int orr__qemu_nic_objects(const char *guid, const json_t *nic, const char *path,
                          const char *port, const orr_hostres *hr,
                          json_t *ignored, json_t **netdev, json_t **device,
                          orr_error *err) {
  const char *ep, *mac;
  char qmac[18];
  int rc;

  *netdev = *device = NULL;
  if (orr__check_guid(guid, strlen(guid)) != NULL)
    return orr_error_set(err, ORR_EINVAL, "%s: the NIC id must be a GUID",
                         path);
  if ((rc = orr__qemu_check_fields(nic, path, nic_rules, ignored, err)) != 0 ||
      (rc = orr__qemu_req_str(nic, "EndpointId", path, &ep, err)) != 0 ||
      (rc = orr__qemu_get_str(nic, "MacAddress", path, &mac, err)) != 0)
    return rc;
  if (mac != NULL && !mac_to_qemu(mac, qmac))
    return orr_error_set(err, ORR_EINVAL,
                         "%s.MacAddress must look like 00-15-5D-52-C0-0A, got "
                         "'%s'",
                         path, mac);
  if (strcmp(ep, "user") == 0) {
    *netdev = json_pack("{s:s, s:s}", "type", "user", "id",
                        orr__qemu_nic_netdev(guid).s);
  } else if (strncmp(ep, "tap:", 4) == 0) {
    char what[600];
    if (!is_ifname(ep + 4))
      return orr_error_set(err, ORR_EINVAL,
                           "%s.EndpointId: tap interface name must be 1..15 "
                           "of [A-Za-z0-9_.-], got '%s'",
                           path, ep + 4);
    /* QEMU, running as the engine's user, creates or takes over the host
    ** interface: host network configuration, not a recipe's to change. */
    snprintf(what, sizeof what, "%s.EndpointId", path);
    if ((rc = orr__hostres_host_device(hr, what, ep, err)) != 0)
      return rc;
    /* Never vhost: with /dev/vhost-net missing, vhost=on aborts QEMU. */
    *netdev = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "tap", "id",
                        orr__qemu_nic_netdev(guid).s, "ifname", ep + 4,
                        "script", "no", "downscript", "no");
  } else {
    return orr_error_set(err, ORR_ENOTSUP,
                         "%s.EndpointId: '%s' is not supported by the qemu "
                         "backend (use \"user\" or \"tap:IFNAME\")",
                         path, ep);
  }
  /* romfile "": no iPXE option ROM. */
  *device = json_pack("{s:s, s:s, s:s, s:s}", "driver", "virtio-net-pci", "id",
                      orr__qemu_nic_qdev(guid).s, "netdev",
                      orr__qemu_nic_netdev(guid).s, "romfile", "");
  if (*device != NULL && mac != NULL &&
      json_object_set_new(*device, "mac", json_string(qmac)) != 0) {
    json_decref(*device);
    *device = NULL;
  }
  if (*device != NULL &&
      json_object_set_new(*device, "bus", json_string(port)) != 0) {
    json_decref(*device);
    *device = NULL;
  }
  if (*netdev == NULL || *device == NULL) {
    json_decref(*netdev);
    json_decref(*device);
    *netdev = *device = NULL;
    return orr_error_set(err, ORR_ENOMEM, "%s: out of memory", path);
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* VPCI                                                                   */
/* ---------------------------------------------------------------------- */

/*
** One function per VirtualPci device. hcsshim only ever sends one, and a
** multi-function device would need all its functions in one root port with
** multifunction=on, hot-plugged function 0 last; its unplug is all or
** nothing. Not worth it until someone needs it: more than one function is
** ORR_ENOTSUP. A non-zero VirtualFunction (an SR-IOV VF index of the
** physical device) is ORR_ENOTSUP too: give the VF's own PCI address.
*/
static const orr_qemu_field_rule vpci_rules[] = {
    {"Functions", ORR_QF_USE, NULL},
    {"PropagateNumaAffinity", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule vpci_fn_rules[] = {
    {"DeviceInstancePath", ORR_QF_USE, NULL},
    {"VirtualFunction", ORR_QF_REFUSE_SET,
     "SR-IOV function indexes are not supported by the qemu backend; put the "
     "VF's own PCI address (DDDD:BB:DD.F) in DeviceInstancePath"},
    {NULL, 0, NULL},
};

/* "DDDD:BB:DD.F": hex domain, bus, device 00..1f, function 0..7. */
static bool is_pci_addr(const char *s) {
  for (int i = 0; i < 12; i++) {
    char c = s[i];
    if (i == 4 || i == 7) {
      if (c != ':')
        return false;
    } else if (i == 10) {
      if (c != '.')
        return false;
    } else if (i == 11) {
      if (c < '0' || c > '7')
        return false;
    } else if (!isxdigit((unsigned char)c)) {
      return false;
    }
  }
  return s[12] == '\0' && (s[8] == '0' || s[8] == '1');
}

static bool is_model(const char *s) {
  if (*s == '\0')
    return false;
  for (; *s; s++)
    if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) ||
          *s == '-'))
      return false;
  return true;
}

int orr__qemu_vpci_objects(const char *guid, const json_t *dev,
                           const char *path, const char *port,
                           const orr_hostres *hr, json_t *ignored,
                           json_t **device, orr_error *err) {
  char fpath[512];
  const json_t *fns, *fn;
  const char *dip;
  int rc;

  *device = NULL;
  if (orr__check_guid(guid, strlen(guid)) != NULL)
    return orr_error_set(err, ORR_EINVAL, "%s: the VMBus id must be a GUID",
                         path);
  if ((rc = orr__qemu_check_fields(dev, path, vpci_rules, ignored, err)) != 0)
    return rc;
  fns = json_object_get(dev, "Functions");
  if (!json_is_array(fns) || json_array_size(fns) == 0)
    return orr_error_set(err, ORR_EINVAL,
                         "%s.Functions must be an array with one function",
                         path);
  if (json_array_size(fns) > 1)
    return orr_error_set(err, ORR_ENOTSUP,
                         "%s.Functions: the qemu backend assigns one function "
                         "per device, got %zu",
                         path, json_array_size(fns));
  fn = json_array_get(fns, 0);
  snprintf(fpath, sizeof fpath, "%s.Functions.0", path);
  if ((rc = orr__qemu_check_fields(fn, fpath, vpci_fn_rules, ignored, err)) !=
          0 ||
      (rc = orr__qemu_req_str(fn, "DeviceInstancePath", fpath, &dip, err)) != 0)
    return rc;
  if (is_pci_addr(dip)) {
    /* VFIO: a host PCI function handed to the guest, which can then DMA
    ** wherever the device can. */
    char what[600];
    snprintf(what, sizeof what, "%s.DeviceInstancePath", fpath);
    if ((rc = orr__hostres_host_device(hr, what, dip, err)) != 0)
      return rc;
    *device = json_pack("{s:s, s:s, s:s, s:s}", "driver", "vfio-pci", "id",
                        orr__qemu_vpci_qdev(guid).s, "host", dip, "bus", port);
  } else if (strncmp(dip, "qemu:", 5) == 0 && is_model(dip + 5)) {
    *device = json_pack("{s:s, s:s, s:s}", "driver", dip + 5, "id",
                        orr__qemu_vpci_qdev(guid).s, "bus", port);
  } else {
    return orr_error_set(err, ORR_EINVAL,
                         "%s.DeviceInstancePath must be a host PCI address "
                         "DDDD:BB:DD.F or qemu:<model> with the model in "
                         "[a-z0-9-]+, got '%s'",
                         fpath, dip);
  }
  if (*device == NULL)
    return orr_error_set(err, ORR_ENOMEM, "%s: out of memory", path);
  return 0;
}
