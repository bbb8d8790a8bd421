/*
** Whole-document operations: defaults, parse/check/dump, and the rules that
** span more than one field (the traps hcsshim leaves open, refused here).
*/
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orrery/document.h"
#include "schema.h"

/* HCS's four fixed SCSI controller GUIDs (hcsshim guestrequest), the only
** table of them: every layer asks here. */
static const char *const scsi_guids[ORR_SCSI_CONTROLLERS] = {
    "df6d0690-79e5-55b6-a5ec-c1e2f77f580a",
    "0110f83b-de10-5172-a266-78bca56bf50a",
    "b5d2d8d4-3a75-51bf-945b-3444dc6b8579",
    "305891a9-b251-5dfe-91a2-c25d9212275b",
};

const char *orr_scsi_controller_guid(int index) {
  if (index < 0 || index >= ORR_SCSI_CONTROLLERS)
    return NULL;
  return scsi_guids[index];
}

int orr_scsi_controller_index(const char *guid) {
  /* GUIDs compare case-insensitively, as in HCS. */
  for (int i = 0; guid != NULL && i < ORR_SCSI_CONTROLLERS; i++)
    if (strcasecmp(guid, scsi_guids[i]) == 0)
      return i;
  return -1;
}

json_t *orr_doc_new(const char *owner) {
  /* The same defaults hcsshim's builder.New writes; Go omits an empty
  ** Owner (omitempty), and so do we. Built member by member: a builder
  ** starts here for every document. */
  json_t *doc = json_object(), *vm = json_object(), *topo = json_object(),
         *dev = json_object(), *hv = json_object(), *cfg = json_object(),
         *ver = json_object();
  if (owner != NULL && owner[0] != '\0')
    json_object_set_new_nocheck(doc, "Owner", json_string(owner));
  json_object_set_new_nocheck(ver, "Major", json_integer(2));
  json_object_set_new_nocheck(ver, "Minor", json_integer(1));
  json_object_set_new_nocheck(doc, "SchemaVersion", ver);
  json_object_set_new_nocheck(vm, "StopOnReset", json_true());
  json_object_set_new_nocheck(vm, "Chipset", json_object());
  json_object_set_new_nocheck(topo, "Memory", json_object());
  json_object_set_new_nocheck(topo, "Processor", json_object());
  json_object_set_new_nocheck(vm, "ComputeTopology", topo);
  json_object_set_new_nocheck(cfg, "DefaultBindSecurityDescriptor",
                              json_string("D:P(A;;FA;;;SY)(A;;FA;;;BA)"));
  json_object_set_new_nocheck(hv, "HvSocketConfig", cfg);
  json_object_set_new_nocheck(dev, "HvSocket", hv);
  json_object_set_new_nocheck(vm, "Devices", dev);
  json_object_set_new_nocheck(doc, "VirtualMachine", vm);
  json_object_set_new_nocheck(doc, "ShouldTerminateOnLastHandleClosed",
                              json_true());
  return doc;
}

static json_t *at(const json_t *doc, const char *p1, const char *p2,
                  const char *p3) {
  json_t *v = json_object_get(doc, "VirtualMachine");
  if (p1)
    v = json_object_get(v, p1);
  if (p2)
    v = json_object_get(v, p2);
  if (p3)
    v = json_object_get(v, p3);
  return v;
}

static int rule_boot(const json_t *doc, orr_error *e) {
  json_t *chipset = at(doc, "Chipset", NULL, NULL);
  if (json_object_get(chipset, "Uefi") &&
      json_object_get(chipset, "LinuxKernelDirect"))
    return orr_error_set(e, ORR_EINVAL,
                         "VirtualMachine.Chipset: Uefi and LinuxKernelDirect "
                         "are mutually exclusive boot methods");
  return 0;
}

static int rule_numa(const json_t *doc, int complete, orr_error *e) {
  json_t *topo = at(doc, "ComputeTopology", NULL, NULL);
  json_t *numa = json_object_get(topo, "Numa");
  json_t *mem, *cpus, *perproc, *proc;
  json_t *settings, *s;
  json_int_t nodes, sum_cpu = 0, sum_mem = 0;
  unsigned long long seen = 0;
  size_t i;
  const char *P = "VirtualMachine.ComputeTopology.Numa";
  if (numa == NULL)
    return 0;
  proc = json_object_get(topo, "Processor");
  mem = json_object_get(json_object_get(topo, "Memory"), "SizeInMB");
  cpus = json_object_get(proc, "Count");
  perproc = json_object_get(
      json_object_get(json_object_get(proc, "NumaProcessorsSettings"),
                      "count_per_node"),
      "max");
  nodes = json_integer_value(json_object_get(numa, "VirtualNodeCount"));
  settings = json_object_get(numa, "Settings");
  if (settings == NULL || json_array_size(settings) == 0) {
    /* No per-node settings: nodes get equal shares, which must divide. */
    if (cpus && json_integer_value(cpus) % nodes != 0)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: VirtualNodeCount %lld does not divide "
                           "Processor.Count %lld (give Settings per node)",
                           P, (long long)nodes,
                           (long long)json_integer_value(cpus));
    if (mem && json_integer_value(mem) % nodes != 0)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: VirtualNodeCount %lld does not divide "
                           "Memory.SizeInMB %lld (give Settings per node)",
                           P, (long long)nodes,
                           (long long)json_integer_value(mem));
    goto totals;
  }
  if ((json_int_t)json_array_size(settings) != nodes)
    return orr_error_set(e, ORR_EINVAL,
                         "%s.Settings has %zu nodes but VirtualNodeCount is "
                         "%lld; they must match",
                         P, json_array_size(settings), (long long)nodes);
  json_array_foreach(settings, i, s) {
    json_int_t vn = json_integer_value(json_object_get(s, "VirtualNodeNumber"));
    json_int_t np = json_integer_value(json_object_get(s, "CountOfProcessors"));
    json_int_t nm =
        json_integer_value(json_object_get(s, "CountOfMemoryBlocks"));
    if (vn >= nodes)
      return orr_error_set(e, ORR_EINVAL,
                           "%s.Settings[%zu].VirtualNodeNumber must be below "
                           "VirtualNodeCount %lld, got %lld",
                           P, i + 1, (long long)nodes, (long long)vn);
    if (seen & (1ULL << vn))
      return orr_error_set(e, ORR_EEXIST,
                           "%s.Settings[%zu].VirtualNodeNumber %lld is used by "
                           "an earlier node; each node needs its own number",
                           P, i + 1, (long long)vn);
    seen |= 1ULL << vn;
    if (nm <= 0)
      return orr_error_set(e, ORR_EINVAL,
                           "%s.Settings[%zu].CountOfMemoryBlocks must be at "
                           "least 1 (MiB), got %lld",
                           P, i + 1, (long long)nm);
    if (perproc && np > json_integer_value(perproc))
      return orr_error_set(e, ORR_EINVAL,
                           "%s.Settings[%zu].CountOfProcessors %lld exceeds "
                           "NumaProcessorsSettings.count_per_node.max %lld",
                           P, i + 1, (long long)np,
                           (long long)json_integer_value(perproc));
    sum_cpu += np;
    sum_mem += nm;
  }
  if (cpus && sum_cpu != json_integer_value(cpus))
    return orr_error_set(e, ORR_EINVAL,
                         "%s: the nodes' CountOfProcessors sum to %lld but "
                         "Processor.Count is %lld; they must be equal",
                         P, (long long)sum_cpu,
                         (long long)json_integer_value(cpus));
  if (mem && sum_mem != json_integer_value(mem))
    return orr_error_set(e, ORR_EINVAL,
                         "%s: the nodes' CountOfMemoryBlocks sum to %lld MiB "
                         "but Memory.SizeInMB is %lld; they must be equal",
                         P, (long long)sum_mem,
                         (long long)json_integer_value(mem));
totals:
  if (complete && (cpus == NULL || mem == NULL))
    return orr_error_set(e, ORR_EINVAL,
                         "%s needs ComputeTopology.Processor.Count and "
                         "Memory.SizeInMB to be set, to check the nodes add "
                         "up to them",
                         P);
  return 0;
}

static int rule_vpci(const json_t *doc, orr_error *e) {
  json_t *vpci = at(doc, "Devices", "VirtualPci", NULL);
  const char *g1, *g2;
  json_t *d1, *d2, *f1, *f2;
  size_t i, j;
  /* Quadratic, but a VM has a handful of PCI devices. */
  json_object_foreach(vpci, g1, d1) {
    json_array_foreach(json_object_get(d1, "Functions"), i, f1) {
      const char *p1 =
          json_string_value(json_object_get(f1, "DeviceInstancePath"));
      json_int_t v1 =
          json_integer_value(json_object_get(f1, "VirtualFunction"));
      json_object_foreach(vpci, g2, d2) {
        json_array_foreach(json_object_get(d2, "Functions"), j, f2) {
          if (d1 == d2 && j <= i)
            continue;
          if (strcmp(p1, json_string_value(
                             json_object_get(f2, "DeviceInstancePath"))) == 0 &&
              v1 == json_integer_value(json_object_get(f2, "VirtualFunction")))
            return orr_error_set(
                e, ORR_EEXIST,
                "VirtualMachine.Devices.VirtualPci.%s.Functions[%zu]: "
                "DeviceInstancePath %s (VirtualFunction %lld) is already "
                "assigned under %s; a PCI function can be assigned once",
                g2, j + 1, p1, (long long)v1, g1);
        }
      }
    }
  }
  return 0;
}

static int rule_nics(const json_t *doc, orr_error *e) {
  json_t *nics = at(doc, "Devices", "NetworkAdapters", NULL);
  const char *g1, *g2;
  json_t *n1, *n2;
  json_object_foreach(nics, g1, n1) {
    const char *m1 = json_string_value(json_object_get(n1, "MacAddress"));
    if (m1 == NULL)
      continue;
    json_object_foreach(nics, g2, n2) {
      const char *m2 = json_string_value(json_object_get(n2, "MacAddress"));
      if (n2 == n1)
        break;
      if (m2 && strcasecmp(m1, m2) == 0)
        return orr_error_set(e, ORR_EEXIST,
                             "VirtualMachine.Devices.NetworkAdapters.%s."
                             "MacAddress %s is already used by adapter %s; "
                             "MAC addresses must be unique",
                             g1, m1, g2);
    }
  }
  return 0;
}

/* The same image writable in two places corrupts it: the attachment a1
** (controller c1, LUN l1) against every attachment before it in the
** document, or against every other one when `all` is set. */
static int scsi_path_conflict(const json_t *scsi, const char *c1,
                              const char *l1, const json_t *a1, int all,
                              orr_error *e) {
  const char *p1 = json_string_value(json_object_get(a1, "Path"));
  int ro1 = json_is_true(json_object_get(a1, "ReadOnly"));
  const char *c2, *l2;
  json_t *ctl2, *a2;
  json_object_foreach((json_t *)scsi, c2, ctl2) {
    json_object_foreach(json_object_get(ctl2, "Attachments"), l2, a2) {
      if (a2 == a1) {
        if (!all)
          return 0;
        continue;
      }
      if (strcmp(p1, json_string_value(json_object_get(a2, "Path"))) == 0 &&
          !(ro1 && json_is_true(json_object_get(a2, "ReadOnly"))))
        return orr_error_set(
            e, ORR_EEXIST,
            "VirtualMachine.Devices.Scsi.%s.Attachments.%s.Path %s is "
            "already attached at controller %d LUN %s; an image may be "
            "attached twice only if every attachment is ReadOnly",
            c1, l1, p1, orr_scsi_controller_index(c2), l2);
    }
  }
  return 0;
}

static int rule_scsi_paths(const json_t *doc, orr_error *e) {
  json_t *scsi = at(doc, "Devices", "Scsi", NULL);
  const char *c1, *l1;
  json_t *ctl1, *a1;
  int rc;
  json_object_foreach(scsi, c1, ctl1) {
    json_object_foreach(json_object_get(ctl1, "Attachments"), l1, a1) {
      if ((rc = scsi_path_conflict(scsi, c1, l1, a1, 0, e)) != 0)
        return rc;
    }
  }
  return 0;
}

int orr__rule_scsi_path(const json_t *scsi, const char *ctrl, const char *lun,
                        const json_t *attachment, orr_error *e) {
  return scsi_path_conflict(scsi, ctrl, lun, attachment, 1, e);
}

static int rule_unique_strings(const json_t *list, const char *key,
                               const char *alt, const char *path,
                               orr_error *e) {
  size_t i, j;
  json_t *a, *b;
  json_array_foreach(list, i, a) {
    json_t *va = json_object_get(a, key);
    if (va == NULL && alt)
      va = json_object_get(a, alt);
    json_array_foreach(list, j, b) {
      json_t *vb = json_object_get(b, key);
      if (j >= i)
        break;
      if (vb == NULL && alt)
        vb = json_object_get(b, alt);
      if (va && vb && json_equal(va, vb))
        return orr_error_set(e, ORR_EEXIST,
                             "%s[%zu].%s \"%s\" is already used by share "
                             "[%zu]; it must be unique",
                             path, i + 1, key, json_string_value(va), j + 1);
    }
  }
  return 0;
}

static int rule_shares(const json_t *doc, orr_error *e) {
  json_t *p9 = json_object_get(at(doc, "Devices", "Plan9", NULL), "Shares");
  json_t *smb =
      json_object_get(at(doc, "Devices", "VirtualSmb", NULL), "Shares");
  const char *P9 = "VirtualMachine.Devices.Plan9.Shares";
  if (rule_unique_strings(p9, "Name", NULL, P9, e) ||
      rule_unique_strings(p9, "AccessName", "Name", P9, e) ||
      rule_unique_strings(smb, "Name", NULL,
                          "VirtualMachine.Devices.VirtualSmb.Shares", e))
    return e ? e->code : ORR_EEXIST;
  return 0;
}

static int rule_vpmem(const json_t *doc, orr_error *e) {
  json_t *pm = at(doc, "Devices", "VirtualPMem", NULL);
  json_t *max = json_object_get(pm, "MaximumCount");
  const char *key;
  json_t *dev;
  if (max == NULL)
    return 0;
  json_object_foreach(json_object_get(pm, "Devices"), key, dev) {
    if (atoll(key) >= json_integer_value(max))
      return orr_error_set(e, ORR_EINVAL,
                           "VirtualMachine.Devices.VirtualPMem.Devices: "
                           "device \"%s\" must be below MaximumCount %lld",
                           key, (long long)json_integer_value(max));
  }
  return 0;
}

static int rule_com(const json_t *doc, orr_error *e) {
  json_t *com = at(doc, "Devices", "ComPorts", NULL);
  const char *k1, *k2;
  json_t *p1, *p2;
  json_object_foreach(com, k1, p1) {
    json_object_foreach(com, k2, p2) {
      if (p2 == p1)
        break;
      if (json_equal(json_object_get(p1, "NamedPipe"),
                     json_object_get(p2, "NamedPipe")))
        return orr_error_set(
            e, ORR_EEXIST,
            "VirtualMachine.Devices.ComPorts.%s.NamedPipe %s is already used "
            "by COM port %s; each port needs its own socket",
            k1, json_string_value(json_object_get(p1, "NamedPipe")), k2);
    }
  }
  return 0;
}

int orr__doc_rules_some(const json_t *doc, int complete, unsigned mask,
                        orr_error *e) {
  int rc = 0;
  if (((mask & ORR_RULE_BOOT) && (rc = rule_boot(doc, e))) ||
      ((mask & ORR_RULE_NUMA) && (rc = rule_numa(doc, complete, e))) ||
      ((mask & ORR_RULE_VPCI) && (rc = rule_vpci(doc, e))) ||
      ((mask & ORR_RULE_NICS) && (rc = rule_nics(doc, e))) ||
      ((mask & ORR_RULE_SCSI) && (rc = rule_scsi_paths(doc, e))) ||
      ((mask & ORR_RULE_SHARES) && (rc = rule_shares(doc, e))) ||
      ((mask & ORR_RULE_VPMEM) && (rc = rule_vpmem(doc, e))) ||
      ((mask & ORR_RULE_COM) && (rc = rule_com(doc, e))))
    return rc;
  return 0;
}

int orr_doc_rules(const json_t *doc, int complete, orr_error *e) {
  return orr__doc_rules_some(doc, complete, ORR_RULES_ALL, e);
}

int orr_doc_check(const json_t *doc, json_t **out, orr_error *e) {
  json_t *norm = NULL;
  int rc = orr__schema_normalize(&orr__t_compute_system, doc, "", &norm, e);
  if (rc != 0)
    return rc;
  if ((rc = orr_doc_rules(norm, 1, e)) != 0) {
    json_decref(norm);
    return rc;
  }
  *out = norm;
  return 0;
}

int orr_doc_parse(const char *text, size_t len, json_t **out, orr_error *e) {
  json_error_t je;
  json_t *raw = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  int rc;
  if (raw == NULL)
    return orr_error_set(e, ORR_EINVAL, "JSON text line %d column %d: %s",
                         je.line, je.column, je.text);
  rc = orr_doc_check(raw, out, e);
  json_decref(raw);
  return rc;
}

char *orr_doc_dump(const json_t *doc, int pretty) {
  json_t *norm = NULL;
  char *text = NULL;
  if (orr__schema_dump(&orr__t_compute_system, doc, pretty ? 2 : 0, &text) == 0)
    return text;
  /* Not in normal form (a document built by hand): normalize it, so keys
  ** come out in HCS order whatever order they were inserted in; a document
  ** that fails here is dumped as is. */
  if (orr__schema_normalize(&orr__t_compute_system, doc, "", &norm, NULL) !=
          0 ||
      orr__schema_dump(&orr__t_compute_system, norm, pretty ? 2 : 0, &text) !=
          0)
    text =
        json_dumps(norm ? norm : doc, pretty ? JSON_INDENT(2) : JSON_COMPACT);
  json_decref(norm);
  return text;
}

json_t *orr_doc_schema(void) {
  json_t *roots = json_object();
  const char *name;
  const orr_type *t;
  for (size_t i = 0; (t = orr__schema_root(i, &name)) != NULL; i++)
    json_object_set_new(roots, name, orr__schema_describe(t));
  return roots;
}
