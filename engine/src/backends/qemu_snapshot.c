/*
** The qemu backend's external disk snapshots (backend.h: disk_snapshot,
** disk_commit): the overlay is a qcow2 file the backend writes itself (a
** header naming the current top and its format, nothing allocated), checked
** by the image inspection as any image is before QEMU sees it, then put over
** the disk with blockdev-snapshot (several disks: one transaction). A commit
** is an active block-commit, completed at BLOCK_JOB_READY; at
** BLOCK_JOB_COMPLETED the overlay's nodes are deleted and the request ends.
** Layout "snapshots": {"<c>-<lun>": [the path below each overlay, oldest
** first]}: how many overlays a disk has (its removal deletes their nodes)
** and what a commit brings back.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "policy_host.h"
#include "qemu_backend.h"

#define QCOW2_CLUSTER 65536u
_Static_assert(4 * QCOW2_CLUSTER == ORR_QEMU_OVERLAY_SIZE,
               "an overlay is four clusters");

static int snapshots_of(const orr_vm *vm, int ctrl, int lun) {
  return (int)json_array_size(
      json_object_get(json_object_get(vm->layout, "snapshots"),
                      orr__qemu_disk_key(ctrl, lun).s));
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}
static void put64(unsigned char *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/*
** A qcow2 v3 image of size bytes backed by backing (format bfmt), nothing
** allocated: cluster 0 the header, its backing-format extension and the
** backing name; 1 the refcount table; 2 its one refcount block (clusters
** 0..3 used once); 3 the L1 table (all zero). Written to fd.
*/
static int write_overlay(int fd, const char *backing, const char *bfmt,
                         uint64_t size, orr_error *e) {
  unsigned char *img = calloc(4, QCOW2_CLUSTER);
  size_t blen = strlen(backing), flen = strlen(bfmt);
  size_t ext = 104, name_off = ext + 8 + ((flen + 7) & ~(size_t)7) + 8;
  uint64_t l1 = (size + (uint64_t)QCOW2_CLUSTER * (QCOW2_CLUSTER / 8) - 1) /
                ((uint64_t)QCOW2_CLUSTER * (QCOW2_CLUSTER / 8));
  int rc = 0;
  if (img == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  if (l1 == 0)
    l1 = 1;
  if (l1 > QCOW2_CLUSTER / 8 || name_off + blen > QCOW2_CLUSTER) {
    free(img);
    return orr_error_set(e, ORR_EINVAL,
                         "snapshot: the disk (%llu bytes) or its path is "
                         "too large for the overlay",
                         (unsigned long long)size);
  }
  put32(img, 0x514649fbu); /* "QFI\xfb" */
  put32(img + 4, 3);
  put64(img + 8, name_off);
  put32(img + 16, (uint32_t)blen);
  put32(img + 20, 16); /* 64 KiB clusters */
  put64(img + 24, size);
  put32(img + 36, (uint32_t)l1);
  put64(img + 40, 3 * QCOW2_CLUSTER);
  put64(img + 48, 1 * QCOW2_CLUSTER);
  put32(img + 56, 1);
  put32(img + 96, 4); /* 16-bit refcounts */
  put32(img + 100, 104);
  put32(img + ext, 0xe2792acau); /* backing file format name */
  put32(img + ext + 4, (uint32_t)flen);
  memcpy(img + ext + 8, bfmt, flen);
  /* the end-of-extensions marker is the zeros that follow */
  memcpy(img + name_off, backing, blen);
  put64(img + QCOW2_CLUSTER, 2 * QCOW2_CLUSTER);
  for (int c = 0; c < 4; c++)
    img[2 * QCOW2_CLUSTER + 2 * c + 1] = 1;
  for (size_t off = 0; off < 4 * QCOW2_CLUSTER && rc == 0;) {
    ssize_t w = pwrite(fd, img + off, 4 * QCOW2_CLUSTER - off, (off_t)off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      rc = orr_error_set(e, ORR_EIO, "snapshot: writing the overlay: %s",
                         strerror(errno));
    else
      off += (size_t)w;
  }
  if (rc == 0 && fsync(fd) != 0)
    rc = orr_error_set(e, ORR_EIO, "snapshot: writing the overlay: %s",
                       strerror(errno));
  free(img);
  return rc;
}

/* The format and virtual size of the disk's current top image. */
static int top_facts(orr_vm *vm, const char *path, const char **fmt,
                     uint64_t *size, orr_error *e) {
  struct stat st;
  unsigned char b[8];
  int fd, rc = 0;
  if (vm->eng->policy != NULL)
    rc = orr_policy_open_read(vm->eng->policy, path, "snapshot: the disk", &fd,
                              e);
  else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
    rc = orr_error_set(e, ORR_EIO, "snapshot: cannot read the disk %s: %s",
                       path, strerror(errno));
  if (rc != 0)
    return rc;
  *fmt = orr__image_top_format(fd, path);
  if (strcmp(*fmt, "raw") == 0 && fstat(fd, &st) == 0)
    *size = (uint64_t)st.st_size;
  else if (strcmp(*fmt, "qcow2") == 0 && pread(fd, b, 8, 24) == 8)
    *size = get64(b);
  else
    rc = orr_error_set(e, ORR_ENOTSUP,
                       "snapshot: the disk %s is %s; external snapshots are "
                       "taken of raw and qcow2 images",
                       path, *fmt);
  close(fd);
  return rc;
}

/* One disk: its overlay written and inspected, its plan. On failure
** nothing is left behind. */
static int prepare_one(orr_vm *vm, int ctrl, int lun, const char *top,
                       const char *overlay, const char *field, json_t **plan,
                       json_t *written, orr_error *e) {
  const char *fmt = NULL;
  uint64_t size = 0;
  orr_image_refs refs;
  int fd, rc, k = snapshots_of(vm, ctrl, lun) + 1;
  if (k > ORR_QEMU_MAX_SNAPSHOTS)
    return orr_error_set(e, ORR_EBUSY,
                         "snapshot of disk %d-%d: already %d overlays (commit "
                         "one first)",
                         ctrl, lun, ORR_QEMU_MAX_SNAPSHOTS);
  if ((rc = top_facts(vm, top, &fmt, &size, e)) != 0)
    return rc;
  if (vm->eng->policy != NULL || vm->confined) {
    /* The overlay is judged under the policy like any file the engine
    ** writes; handing it to a confined QEMU is not built yet. */
    if (vm->eng->policy != NULL &&
        (rc = orr__policy_check_write(vm->eng->policy, overlay,
                                      "snapshot: overlay", e)) != 0)
      return rc;
    return orr_error_set(e, ORR_ENOTSUP,
                         "snapshot of disk %d-%d: a confined engine cannot "
                         "hand a running QEMU the overlay yet",
                         ctrl, lun);
  }
  fd = open(overlay, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  /* Where no overlay can be made, a raw image cannot be snapshotted at
  ** all: the caller's field is wrong (EINVAL), or names a file (EEXIST). */
  if (fd < 0)
    return orr_error_set(e, errno == EEXIST ? ORR_EEXIST : ORR_EINVAL,
                         "%s: %s: the overlay must be made in a writable "
                         "place where nothing is yet (%s)",
                         field, overlay, strerror(errno));
  rc = write_overlay(fd, top, fmt, size, e);
  /* Inspected as any image is: it must name exactly the current top. */
  if (rc == 0 &&
      (orr__image_refs(fd, "qcow2", &refs, e) != 0 ||
       strcmp(refs.backing, top) != 0 || strcmp(refs.backing_format, fmt) != 0))
    rc = e->code ? e->code
                 : orr_error_set(e, ORR_EIO,
                                 "snapshot: the overlay written does not name "
                                 "%s",
                                 top);
  close(fd);
  if (rc == 0)
    rc = orr__qemu_plan_snapshot(ctrl, lun, k, overlay, plan, e);
  if (rc != 0) {
    unlink(overlay);
    return rc;
  }
  json_array_append_new(written, json_pack("{s:s, s:s, s:s}", "overlay",
                                           overlay, "below", top, "key",
                                           orr__qemu_disk_key(ctrl, lun).s));
  return 0;
}

int orr__qemu_disk_snapshot(orr_vm *vm, const json_t *disks, json_t *data,
                            json_t **plan, orr_error *e) {
  json_t *written = json_array(), *one = NULL, *d;
  size_t i;
  int rc = 0;
  *plan = NULL;
  json_array_foreach(disks, i, d) {
    int ctrl = (int)json_integer_value(json_object_get(d, "ctrl"));
    int lun = (int)json_integer_value(json_object_get(d, "lun"));
    if ((rc = prepare_one(vm, ctrl, lun,
                          json_string_value(json_object_get(d, "top")),
                          json_string_value(json_object_get(d, "overlay")),
                          json_string_value(json_object_get(d, "field")), &one,
                          written, e)) != 0)
      break;
    if (json_array_size(disks) == 1) {
      *plan = one;
    } else {
      rc = orr__qemu_plan_snapshot_group(plan, one, e);
      json_decref(one);
      if (rc != 0)
        break;
    }
    one = NULL;
  }
  json_object_set_new(data, "overlays", written);
  if (rc != 0) {
    orr__qemu_snapshot_abandon(vm, data);
    json_object_del(data, "overlays");
    json_decref(*plan);
    *plan = NULL;
  }
  return rc;
}

/* Commit data "overlays": the layout remembers what is below each. */
void orr__qemu_snapshot_commit(orr_vm *vm, const json_t *data) {
  json_t *all = json_object_get(vm->layout, "snapshots"), *d;
  const json_t *merged = json_object_get(data, "merged");
  size_t i;
  if (merged != NULL) { /* a commit: the top overlay is gone */
    json_t *list = json_object_get(all, json_string_value(merged));
    if (json_array_size(list) > 0)
      json_array_remove(list, json_array_size(list) - 1);
    return;
  }
  if (json_object_get(data, "overlays") == NULL)
    return;
  if (all == NULL) {
    all = json_object();
    json_object_set_new(vm->layout, "snapshots", all);
  }
  json_array_foreach(json_object_get(data, "overlays"), i, d) {
    const char *k = json_string_value(json_object_get(d, "key"));
    json_t *list = json_object_get(all, k);
    if (list == NULL) {
      list = json_array();
      json_object_set_new(all, k, list);
    }
    json_array_append(list, json_object_get(d, "below"));
  }
}

/* A snapshot not done: the overlays written go again. */
void orr__qemu_snapshot_abandon(orr_vm *vm, const json_t *data) {
  size_t i;
  json_t *d;
  (void)vm;
  json_array_foreach(json_object_get(data, "overlays"), i, d) {
    unlink(json_string_value(json_object_get(d, "overlay")));
  }
}

/* ---- commit: the backend drives the request (as a save) ---- */

static void job_event(orr_req *r, const char *status, const json_t *data) {
  json_t *ev = json_pack("{s:s, s:s}", "Job",
                         json_string_value(json_object_get(r->plan, "job")),
                         "Status", status ? status : "?");
  if (json_object_get(data, "offset"))
    json_object_set(ev, "Offset", json_object_get(data, "offset"));
  if (json_object_get(data, "len"))
    json_object_set(ev, "Len", json_object_get(data, "len"));
  orr__vm_emit(r->vm, "block_job", ev);
  json_decref(ev);
}

/* plan "left": the cleanup commands not yet answered. */
static int cleanup_left(orr_req *r, int delta) {
  int n = (int)json_integer_value(json_object_get(r->plan, "left")) + delta;
  json_object_set_new(r->plan, "left", json_integer(n));
  return n;
}

static void on_cleanup_reply(void *arg, int status, json_t *result,
                             const char *errmsg) {
  orr_req *r = arg;
  (void)result, (void)errmsg;
  /* Every answer is accounted for (the request is freed only once QEMU
  ** has answered all it was sent); at the deadline the late callback
  ** counts the answer instead. */
  if (status != ORR_ETIMEDOUT && orr__req_replied(r))
    return;
  /* The merge happened: the nodes' fate does not change it. */
  if (cleanup_left(r, -1) == 0)
    orr__req_finish(r, 0, NULL);
}

static void on_complete_reply(void *arg, int status, json_t *result,
                              const char *errmsg) {
  orr_req *r = arg;
  (void)result;
  if (status == ORR_ETIMEDOUT || orr__req_replied(r))
    return;
  if (status != 0)
    orr__req_fail(r, ORR_EBACKEND, "commit_disk: job-complete: %s",
                  errmsg ? errmsg : orr_strerror(status));
}

/* A block job's event, for the commit request whose job it is. */
void orr__qemu_job_event(orr_vm *vm, const char *event, json_t *data) {
  const char *id = json_string_value(json_object_get(data, "device"));
  if (id == NULL)
    id = json_string_value(json_object_get(data, "id"));
  for (orr_req *r = vm->reqs; r && id; r = r->next) {
    const char *job = json_string_value(json_object_get(r->plan, "job"));
    if (r->done || job == NULL || strcmp(job, id) != 0)
      continue;
    if (strcmp(event, "JOB_STATUS_CHANGE") == 0) {
      job_event(r, json_string_value(json_object_get(data, "status")), data);
    } else if (strcmp(event, "BLOCK_JOB_READY") == 0) {
      job_event(r, "merged", data);
      if (orr__req_send_cmd(r, json_object_get(r->plan, "complete"),
                            on_complete_reply, NULL) != 0)
        orr__req_fail(r, ORR_EVMGONE, "commit_disk: VM %s is gone", vm->id);
    } else if (strcmp(event, "BLOCK_JOB_COMPLETED") == 0) {
      size_t i;
      json_t *c, *after = json_object_get(r->plan, "after");
      if (json_object_get(data, "error")) {
        orr__req_fail(r, ORR_EBACKEND, "commit_disk: the merge failed: %s",
                      json_string_value(json_object_get(data, "error")));
        return;
      }
      /* The overlay is out of the graph: its nodes go (a fault point for
      ** the crash specs, as every cleanup has one). */
      cleanup_left(r, (int)json_array_size(after));
      json_array_foreach(after, i, c) {
        if (orr__fault("cleanup:blockdev-del:before") == ORR_FAULT_FAIL ||
            orr__req_send_cmd(r, c, on_cleanup_reply, NULL) != 0)
          cleanup_left(r, -1);
      }
      if (cleanup_left(r, 0) == 0)
        orr__req_finish(r, 0, NULL);
    } else if (strcmp(event, "BLOCK_JOB_CANCELLED") == 0 ||
               strcmp(event, "BLOCK_JOB_ERROR") == 0) {
      orr__req_fail(r, ORR_EBACKEND, "commit_disk: the job was %s",
                    strcmp(event, "BLOCK_JOB_ERROR") == 0
                        ? "stopped by an I/O error"
                        : "cancelled");
    }
    return;
  }
}

static void commit_expired(uv_timer_t *t) {
  orr_req *r = t->data;
  if (r->done)
    return;
  /* Cancelled: the overlay stays the top, nothing changes (the answer
  ** is only counted). */
  orr__req_send_cmd(r, json_object_get(r->plan, "cancel"), NULL, NULL);
  orr__req_fail(r, ORR_ETIMEDOUT,
                "commit_disk: the merge did not finish within %llu ms (the "
                "job was cancelled; the overlay stays the top)",
                (unsigned long long)r->timeout_ms);
}

static void commit_then(orr_req *r) {
  orr__req_arm_timer(r, orr__req_left(r), commit_expired);
}

int orr__qemu_disk_commit(orr_req *r, int ctrl, int lun, json_t *data,
                          orr_error *e) {
  orr_vm *vm = r->vm;
  int n = snapshots_of(vm, ctrl, lun), rc;
  json_t *list = json_object_get(json_object_get(vm->layout, "snapshots"),
                                 orr__qemu_disk_key(ctrl, lun).s);
  if (n == 0)
    return orr_error_set(e, ORR_EINVAL,
                         "commit_disk: disk %d-%d has no snapshot to merge",
                         ctrl, lun);
  if ((rc = orr__qemu_plan_commit(ctrl, lun, n, &r->plan, e)) != 0)
    return rc;
  /* What the document's Path becomes, and the layout's part. */
  json_object_set(data, "below", json_array_get(list, (size_t)n - 1));
  json_object_set_new(data, "merged",
                      json_string(orr__qemu_disk_key(ctrl, lun).s));
  r->then = commit_then;
  return 0;
}
