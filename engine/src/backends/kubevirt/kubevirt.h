/*
** The kubevirt backend's parts, each usable on its own until the backend
** seam exists (docs/kubevirt.md has the mapping and the transport):
**
**   kv_schema.c    KubeVirt's v1 OpenAPI schema (compact, compiled in) and
**                  the checks of objects, JSON Patches and API requests
**   kv_source.c    cluster sources (pvc:, dv:, containerdisk:, ...) for the
**                  host paths and endpoints a document names
**   kv_xlate.c     boot-time document -> kubevirt.io/v1 VirtualMachine
**   kv_modify.c    ModifySettingRequest and lifecycle verbs -> API requests
**   kv_status.c    VirtualMachineInstance status + document -> live document
**   kv_plan.c      the `orrery plan --backend kubevirt` entry of one VM
**   kv_kubeconfig.c  kubeconfig (libyaml): server, CA, credentials, namespace
**   kv_http.c      HTTPS on a libuv loop through libcurl's multi-socket API
**   kv_client.c    the API client: retries with backoff, deadlines, 409s
**                  resolved by resourceVersion, Status errors -> orr codes
**   kv_watch.c     the VMI watch: JSON lines, resumed from the last
**                  resourceVersion when it drops
**
** A request is a JSON object {"method", "path", "body"?}: path is the API
** path with its query, body the JSON the API takes (absent for GET and
** DELETE). Every request and object made here passes orr__kv_check_request
** / orr__kv_check in the tests.
**
** Errors: ORR_EINVAL names the field and the rule (a bad value, a host path
** without a cluster source); ORR_ENOTSUP names the field KubeVirt cannot
** express and says why.
*/
#ifndef ORR_BACKENDS_KUBEVIRT_H
#define ORR_BACKENDS_KUBEVIRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "orrery/error.h"

/* ---------------------------------------------------------------------- */
/* Schema (kv_schema.c)                                                   */
/* ---------------------------------------------------------------------- */

/* The compact schema: {"source": {...version, commit}, "definitions": {...},
** "operations": [...]}. Parsed once, on first use; borrowed. */
const json_t *orr__kv_schema(void);
/* Frees the parsed schema (tests, for leak checkers). */
void orr__kv_schema_release(void);

/* Checks v against definition `def` ("v1.VirtualMachine"); `where` names v
** in the message ("manifest" -> "manifest.spec.template...: ..."). */
int orr__kv_check(const char *def, const json_t *v, const char *where,
                  orr_error *e);
/* Checks a JSON Patch (RFC 6902 array) whose target is a `def` object: ops
** add/remove/replace/test, every path a field of def, every value valid. */
int orr__kv_check_patch(const char *def, const json_t *ops, const char *where,
                        orr_error *e);
/* Checks a request: method and path are an operation of the schema, the
** query names only parameters it takes, the body is valid for it. */
int orr__kv_check_request(const json_t *req, orr_error *e);

/* A DNS-1123 name of at most max characters (63: label; 253: subdomain
** without upper case). */
int orr__kv_valid_name(const char *s, size_t max);

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */
/* ---------------------------------------------------------------------- */

typedef struct {
  const char *name;      /* the VirtualMachine's name: a DNS-1123 label */
  const char *ns;        /* its namespace: a DNS-1123 label */
  const json_t *sources; /* object: host path / endpoint / device instance
                         ** path of the document -> cluster source text
                         ** (kv_source.c); may be NULL */
} orr_kv_config;

/* ---------------------------------------------------------------------- */
/* Cluster sources (kv_source.c)                                          */
/* ---------------------------------------------------------------------- */

typedef enum {
  ORR_KV_PVC,           /* pvc:NAME          persistentVolumeClaim */
  ORR_KV_DV,            /* dv:NAME           dataVolume */
  ORR_KV_CONTAINERDISK, /* containerdisk:IMAGE[#/PATH/IN/IMAGE] */
  ORR_KV_POD,           /* pod               the pod network (endpoints) */
  ORR_KV_MULTUS,        /* multus:[NS/]NAME  a NetworkAttachmentDefinition */
  ORR_KV_HOSTDEVICE,    /* hostdevice:RESOURCE  a permitted host device */
} orr_kv_source_kind;

typedef struct {
  orr_kv_source_kind kind;
  char ref[256];  /* the claim, DataVolume, image, network or resource */
  char path[256]; /* containerdisk: the file inside the image, or "" */
} orr_kv_source;

/* Parses source text. ORR_EINVAL (message: `field` and the rule) for
** anything but the forms above with a valid name. */
int orr__kv_source_parse(const char *text, const char *field,
                         orr_kv_source *out, orr_error *e);

/*
** The cluster source for a string of the document (`value`, found at
** `field`): cfg->sources[value] parsed, or value itself when it already is
** a source ("pvc:data"). `allowed` is a bit set of (1u << kind); another
** kind is ORR_ENOTSUP when KubeVirt cannot use it there, a string without
** a source is ORR_EINVAL naming the field.
*/
int orr__kv_source_for(const orr_kv_config *cfg, const char *value,
                       const char *field, unsigned allowed, orr_kv_source *out,
                       orr_error *e);

/* ---------------------------------------------------------------------- */
/* Translation (kv_xlate.c)                                               */
/* ---------------------------------------------------------------------- */

/* The names the backend gives what it creates; the live document is read
** back through them, so they are fixed. Returned by value. */
typedef struct {
  char s[64];
} orr_kv_name;
orr_kv_name orr__kv_disk_name(int ctrl, int lun);   /* "scsi-<c>-<lun>" */
orr_kv_name orr__kv_nic_name(const char *guid);     /* "nic-<guid>" */
orr_kv_name orr__kv_hostdev_name(const char *guid); /* "pci-<guid>" */
/* The inverse of orr__kv_disk_name; -1 if name is not one. */
int orr__kv_disk_from_name(const char *name, int *ctrl, int *lun);

/*
** Translates a validated boot-time document into a kubevirt.io/v1
** VirtualMachine (runStrategy Manual: created, not started, as HCS's
** create). *ignored: a JSON array of the advisory document fields present
** that KubeVirt has no use for. Both NULL on error.
*/
int orr__kv_manifest(const json_t *doc, const orr_kv_config *cfg, json_t **vm,
                     json_t **ignored, orr_error *e);

/* The disk and volume of one SCSI attachment; hotplug: the volume is
** marked hotpluggable and must be a pvc or dv. `field` names att. */
int orr__kv_disk(int ctrl, int lun, const json_t *att, const char *field,
                 const orr_kv_config *cfg, bool hotplug, json_t **disk,
                 json_t **volume, orr_error *e);

/* The interface and network of one NetworkAdapter. */
int orr__kv_nic(const char *guid, const json_t *nic, const char *field,
                const orr_kv_config *cfg, bool hotplug, json_t **iface,
                json_t **network, orr_error *e);

/* ---------------------------------------------------------------------- */
/* Requests (kv_modify.c)                                                 */
/* ---------------------------------------------------------------------- */

typedef enum {
  ORR_KV_CREATE,    /* POST the manifest */
  ORR_KV_START,     /* VM start subresource */
  ORR_KV_STOP,      /* VM stop, graceful (grace_s) */
  ORR_KV_TERMINATE, /* VM stop with gracePeriod 0 */
  ORR_KV_RESTART,   /* VM restart */
  ORR_KV_PAUSE,     /* VMI pause */
  ORR_KV_UNPAUSE,   /* VMI unpause */
  ORR_KV_MIGRATE,   /* VM migrate (to: "" or "node:NAME") */
  ORR_KV_DELETE,    /* DELETE the VirtualMachine */
  ORR_KV_GET_VM,    /* GET the VirtualMachine */
  ORR_KV_GET_VMI,   /* GET the VirtualMachineInstance */
} orr_kv_verb;

/* Options of a verb; zero is the default. */
typedef struct {
  const json_t *manifest; /* ORR_KV_CREATE */
  long grace_s;           /* ORR_KV_STOP: seconds the guest gets */
  const char *to;         /* ORR_KV_MIGRATE */
} orr_kv_verb_opts;

/* The request of a lifecycle verb. ORR_EINVAL for a bad option. */
int orr__kv_verb(const orr_kv_config *cfg, orr_kv_verb verb,
                 const orr_kv_verb_opts *opts, json_t **req, orr_error *e);

/* The API path of the VM ("vm"), the VMI ("vmi"), the VMI collection
** ("vmis"), or a VM / VMI subresource ("vm/start", "vmi/pause"). */
int orr__kv_path(const orr_kv_config *cfg, const char *what, char *buf,
                 size_t size);

/*
** Plans a run-time change (a normalized ModifySettingRequest the core has
** already checked against the live document) as API requests:
**   {"do":[{"method","path","body", "undo": request | null}, ...]}
** Run "do" in order; when step i fails, run the undos of steps i-1..0.
** `vm` is the VirtualMachine as last read (or the manifest): steps that
** edit its spec are JSON Patches with indices taken from it, so when one
** answers 409 the caller reads the VM again and plans again
** (orr__kv_client_apply does).
*/
int orr__kv_plan_modify(const json_t *live_doc, const json_t *vm,
                        const json_t *request, const orr_kv_config *cfg,
                        json_t **plan, orr_error *e);

/* ---------------------------------------------------------------------- */
/* Live document and state (kv_status.c)                                  */
/* ---------------------------------------------------------------------- */

/*
** The live document as the VirtualMachineInstance reports it: SCSI
** attachments whose volume the VMI no longer has leave it, hot-plugged
** volumes the VMI reports Ready whose source maps back to a document path
** join it, NICs the VMI dropped leave it, Memory.SizeInMB and
** Processor.Count follow status.memory.guestCurrent and
** status.currentCPUTopology. *changed says whether anything moved.
*/
int orr__kv_follow_status(const json_t *doc, const json_t *vmi,
                          const orr_kv_config *cfg, json_t **out, bool *changed,
                          orr_error *e);

/* The HCS state of a VMI object ("Running", "Paused", "Stopped", "Created"
** while it is being scheduled); vmi NULL: "Created" (no VMI yet). */
const char *orr__kv_vmi_state(const json_t *vmi);

/* ---------------------------------------------------------------------- */
/* Plan output (kv_plan.c)                                                */
/* ---------------------------------------------------------------------- */

/*
** The `kubevirt` entry of one VM in `orrery plan --backend kubevirt`:
**   {"manifest": <VirtualMachine>, "requests": [create request],
**    "ignored": [...]}
** orr__kv_plan_record appends the requests of a later verb or change and
** keeps "manifest" as the VM would then be (JSON Patch steps applied), so
** the next change is planned against it.
*/
int orr__kv_plan_new(const json_t *doc, const orr_kv_config *cfg,
                     json_t **entry, orr_error *e);
int orr__kv_plan_record(json_t *entry, const json_t *requests, orr_error *e);

/* Applies a JSON Patch (add/remove/replace/test) to a copy of obj. */
int orr__kv_json_patch(const json_t *obj, const json_t *ops, json_t **out,
                       orr_error *e);

/* ---------------------------------------------------------------------- */
/* kubeconfig (kv_kubeconfig.c)                                           */
/* ---------------------------------------------------------------------- */

typedef struct {
  char *server; /* https://host:port (no trailing slash) */
  char *ca;     /* PEM bytes of the CA (certificate-authority[-data]) */
  size_t ca_len;
  char *cert; /* PEM client certificate, or NULL */
  size_t cert_len;
  char *key; /* PEM client key, or NULL */
  size_t key_len;
  char *token;   /* bearer token (token or tokenFile), or NULL */
  char *ns;      /* the context's namespace, or "default" */
  char *context; /* the context used */
} orr_kv_kubeconfig;

/* Reads a kubeconfig file; context NULL: current-context. Relative file
** names in it are relative to the file's directory. ORR_EINVAL names the
** key and the rule; insecure-skip-tls-verify is refused. */
int orr__kv_kubeconfig_load(const char *path, const char *context,
                            orr_kv_kubeconfig *out, orr_error *e);
/* The same from YAML text; dir resolves relative file names. */
int orr__kv_kubeconfig_parse(const char *text, size_t len, const char *dir,
                             const char *context, orr_kv_kubeconfig *out,
                             orr_error *e);
void orr__kv_kubeconfig_free(orr_kv_kubeconfig *kc);

/* ---------------------------------------------------------------------- */
/* HTTPS on the loop (kv_http.c)                                          */
/* ---------------------------------------------------------------------- */

typedef struct orr_kv_http orr_kv_http;
typedef struct orr_kv_xfer orr_kv_xfer;

/* The TLS identity and the server; the strings are copied. */
typedef struct {
  const char *ca;
  size_t ca_len;
  const char *cert;
  size_t cert_len;
  const char *key;
  size_t key_len;
  const char *token;
} orr_kv_tls;

/* status: 0 with the HTTP code and the whole body, or ORR_ETIMEDOUT /
** ORR_EIO (connection, TLS) with a message in err and code 0. body is
** valid during the call only. */
typedef void (*orr_kv_http_cb)(void *arg, int status, long code,
                               const char *body, size_t len,
                               const orr_error *err);
/* Streaming transfers: each chunk of the body as it arrives; return
** non-zero to abort the transfer (its callback then gets ORR_ECANCELED). */
typedef int (*orr_kv_http_chunk_cb)(void *arg, const char *data, size_t len);

int orr__kv_http_new(uv_loop_t *loop, const orr_kv_tls *tls, orr_kv_http **out,
                     orr_error *e);
/*
** Starts a transfer: method, url, content type of body (or NULL), body (or
** NULL), timeout_ms (0: none, for watches). chunk_cb non-NULL streams the
** body to it instead of collecting it. cb is called exactly once, from the
** loop, never from inside this call. NULL (and no callback) when the
** transfer cannot be set up (out of memory, the handle closing).
*/
orr_kv_xfer *orr__kv_http_start(orr_kv_http *h, const char *method,
                                const char *url, const char *content_type,
                                const char *body, uint64_t timeout_ms,
                                orr_kv_http_chunk_cb chunk_cb,
                                orr_kv_http_cb cb, void *arg);
/* Aborts a transfer: its cb runs (from the loop) with ORR_ECANCELED. */
void orr__kv_http_cancel(orr_kv_xfer *x);
/* Cancels every transfer (their callbacks run from the loop, with
** ORR_ECANCELED) and closes the handles; done_cb once they are closed (the
** loop must run). May be called from inside any callback. */
void orr__kv_http_close(orr_kv_http *h, void (*done_cb)(void *), void *arg);

/* ---------------------------------------------------------------------- */
/* API client (kv_client.c)                                               */
/* ---------------------------------------------------------------------- */

typedef struct orr_kv_client orr_kv_client;

typedef struct {
  uint64_t timeout_ms;     /* deadline of a whole call, retries included;
                           ** 0: 30 s */
  uint64_t attempt_ms;     /* deadline of one attempt; 0: 10 s */
  int max_attempts;        /* 5xx, 429 and connection failures; 0: 6 */
  uint64_t backoff_ms;     /* first retry delay, doubled each time; 0: 100 */
  uint64_t backoff_max_ms; /* 0: 3000 */
} orr_kv_retry;

/* The result of a call: status 0 and the decoded answer (may be NULL for
** an empty body), or an orr code with the API server's own message:
** 404 ENOENT, 409 EEXIST (create) / EBUSY (conflict not resolved), 422 and
** 400 EINVAL, 401/403 EPERM, other 4xx EBACKEND, 5xx after the last retry
** EBACKEND, deadline ETIMEDOUT. */
typedef void (*orr_kv_result_cb)(void *arg, int status, json_t *answer,
                                 const orr_error *err);

/* Plans a request again against the VirtualMachine as just read (for a
** 409); returns the new request or NULL with e set. */
typedef json_t *(*orr_kv_replan_fn)(void *arg, const json_t *vm, orr_error *e);

int orr__kv_client_new(uv_loop_t *loop, const orr_kv_kubeconfig *kc,
                       const orr_kv_retry *retry, orr_kv_client **out,
                       orr_error *e);
/* Sends one request (orr__kv_verb, a step of orr__kv_plan_modify: its
** "undo" key is ignored) with retries. cb runs exactly once, from the loop;
** only a request that cannot be sent at all (no method or path, the client
** closing, out of memory) calls it from inside this call. */
void orr__kv_client_send(orr_kv_client *c, const json_t *req,
                         orr_kv_result_cb cb, void *arg);
/*
** Sends req; when it answers 409 Conflict, reads the object at vm_path,
** calls replan with it and sends what replan returns, up to
** max_attempts times. (A patch from orr__kv_plan_modify carries the
** resourceVersion it was planned against, so a VM that changed in between
** answers 409 rather than taking a patch meant for another version.)
*/
void orr__kv_client_apply(orr_kv_client *c, const json_t *req,
                          const char *vm_path, orr_kv_replan_fn replan,
                          void *replan_arg, orr_kv_result_cb cb, void *arg);
/* Counters for tests and `orrery doctor`: attempts sent, retries after a
** 5xx/429/connection failure, 409s resolved by re-reading. */
typedef struct {
  unsigned sent, retried, conflicts;
} orr_kv_stats;
void orr__kv_client_stats(const orr_kv_client *c, orr_kv_stats *out);
uv_loop_t *orr__kv_client_loop(orr_kv_client *c);
/* The API server base URL ("https://127.0.0.1:6443"). */
const char *orr__kv_client_server(const orr_kv_client *c);
orr_kv_http *orr__kv_client_http(orr_kv_client *c);
void orr__kv_client_close(orr_kv_client *c, void (*done_cb)(void *), void *arg);

/* ---------------------------------------------------------------------- */
/* VMI watch (kv_watch.c)                                                 */
/* ---------------------------------------------------------------------- */

typedef struct orr_kv_watch orr_kv_watch;

/* type: "ADDED", "MODIFIED", "DELETED" (object: the VMI, borrowed; NULL for
** a DELETED found by re-reading), or "ERROR" (the watch gave up: object
** NULL, err set). */
typedef void (*orr_kv_watch_cb)(void *arg, const char *type,
                                const json_t *object, const orr_error *err);

/*
** Watches the VMI named cfg->name: GET .../virtualmachineinstances
** ?watch=true&fieldSelector=metadata.name=NAME&resourceVersion=RV. When the
** stream ends or drops it reconnects after a backoff, from the last
** resourceVersion seen (bookmarks included); a 410 Gone restarts from the
** current object (GET, delivered as MODIFIED). rv may be NULL or "".
*/
int orr__kv_watch_start(orr_kv_client *c, const orr_kv_config *cfg,
                        const char *rv, orr_kv_watch_cb cb, void *arg,
                        orr_kv_watch **out, orr_error *e);
/* Connections made (1 + reconnections), for tests. */
unsigned orr__kv_watch_connects(const orr_kv_watch *w);
/* Stops the watch; no callback after this returns. Stop every watch of a
** client before closing the client. */
void orr__kv_watch_stop(orr_kv_watch *w);

#endif
