/*
** kubeconfig parsing (libyaml): the current context and a named one, CA and
** credentials from files relative to the kubeconfig or inline base64, a
** token file, and every refusal naming its key.
*/
#include <stdlib.h>
#include <unistd.h>

#include "base64.h"
#include "kubevirt.h"
#include "task.h"

static char dir[] = "/tmp/orr-kubeconfig-XXXXXX";

static void put(const char *name, const char *text) {
  char path[256];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs(text, f);
  fclose(f);
}

static int parse(const char *yaml, const char *context, orr_kv_kubeconfig *kc,
                 orr_error *e) {
  return orr__kv_kubeconfig_parse(yaml, strlen(yaml), dir, context, kc, e);
}

static void test_contexts(void) {
  orr_kv_kubeconfig kc;
  orr_error e = {0, ""};
  char *b64 = orr__b64_encode("-----BEGIN CERTIFICATE-----\nxyz\n", 32);
  char yaml[4096];
  snprintf(yaml, sizeof yaml,
           "apiVersion: v1\n"
           "kind: Config\n"
           "current-context: lab\n"
           "clusters:\n"
           "- name: lab-cluster\n"
           "  cluster:\n"
           "    server: https://10.0.0.1:6443/\n"
           "    certificate-authority: ca.pem\n"
           "- name: prod-cluster\n"
           "  cluster:\n"
           "    server: https://api.prod.example:443\n"
           "    certificate-authority-data: %s\n"
           "contexts:\n"
           "- name: lab\n"
           "  context: {cluster: lab-cluster, user: tok, namespace: vms}\n"
           "- name: prod\n"
           "  context: {cluster: prod-cluster, user: cert}\n"
           "users:\n"
           "- name: tok\n"
           "  user:\n"
           "    tokenFile: token\n"
           "- name: cert\n"
           "  user:\n"
           "    client-certificate: client.pem\n"
           "    client-key: %s/client.key\n",
           b64, dir);
  free(b64);
  ASSERT_OK(parse(yaml, NULL, &kc, &e));
  ASSERT_STR_EQ(kc.server, "https://10.0.0.1:6443");
  ASSERT_STR_EQ(kc.ns, "vms");
  ASSERT_STR_EQ(kc.context, "lab");
  ASSERT_STR_EQ(kc.ca, "CA PEM\n");
  ASSERT_STR_EQ(kc.token, "s3cret"); /* the newline is gone */
  ASSERT_NULL(kc.cert);
  orr__kv_kubeconfig_free(&kc);
  ASSERT_OK(parse(yaml, "prod", &kc, &e));
  ASSERT_STR_EQ(kc.server, "https://api.prod.example:443");
  ASSERT_STR_EQ(kc.ns, "default");
  ASSERT_EQ(kc.ca_len, 32);
  ASSERT(memcmp(kc.ca, "-----BEGIN CERTIFICATE-----\nxyz\n", 32) == 0);
  ASSERT_STR_EQ(kc.cert, "CLIENT PEM\n");
  ASSERT_STR_EQ(kc.key, "KEY PEM\n");
  ASSERT_NULL(kc.token);
  orr__kv_kubeconfig_free(&kc);
  ASSERT_ERR(parse(yaml, "staging", &kc, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "no context named \"staging\"");
}

static void refuse(const char *yaml, int code, const char *words) {
  orr_kv_kubeconfig kc;
  orr_error e = {0, ""};
  ASSERT_ERR(parse(yaml, NULL, &kc, &e), code);
  if (strstr(e.msg, words) == NULL)
    TEST_FAIL_("\"%s\" does not say \"%s\"", e.msg, words);
  ASSERT_NULL(kc.server); /* nothing half-filled */
}

#define HEAD                                                                   \
  "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: "   \
  "u}\nclusters:\n- name: k\n  cluster:\n"

static void test_refusals(void) {
  refuse(HEAD "    server: http://10.0.0.1:8080\nusers: []\n", ORR_EINVAL,
         "clusters[k].server: must be an https:// URL");
  refuse(HEAD "    server: https://x:6443\n    insecure-skip-tls-verify: "
              "true\nusers: []\n",
         ORR_EINVAL, "clusters[k].insecure-skip-tls-verify");
  refuse(HEAD "    server: https://x:6443\nusers:\n- name: u\n  user:\n    "
              "exec: {command: aws}\n",
         ORR_ENOTSUP, "users[u].exec");
  refuse(HEAD "    server: https://x:6443\nusers:\n- name: u\n  user:\n    "
              "client-certificate: client.pem\n",
         ORR_EINVAL, "client-certificate and client-key go together");
  refuse(HEAD "    server: https://x:6443\n    certificate-authority: "
              "missing.pem\nusers: []\n",
         ORR_EINVAL, "clusters[k].certificate-authority: cannot open");
  refuse(HEAD "    server: https://x:6443\n    certificate-authority-data: "
              "abc$def\nusers: []\n",
         ORR_EINVAL, "certificate-authority-data: not base64");
  refuse("current-context: c\ncontexts: [}", ORR_EINVAL, "kubeconfig:");
  refuse("- just\n- a list\n", ORR_EINVAL, "not a mapping");
  refuse(HEAD "    server: https://x:6443\nusers: []\n", ORR_EINVAL,
         "no user named \"u\"");
}

static void test_load_file(void) {
  orr_kv_kubeconfig kc;
  orr_error e = {0, ""};
  char path[256];
  put("config", HEAD "    server: https://127.0.0.1:1\n    "
                     "certificate-authority: ca.pem\nusers:\n- name: u\n  "
                     "user: {token: abc}\n");
  snprintf(path, sizeof path, "%s/config", dir);
  ASSERT_OK(orr__kv_kubeconfig_load(path, NULL, &kc, &e));
  ASSERT_STR_EQ(kc.ca, "CA PEM\n"); /* relative to the file's directory */
  ASSERT_STR_EQ(kc.token, "abc");
  orr__kv_kubeconfig_free(&kc);
  snprintf(path, sizeof path, "%s/nope", dir);
  ASSERT_ERR(orr__kv_kubeconfig_load(path, NULL, &kc, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "nope");
}

static void remove_dir(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
  ASSERT_NOT_NULL(mkdtemp(dir));
  atexit(remove_dir); /* a failed check exits: the files go too */
  put("ca.pem", "CA PEM\n");
  put("token", "s3cret\n");
  put("client.pem", "CLIENT PEM\n");
  put("client.key", "KEY PEM\n");
  test_contexts();
  test_refusals();
  test_load_file();
  printf("ok\n");
  return 0;
}
