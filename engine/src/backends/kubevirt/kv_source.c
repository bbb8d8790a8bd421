/*
** Cluster sources. A document names host paths (disk images, kernels,
** shares), endpoints and PCI instance paths; on a cluster none of those mean
** anything, so the kubevirt backend takes, for each, an explicit source:
**
**   pvc:NAME                  an existing PersistentVolumeClaim
**   dv:NAME                   a CDI DataVolume
**   containerdisk:IMAGE       a container image holding a disk (read-only
**                             base); for a kernel or initrd:
**                             containerdisk:IMAGE#/PATH/IN/IMAGE
**   pod                       the pod network (NetworkAdapter.EndpointId)
**   multus:[NS/]NAME          a NetworkAttachmentDefinition
**   hostdevice:RESOURCE       a host device resource the cluster permits
**                             (VirtualPci function DeviceInstancePath)
**
** Either in the create option `sources` (document string -> source), which
** keeps the recipe the same for every backend, or as the document's string
** itself where its schema allows (EndpointId "pod").
*/
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "kubevirt.h"

static int copy(char *dst, size_t size, const char *src, size_t n) {
  if (n >= size)
    return -1;
  memcpy(dst, src, n);
  dst[n] = '\0';
  return 0;
}

/* An image reference as container runtimes take it: registry/path:tag or
** @sha256:digest. No spaces, no '#', at most 255 characters. */
static int valid_image(const char *s, size_t n) {
  if (n == 0 || n > 255)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isalnum(c) || strchr("._-/:@", c)))
      return 0;
  }
  return isalnum((unsigned char)s[0]);
}

/* A resource name as device plugins register it: vendor.example/NAME. */
static int valid_resource(const char *s) {
  size_t n = strlen(s);
  const char *slash = strchr(s, '/');
  if (n == 0 || n > 253 || slash == NULL || slash == s || slash[1] == '\0')
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isalnum(c) || strchr("._-/", c)))
      return 0;
  }
  return 1;
}

#define FORMS                                                                  \
  "pvc:NAME, dv:NAME, containerdisk:IMAGE[#/PATH], pod, multus:[NS/]NAME or "  \
  "hostdevice:VENDOR/RESOURCE"

int orr__kv_source_parse(const char *text, const char *field,
                         orr_kv_source *out, orr_error *e) {
  const char *colon = strchr(text, ':');
  size_t plen = colon ? (size_t)(colon - text) : strlen(text);
  const char *rest = colon ? colon + 1 : "";
  memset(out, 0, sizeof *out);
  if (strcmp(text, "pod") == 0) {
    out->kind = ORR_KV_POD;
    return 0;
  }
  if (colon == NULL)
    goto bad;
  if ((plen == 3 && strncmp(text, "pvc", 3) == 0) ||
      (plen == 2 && strncmp(text, "dv", 2) == 0)) {
    out->kind = plen == 3 ? ORR_KV_PVC : ORR_KV_DV;
    if (!orr__kv_valid_name(rest, 253))
      return orr_error_set(e, ORR_EINVAL,
                           "%s: \"%s\": the claim or DataVolume name must be "
                           "a DNS-1123 name (lower-case letters, digits, '-' "
                           "and '.', at most 253)",
                           field, text);
    copy(out->ref, sizeof out->ref, rest, strlen(rest));
    return 0;
  }
  if (plen == 13 && strncmp(text, "containerdisk", 13) == 0) {
    const char *hash = strchr(rest, '#');
    size_t ilen = hash ? (size_t)(hash - rest) : strlen(rest);
    out->kind = ORR_KV_CONTAINERDISK;
    if (!valid_image(rest, ilen))
      return orr_error_set(e, ORR_EINVAL,
                           "%s: \"%s\": not a container image reference", field,
                           text);
    copy(out->ref, sizeof out->ref, rest, ilen);
    if (hash) {
      if (hash[1] != '/' || strlen(hash + 1) >= sizeof out->path ||
          strpbrk(hash + 1, " \t\n"))
        return orr_error_set(e, ORR_EINVAL,
                             "%s: \"%s\": the path after '#' must be an "
                             "absolute path inside the image",
                             field, text);
      copy(out->path, sizeof out->path, hash + 1, strlen(hash + 1));
    }
    return 0;
  }
  if (plen == 6 && strncmp(text, "multus", 6) == 0) {
    const char *slash = strchr(rest, '/');
    char ns[254] = "";
    out->kind = ORR_KV_MULTUS;
    if (slash && (copy(ns, sizeof ns, rest, (size_t)(slash - rest)) != 0 ||
                  !orr__kv_valid_name(ns, 63)))
      goto badname;
    if (!orr__kv_valid_name(slash ? slash + 1 : rest, 253))
      goto badname;
    copy(out->ref, sizeof out->ref, rest, strlen(rest));
    return 0;
  badname:
    return orr_error_set(e, ORR_EINVAL,
                         "%s: \"%s\": the network must be NAME or NAMESPACE/"
                         "NAME of a NetworkAttachmentDefinition",
                         field, text);
  }
  if (plen == 10 && strncmp(text, "hostdevice", 10) == 0) {
    out->kind = ORR_KV_HOSTDEVICE;
    if (!valid_resource(rest) || strlen(rest) >= sizeof out->ref)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: \"%s\": the resource must be VENDOR/NAME as "
                           "the device plugin registers it",
                           field, text);
    copy(out->ref, sizeof out->ref, rest, strlen(rest));
    return 0;
  }
bad:
  return orr_error_set(e, ORR_EINVAL,
                       "%s: \"%s\" is not a cluster source (one of " FORMS ")",
                       field, text);
}

static const char *kind_name(orr_kv_source_kind k) {
  static const char *const names[] = {"pvc", "dv",     "containerdisk",
                                      "pod", "multus", "hostdevice"};
  return names[k];
}

int orr__kv_source_for(const orr_kv_config *cfg, const char *value,
                       const char *field, unsigned allowed, orr_kv_source *out,
                       orr_error *e) {
  const json_t *mapped =
      cfg && cfg->sources ? json_object_get(cfg->sources, value) : NULL;
  const char *text = json_string_value(mapped);
  char list[160] = "";
  size_t n = 0;
  int rc;
  for (int k = ORR_KV_PVC; k <= ORR_KV_HOSTDEVICE; k++)
    if (allowed & (1u << k))
      n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "",
                            kind_name((orr_kv_source_kind)k));
  if (mapped != NULL && text == NULL)
    return orr_error_set(e, ORR_EINVAL, "%s: sources[\"%s\"] must be a string",
                         field, value);
  if (text == NULL) {
    orr_kv_source probe;
    /* The document's own string may already be a source ("pod"). */
    if (orr__kv_source_parse(value, field, &probe, NULL) != 0)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: \"%s\" means nothing on a cluster: the "
                           "kubevirt backend needs a cluster source for it "
                           "(%s) in the create option sources",
                           field, value, list);
    text = value;
  }
  if ((rc = orr__kv_source_parse(text, field, out, e)) != 0)
    return rc;
  if (!(allowed & (1u << out->kind)))
    return orr_error_set(e, ORR_ENOTSUP,
                         "%s: a %s source cannot be used here (KubeVirt takes "
                         "%s)",
                         field, kind_name(out->kind), list);
  return 0;
}
