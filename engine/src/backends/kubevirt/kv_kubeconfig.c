/*
** kubeconfig files (the format kubectl reads), parsed with libyaml into a
** Jansson tree and then walked: current-context (or the one asked for) ->
** its cluster (server, certificate-authority[-data]) and user
** (client-certificate[-data] + client-key[-data], token or tokenFile) and
** namespace.
**
** Refused, each with the key named: insecure-skip-tls-verify (the backend
** always verifies the API server), exec and auth-provider credential
** plugins (they run programs; ENOTSUP), a server that is not https://.
*/
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base64.h"
#include "kubevirt.h"

/* A kubeconfig is a few KiB; files given inside it (CA, keys) too. */
#define MAX_FILE (4u * 1024 * 1024)

static json_t *node_json(yaml_document_t *doc, yaml_node_t *n, int depth) {
  json_t *out = NULL;
  if (n == NULL || depth > 32)
    return NULL;
  switch (n->type) {
  case YAML_SCALAR_NODE:
    return json_stringn((const char *)n->data.scalar.value,
                        n->data.scalar.length);
  case YAML_SEQUENCE_NODE:
    out = json_array();
    for (yaml_node_item_t *i = n->data.sequence.items.start;
         i < n->data.sequence.items.top; i++) {
      json_t *v = node_json(doc, yaml_document_get_node(doc, *i), depth + 1);
      if (v == NULL) {
        json_decref(out);
        return NULL;
      }
      json_array_append_new(out, v);
    }
    return out;
  case YAML_MAPPING_NODE:
    out = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(doc, p->key);
      json_t *v;
      char key[256];
      if (k == NULL || k->type != YAML_SCALAR_NODE ||
          k->data.scalar.length >= sizeof key) {
        json_decref(out);
        return NULL;
      }
      memcpy(key, k->data.scalar.value, k->data.scalar.length);
      key[k->data.scalar.length] = '\0';
      v = node_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
      if (v == NULL) {
        json_decref(out);
        return NULL;
      }
      json_object_set_new(out, key, v);
    }
    return out;
  default:
    return NULL;
  }
}

static char *read_file(const char *path, size_t *len, orr_error *e,
                       const char *key) {
  FILE *f = fopen(path, "rb");
  char *buf;
  size_t n = 0;
  if (f == NULL) {
    orr_error_set(e, ORR_EINVAL, "%s: cannot open %s: %s", key, path,
                  strerror(errno));
    return NULL;
  }
  buf = malloc(MAX_FILE + 1);
  if (buf)
    n = fread(buf, 1, MAX_FILE + 1, f);
  fclose(f);
  if (buf == NULL || n > MAX_FILE) {
    free(buf);
    orr_error_set(e, ORR_EINVAL, "%s: %s is larger than 4 MiB", key, path);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* The bytes of `key` (a file name, relative to dir) or `key`-data (base64)
** in obj; *out NULL when neither is there. */
static int bytes_of(const json_t *obj, const char *key, const char *where,
                    const char *dir, char **out, size_t *len, orr_error *e) {
  char dkey[64], full[4096], name[128];
  const char *file = json_string_value(json_object_get(obj, key));
  const char *data;
  snprintf(dkey, sizeof dkey, "%s-data", key);
  data = json_string_value(json_object_get(obj, dkey));
  *out = NULL;
  *len = 0;
  if (data) {
    snprintf(name, sizeof name, "%s.%s", where, dkey);
    *out = (char *)orr__b64_decode(data, strlen(data), len);
    if (*out == NULL || *len == 0)
      return orr_error_set(e, ORR_EINVAL, "%s: not base64", name);
    return 0;
  }
  if (file == NULL)
    return 0;
  snprintf(name, sizeof name, "%s.%s", where, key);
  if (file[0] == '/' || dir == NULL)
    snprintf(full, sizeof full, "%s", file);
  else
    snprintf(full, sizeof full, "%s/%s", dir, file);
  *out = read_file(full, len, e, name);
  return *out ? 0 : e->code;
}

/* The entry named `name` of the list `list` ("clusters"), its `inner`
** object ("cluster"). */
static const json_t *entry(const json_t *root, const char *list,
                           const char *inner, const char *name) {
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(root, list), i, x) {
    const char *n = json_string_value(json_object_get(x, "name"));
    if (n && strcmp(n, name) == 0)
      return json_object_get(x, inner);
  }
  return NULL;
}

void orr__kv_kubeconfig_free(orr_kv_kubeconfig *kc) {
  free(kc->server);
  free(kc->ca);
  free(kc->cert);
  free(kc->key);
  if (kc->token)
    memset(kc->token, 0, strlen(kc->token));
  free(kc->token);
  free(kc->ns);
  free(kc->context);
  memset(kc, 0, sizeof *kc);
}

static int walk(const json_t *root, const char *dir, const char *context,
                orr_kv_kubeconfig *kc, orr_error *e) {
  const char *ctxname =
      context ? context
              : json_string_value(json_object_get(root, "current-context"));
  const json_t *ctx, *cluster, *user;
  const char *cname, *uname, *server, *ns;
  size_t n;
  int rc;
  if (ctxname == NULL || ctxname[0] == '\0')
    return orr_error_set(e, ORR_EINVAL,
                         "current-context: not set and no context given");
  if ((ctx = entry(root, "contexts", "context", ctxname)) == NULL)
    return orr_error_set(e, ORR_EINVAL, "contexts: no context named \"%s\"",
                         ctxname);
  cname = json_string_value(json_object_get(ctx, "cluster"));
  uname = json_string_value(json_object_get(ctx, "user"));
  ns = json_string_value(json_object_get(ctx, "namespace"));
  if (cname == NULL ||
      (cluster = entry(root, "clusters", "cluster", cname)) == NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "contexts[%s].cluster: no cluster named \"%s\"",
                         ctxname, cname ? cname : "");
  server = json_string_value(json_object_get(cluster, "server"));
  if (server == NULL || strncmp(server, "https://", 8) != 0)
    return orr_error_set(e, ORR_EINVAL,
                         "clusters[%s].server: must be an https:// URL, got "
                         "\"%s\"",
                         cname, server ? server : "");
  if (json_object_get(cluster, "insecure-skip-tls-verify") &&
      strcmp(json_string_value(
                 json_object_get(cluster, "insecure-skip-tls-verify")),
             "false") != 0)
    return orr_error_set(e, ORR_EINVAL,
                         "clusters[%s].insecure-skip-tls-verify: the kubevirt "
                         "backend always verifies the API server; give its CA "
                         "in certificate-authority[-data]",
                         cname);
  if (ns && !orr__kv_valid_name(ns, 63))
    return orr_error_set(e, ORR_EINVAL,
                         "contexts[%s].namespace: not a DNS-1123 label: \"%s\"",
                         ctxname, ns);
  kc->server = strdup(server);
  n = strlen(kc->server);
  while (n > 8 && kc->server[n - 1] == '/')
    kc->server[--n] = '\0';
  kc->ns = strdup(ns ? ns : "default");
  kc->context = strdup(ctxname);
  {
    char where[200];
    snprintf(where, sizeof where, "clusters[%s]", cname);
    if ((rc = bytes_of(cluster, "certificate-authority", where, dir, &kc->ca,
                       &kc->ca_len, e)) != 0)
      return rc;
  }
  if (uname == NULL)
    return 0; /* no credentials: anonymous */
  if ((user = entry(root, "users", "user", uname)) == NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "contexts[%s].user: no user named \"%s\"", ctxname,
                         uname);
  {
    char where[200];
    const char *token = json_string_value(json_object_get(user, "token"));
    const char *tfile = json_string_value(json_object_get(user, "tokenFile"));
    snprintf(where, sizeof where, "users[%s]", uname);
    if (json_object_get(user, "exec") || json_object_get(user, "auth-provider"))
      return orr_error_set(
          e, ORR_ENOTSUP,
          "%s.%s: credential plugins run programs; the "
          "kubevirt backend takes a client certificate or a "
          "token",
          where, json_object_get(user, "exec") ? "exec" : "auth-provider");
    if ((rc = bytes_of(user, "client-certificate", where, dir, &kc->cert,
                       &kc->cert_len, e)) != 0 ||
        (rc = bytes_of(user, "client-key", where, dir, &kc->key, &kc->key_len,
                       e)) != 0)
      return rc;
    if ((kc->cert == NULL) != (kc->key == NULL))
      return orr_error_set(e, ORR_EINVAL,
                           "%s: client-certificate and client-key go "
                           "together",
                           where);
    if (token) {
      kc->token = strdup(token);
    } else if (tfile) {
      size_t len;
      char full[4096], name[256];
      snprintf(full, sizeof full, "%s%s%s",
               tfile[0] == '/' || dir == NULL ? "" : dir,
               tfile[0] == '/' || dir == NULL ? "" : "/", tfile);
      snprintf(name, sizeof name, "%s.tokenFile", where);
      if ((kc->token = read_file(full, &len, e, name)) == NULL)
        return e->code;
      while (len > 0 &&
             (kc->token[len - 1] == '\n' || kc->token[len - 1] == '\r'))
        kc->token[--len] = '\0';
    }
    if (kc->token && strpbrk(kc->token, "\r\n"))
      return orr_error_set(e, ORR_EINVAL, "%s.token: holds a line break",
                           where);
  }
  return 0;
}

int orr__kv_kubeconfig_parse(const char *text, size_t len, const char *dir,
                             const char *context, orr_kv_kubeconfig *out,
                             orr_error *e) {
  yaml_parser_t parser;
  yaml_document_t doc;
  json_t *root = NULL;
  int rc;
  memset(out, 0, sizeof *out);
  if (!yaml_parser_initialize(&parser))
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = orr_error_set(e, ORR_EINVAL, "kubeconfig: %s at line %zu",
                       parser.problem ? parser.problem : "not YAML",
                       parser.problem_mark.line + 1);
    yaml_parser_delete(&parser);
    return rc;
  }
  root = node_json(&doc, yaml_document_get_root_node(&doc), 0);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (!json_is_object(root)) {
    json_decref(root);
    return orr_error_set(e, ORR_EINVAL, "kubeconfig: not a mapping");
  }
  rc = walk(root, dir, context, out, e);
  json_decref(root);
  if (rc != 0)
    orr__kv_kubeconfig_free(out);
  return rc;
}

int orr__kv_kubeconfig_load(const char *path, const char *context,
                            orr_kv_kubeconfig *out, orr_error *e) {
  size_t len;
  char *text = read_file(path, &len, e, "kubeconfig");
  char *copy;
  int rc;
  memset(out, 0, sizeof *out);
  if (text == NULL)
    return e ? e->code : ORR_EINVAL;
  copy = strdup(path);
  rc = orr__kv_kubeconfig_parse(text, len, dirname(copy), context, out, e);
  free(copy);
  free(text);
  return rc;
}
