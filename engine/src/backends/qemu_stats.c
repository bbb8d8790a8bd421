/*
** vm:stats() on the qemu backend: QEMU's CPU time and resident memory from
** /proc, per-disk I/O (query-blockstats), the balloon (query-balloon) and
** per-NIC counters (a tap's, from the host's /sys/class/net: user-mode
** networking keeps none that QEMU 7.2 reports).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu_backend.h"
#include "qemu_xlate.h"

typedef struct {
  orr_vm *vm;
  orr_vm_cb cb;
  void *arg;
  uint64_t timeout_ms;
  json_t *out;
} job;

static void finish(job *j, int status, const char *msg) {
  orr_error e = {status, ""};
  if (status != 0)
    snprintf(e.msg, sizeof e.msg, "stats: %s", msg);
  j->cb(j->arg, status, &e, status == 0 ? j->out : NULL);
  json_decref(j->out);
  free(j);
}

/* utime + stime (fields 14, 15 of /proc/PID/stat) and VmRSS. */
static void process_stats(job *j) {
  char path[64], buf[4096], *p;
  long ticks = sysconf(_SC_CLK_TCK);
  unsigned long long ut = 0, st = 0;
  long long rss_kb = -1;
  FILE *f;
  int pid = j->vm->pid;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if ((f = fopen(path, "re")) != NULL) {
    if (fgets(buf, sizeof buf, f) != NULL && (p = strrchr(buf, ')')) != NULL)
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &ut, &st);
    fclose(f);
  }
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if ((f = fopen(path, "re")) != NULL) {
    while (fgets(buf, sizeof buf, f) != NULL)
      if (strncmp(buf, "VmRSS:", 6) == 0)
        rss_kb = strtoll(buf + 6, NULL, 10);
    fclose(f);
  }
  if (ticks <= 0)
    ticks = 100;
  json_object_set_new(j->out, "ProcessId", json_integer(pid));
  json_object_set_new(j->out, "Cpu",
                      json_pack("{s:f, s:f, s:f}", "UserSeconds",
                                (double)ut / (double)ticks, "SystemSeconds",
                                (double)st / (double)ticks, "TotalSeconds",
                                (double)(ut + st) / (double)ticks));
  json_object_set_new(j->out, "Memory",
                      json_pack("{s:I}", "ResidentBytes",
                                (json_int_t)(rss_kb < 0 ? 0 : rss_kb * 1024)));
}

static long long sys_counter(const char *ifname, const char *name) {
  char path[160];
  long long v = -1;
  FILE *f;
  snprintf(path, sizeof path, "/sys/class/net/%s/statistics/%s", ifname, name);
  if ((f = fopen(path, "re")) != NULL) {
    if (fscanf(f, "%lld", &v) != 1)
      v = -1;
    fclose(f);
  }
  return v;
}

/* The document's NICs, with a tap's counters as the guest sees them (the
** host's tx is the guest's rx). */
static void nic_stats(job *j) {
  const json_t *nics = json_object_get(
      json_object_get(json_object_get(j->vm->doc, "VirtualMachine"), "Devices"),
      "NetworkAdapters");
  json_t *arr = json_array();
  const char *guid;
  json_t *nic;
  json_object_foreach((json_t *)nics, guid, nic) {
    const char *ep = json_string_value(json_object_get(nic, "EndpointId"));
    json_t *o = json_pack("{s:s, s:s}", "Id", guid, "EndpointId", ep ? ep : "");
    if (ep != NULL && strncmp(ep, "tap:", 4) == 0 &&
        sys_counter(ep + 4, "rx_bytes") >= 0) {
      json_object_set_new(o, "RxBytes",
                          json_integer(sys_counter(ep + 4, "tx_bytes")));
      json_object_set_new(o, "TxBytes",
                          json_integer(sys_counter(ep + 4, "rx_bytes")));
      json_object_set_new(o, "RxPackets",
                          json_integer(sys_counter(ep + 4, "tx_packets")));
      json_object_set_new(o, "TxPackets",
                          json_integer(sys_counter(ep + 4, "rx_packets")));
      json_object_set_new(o, "RxDropped",
                          json_integer(sys_counter(ep + 4, "tx_dropped")));
      json_object_set_new(o, "TxDropped",
                          json_integer(sys_counter(ep + 4, "rx_dropped")));
    } else {
      json_object_set_new(o, "Counters",
                          json_string("none: QEMU keeps no counters for "
                                      "user-mode networking"));
    }
    json_array_append_new(arr, o);
  }
  json_object_set_new(j->out, "Nics", arr);
}

static void on_balloon(void *arg, int status, json_t *result,
                       const char *errmsg) {
  job *j = arg;
  (void)errmsg;
  if (status == ORR_ETIMEDOUT || status == ORR_EVMGONE) {
    finish(j, status, errmsg ? errmsg : "query-balloon failed");
    return;
  }
  /* No balloon driver in the guest (yet) is an answer too: no size. */
  json_object_set_new(j->out, "Balloon",
                      status == 0
                          ? json_pack("{s:O?}", "ActualBytes",
                                      json_object_get(result, "actual"))
                          : json_pack("{s:s}", "Error", errmsg ? errmsg : "?"));
  nic_stats(j);
  process_stats(j);
  finish(j, 0, NULL);
}

static void on_blockstats(void *arg, int status, json_t *result,
                          const char *errmsg) {
  job *j = arg;
  json_t *disks = json_array(), *v;
  size_t i;
  if (status != 0) {
    json_decref(disks);
    finish(j, status, errmsg ? errmsg : "query-blockstats failed");
    return;
  }
  json_array_foreach(result, i, v) {
    json_t *s = json_object_get(v, "stats");
    const char *qdev = json_string_value(json_object_get(v, "qdev"));
    const char *node = json_string_value(json_object_get(v, "node-name"));
    if (qdev == NULL || qdev[0] == '\0')
      continue; /* a node no device uses */
    json_array_append_new(
        disks, json_pack("{s:s, s:s?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}",
                         "Device", qdev, "Node", node, "ReadBytes",
                         json_object_get(s, "rd_bytes"), "WriteBytes",
                         json_object_get(s, "wr_bytes"), "ReadOperations",
                         json_object_get(s, "rd_operations"), "WriteOperations",
                         json_object_get(s, "wr_operations"), "FlushOperations",
                         json_object_get(s, "flush_operations"), "ReadTimeNs",
                         json_object_get(s, "rd_total_time_ns")));
  }
  json_object_set_new(j->out, "Disks", disks);
  if (j->vm->backend->send(j->vm, "query-balloon", NULL, j->timeout_ms,
                           on_balloon, NULL, j) != 0)
    finish(j, ORR_EVMGONE, "QEMU is gone");
}

static void fail_later(void *arg) {
  finish(arg, ORR_EVMGONE, "QEMU is gone");
}

void orr__qemu_stats(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  job *j = calloc(1, sizeof *j);
  if (j == NULL)
    return;
  j->vm = vm;
  j->cb = cb;
  j->arg = arg;
  j->timeout_ms = timeout_ms;
  j->out = json_object();
  if (vm->backend->send(vm, "query-blockstats", NULL, timeout_ms, on_blockstats,
                        NULL, j) != 0)
    orr__defer(vm->eng, fail_later, j);
}
