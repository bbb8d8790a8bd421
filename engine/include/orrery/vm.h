/*
** The VM manager: a VM created from a compute system document on a backend
** ("qemu": a real qemu-system-x86_64 driven over QMP; "plan": a dry run that
** records what it would send). Lifecycle and run-time changes are
** asynchronous requests on the engine's loop.
**
** Contract for every call taking an orr_vm_cb: the callback runs exactly
** once, from the loop, never from inside the call. status is 0 or an ORR_*
** code; err (never NULL) carries the message; result is borrowed (may be
** NULL): json_incref() it to keep it.
*/
#ifndef ORRERY_VM_H
#define ORRERY_VM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "orrery/error.h"

/* Files in a VM's runtime directory that other tools read: the journal of
** a VM that outlives its engine, and the mark of one whose state on disk
** lags behind a change that could not be rolled back (its text says why;
** orrery doctor lists it). */
#define ORR_VM_STATE_FILE "state.json"
#define ORR_VM_NOT_DURABLE_FILE "not-durable"

/*
** The runtime root, under which each VM has its directory <root>/<id>:
** $ORRERY_RUNTIME_DIR, else $XDG_RUNTIME_DIR/orrery, else /run/orrery for
** root, else /tmp/orrery-<uid> (relative values are ignored). Kept short,
** because socket paths live below it. Written into buf (truncated to len);
** returns buf. The engine, orrery doctor and orrery ps all use this one.
*/
ORR_API const char *orr_runtime_root(char *buf, size_t len);

typedef struct orr_engine orr_engine;
typedef struct orr_vm orr_vm;

typedef void (*orr_vm_cb)(void *arg, int status, const orr_error *err,
                          json_t *result);

/*
** Events: "state" {State, Previous}, "exit" {ExitCode, Signal, Reason},
** "device_deleted" {Device, ResourcePath}, "console" {Port, Line} (a line
** a COM port printed, without its line end; see orr_vm_console_*),
** "unresponsive" {Command, TimeoutMs}: a QMP command missed its deadline;
** "responsive" {Command, UnresponsiveMs}: QEMU answered again;
** "settled" {ResourcePath (a change) or Command (start, pause, resume,
** qmp), Outcome}: a call whose caller got ORR_ETIMEDOUT was settled once
** QEMU answered, Outcome "committed" (QEMU did all of it: the live
** document or state has it), "rolled back" (not done: what QEMU did of it
** was undone) or "pending" (a removal QEMU accepted: it completes at the
** device's DEVICE_DELETED, as one that timed out waiting for it).
** data is borrowed.
*/
typedef void (*orr_vm_event_cb)(void *arg, orr_vm *vm, const char *event,
                                json_t *data);

/*
** Deadlines. Every call that waits on QEMU has one: the caller's
** timeout_ms, or when that is 0 the default below for its kind, and every
** QMP command the engine sends carries what is left of it (commands sent
** on no caller's behalf: ORR_VM_TIMEOUT_MS). A QEMU that misses it fails
** the call with ORR_ETIMEDOUT, and the VM is unresponsive (event,
** properties) until QEMU answers again.
*/
#define ORR_VM_TIMEOUT_MS 10000       /* start, pause, resume, modify, qmp */
#define ORR_VM_SAVE_TIMEOUT_MS 300000 /* save, migration included */
/* terminate, close, shutdown: quit, then SIGKILL */
#define ORR_VM_QUIT_GRACE_MS 3000

/* The engine owns the loop (or borrows the caller's) and every VM. */
ORR_API int orr_engine_new(uv_loop_t *loop, orr_engine **out, orr_error *e);
ORR_API uv_loop_t *orr_engine_loop(orr_engine *eng);
/* Terminates VMs that terminate on last handle close, waits (running the
** loop, bounded) until their processes are gone, and frees everything. Must
** not be called from a loop callback. */
ORR_API void orr_engine_free(orr_engine *eng);
/* Every event of every VM on the engine, closed ones included, before the
** VM's own subscriber gets it (orrery run --events); NULL removes it. */
ORR_API void orr_engine_on_event(orr_engine *eng, orr_vm_event_cb cb,
                                 void *arg);
/* Number of VMs the engine still holds (closed ones included until their
** process is gone). */
ORR_API int orr_engine_vm_count(const orr_engine *eng);

typedef struct {
  const char *backend; /* "qemu" (default), "plan" or "kubevirt" */
  const char *accel;   /* "auto" (default), "kvm" or "tcg" */
  int hotplug_ports;   /* free root ports for hot-adds; 0: 16 */
  int guest_agent;     /* 1 add the qemu-ga port, 0 not, -1 (default)
                          when the document boots the default guest */
  const char *restore; /* saved state file to restore from, or NULL */
  /* Templates (qemu; the Lua library's orrery.template drives them). With
  ** template_ram set the VM's RAM lives in that file and the VM has a VM
  ** generation id device with a GUID of its own (a clone's is new, so the
  ** guest kernel reseeds its random generator). template_boot 1: this VM
  ** is the template: its RAM is written through to the file and a save
  ** leaves it out of the state (x-ignore-shared). 0: a clone of it: the
  ** file is mapped private (copy-on-write), restore names the template's
  ** saved state, loaded with x-ignore-shared. Not with NUMA. */
  const char *template_ram;
  int template_boot;
  const char *qemu_binary; /* NULL: qemu-system-x86_64 */
  const char *runtime_dir; /* NULL: <runtime root>/<id> */
  uint64_t timeout_ms;     /* create's deadline for the QMP handshake and,
                              with restore, for QEMU to load the state;
                              0: 10 s for the one, 60 s for the other.
                              Missed: ORR_ETIMEDOUT naming what QEMU did
                              not reach, and QEMU is killed */
  /* The kubevirt backend's (docs/kubevirt.md); refused on the others, as
  ** the qemu backend's restore, qemu_binary and runtime_dir are on it
  ** (accel, hotplug_ports and guest_agent are QEMU's and ignored there). */
  const char *kubeconfig;     /* the kubeconfig file; NULL:
                                 $ORRERY_KUBECONFIG, else $KUBECONFIG, else
                                 ~/.kube/config */
  const char *kube_namespace; /* NULL: the kubeconfig context's */
  const json_t *sources;      /* {document path or endpoint: cluster source}
                                 (pvc:, dv:, containerdisk:, pod, multus:,
                                 hostdevice:); borrowed during the call */
  int dry_run;                /* kubevirt: record every API request it would
                                 send and answer as an obedient cluster
                                 (`orrery plan --backend kubevirt`); no
                                 kubeconfig is read, nothing is sent */
  uint64_t memory_max_mb;     /* memory the VM may grow to at run time (MiB,
                                 above Memory.SizeInMB: virtio-mem); 0: none,
                                 update_memory only shrinks (balloon) */
} orr_vm_options;

ORR_API void orr_vm_options_init(orr_vm_options *o);

/*
** Creates the VM, not started: for qemu, QEMU runs paused (-S) with QMP
** connected. The document is checked whole first. Errors found before any
** process is started are returned here (and cb never runs); otherwise 0 is
** returned, *out is set, and cb reports the outcome (on failure the VM is
** already torn down: just orr_vm_close() it).
*/
ORR_API int orr_vm_create(orr_engine *eng, const char *id, const json_t *doc,
                          const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                          orr_vm **out, orr_error *e);

/*
** Re-attaches to a qemu VM another engine process created with
** ShouldTerminateOnLastHandleClosed = false, from its runtime directory
** (opts->runtime_dir, else <runtime root>/<id>): its live document,
** pending unplugs and state as QEMU reports it, with every change the
** journal shows in flight settled against QEMU (adopted when complete,
** undone otherwise). Nothing in the directory is created or changed before
** it is trusted: the directory must pass create's rules and be 0700, and
** state.json be ours, 0600, and valid in every field; the process it
** names must be proved to be this VM's QEMU (start time, command line,
** owner) before anything is sent to it. Errors found at once are returned:
** ORR_ENOENT (no such VM, or it is not running), ORR_EBUSY (another
** process has it open: one owner at a time), ORR_EPERM (a directory or
** file that is not trusted), ORR_EINVAL (a state file that does not hold,
** naming the field); otherwise cb reports the outcome as for create.
*/
ORR_API int orr_vm_open(orr_engine *eng, const char *id,
                        const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                        orr_vm **out, orr_error *e);

/*
** Kills VM id's process without talking to it, for a VM whose QEMU does
** not answer (stopped with SIGSTOP, hung, its QMP socket gone), which
** orr_vm_open cannot take. As orr_vm_open: the runtime directory is checked
** and locked (ORR_EBUSY while another engine holds the VM: it is that
** engine's to end), state.json must be trusted, and the pid it records
** must be proved to be this VM's QEMU (start time, owner, command line;
** ORR_EPERM naming the check, and nothing is signalled) before SIGKILL is
** sent through a pidfd, which cannot reach a later process with the same
** pid. ORR_ENOENT: no such VM, or its process is already gone. Once the
** process has exited its runtime directory is cleared as after any exit
** and cb gets {ExitCode = null, Signal = 9, Reason}; ORR_ETIMEDOUT when it
** has not exited within opts->timeout_ms (0: 10 s). The engine must not be
** freed before cb.
*/
ORR_API int orr_vm_kill_id(orr_engine *eng, const char *id,
                           const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                           orr_error *e);

/* timeout_ms 0: ORR_VM_TIMEOUT_MS. A pause or resume that timed out may
** still happen when QEMU answers: the state then follows. */
ORR_API void orr_vm_start(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb,
                          void *arg);
ORR_API void orr_vm_pause(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb,
                          void *arg);
ORR_API void orr_vm_resume(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb,
                           void *arg);
/* options: {SaveStateFilePath = "/abs/path"}; the VM must be paused.
** timeout_ms (0: ORR_VM_SAVE_TIMEOUT_MS) bounds the whole save; at the
** deadline the migration is cancelled (the file is left as it is). */
ORR_API void orr_vm_save(orr_vm *vm, const json_t *options, uint64_t timeout_ms,
                         orr_vm_cb cb, void *arg);
/* ACPI power-down; after timeout_ms (0: 10 s), or at once when QEMU does
** not answer system_powerdown in that time, as terminate. result is the
** exit info. */
ORR_API void orr_vm_shutdown(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb,
                             void *arg);
/* quit, then SIGKILL when QEMU has not exited ORR_VM_QUIT_GRACE_MS later
** (a stopped or hung QEMU too); result is the exit info. */
ORR_API void orr_vm_terminate(orr_vm *vm, orr_vm_cb cb, void *arg);
/* Completes when the VM's process is gone; result {ExitCode, Signal,
** Reason}. timeout_ms 0: no deadline (an exit is not a QMP answer);
** otherwise ORR_ETIMEDOUT if the VM still runs then. */
ORR_API void orr_vm_wait(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb,
                         void *arg);

/*
** A run-time change as an HCS ModifySettingRequest {ResourcePath,
** RequestType, Settings}. options may hold timeout_ms, the deadline of the
** whole change (default ORR_VM_TIMEOUT_MS), a removal's wait for the guest
** to let go of the device (PCI unplug) included. The live document changes
** only on success, with one exception: a change whose caller got
** ORR_ETIMEDOUT because QEMU stopped answering is in doubt until QEMU
** answers (its resource stays busy, properties list it under InDoubt);
** then it is committed if QEMU did all of it, else rolled back, and a
** "settled" event says which.
*/
ORR_API void orr_vm_modify(orr_vm *vm, const json_t *request,
                           const json_t *options, orr_vm_cb cb, void *arg);

/*
** External disk snapshots of a running (or paused) VM. snapshot: a new
** qcow2 overlay at options "overlay" (an absolute path where nothing is;
** its header names the current top image and format) goes over the disk's
** current top, and the live document's attachment Path names it. The
** disk's top must be raw or qcow2; at most 8 overlays. disks:
** {"<controller>-<lun>": overlay, ...} at one point in time (one
** transaction). commit: the top overlay is merged into the image below it,
** the Path names that image again; "block_job" events {Job, Status, Offset,
** Len} report progress; the overlay file stays (the caller's). Options
** {timeout_ms} (0: 10 s for a snapshot, 300 s for a commit; a commit past
** it is cancelled and the overlay stays the top).
*/
ORR_API void orr_vm_snapshot_disk(orr_vm *vm, int controller, int lun,
                                  const json_t *options, orr_vm_cb cb,
                                  void *arg);
ORR_API void orr_vm_snapshot_disks(orr_vm *vm, const json_t *disks,
                                   const json_t *options, orr_vm_cb cb,
                                   void *arg);
ORR_API void orr_vm_commit_disk(orr_vm *vm, int controller, int lun,
                                const json_t *options, orr_vm_cb cb,
                                void *arg);

/*
** Typed run-time changes: each builds the ModifySettingRequest hcsshim sends
** for it and runs it through orr_vm_modify() (same checks, undo, journal and
** deadline; timeout_ms 0: ORR_VM_TIMEOUT_MS). JSON arguments are borrowed
** (copied). An argument that names no resource (controller outside 0..3, a
** NULL GUID, settings that are not an object) fails with ORR_EINVAL through
** cb, like every other refusal.
*/
/* Scsi/<controller GUID>/Attachments/<lun>: attachment {Type, Path, ...} */
ORR_API void orr_vm_add_scsi_disk(orr_vm *vm, int controller, int lun,
                                  const json_t *attachment, uint64_t timeout_ms,
                                  orr_vm_cb cb, void *arg);
ORR_API void orr_vm_remove_scsi_disk(orr_vm *vm, int controller, int lun,
                                     uint64_t timeout_ms, orr_vm_cb cb,
                                     void *arg);
/* VirtualPci/<guid>: device {Functions = [{DeviceInstancePath, ...}]} */
ORR_API void orr_vm_add_vpci_device(orr_vm *vm, const char *guid,
                                    const json_t *device, uint64_t timeout_ms,
                                    orr_vm_cb cb, void *arg);
ORR_API void orr_vm_remove_vpci_device(orr_vm *vm, const char *guid,
                                       uint64_t timeout_ms, orr_vm_cb cb,
                                       void *arg);
/* NetworkAdapters/<guid>: adapter {EndpointId, MacAddress, ...} */
ORR_API void orr_vm_add_nic(orr_vm *vm, const char *guid, const json_t *adapter,
                            uint64_t timeout_ms, orr_vm_cb cb, void *arg);
ORR_API void orr_vm_update_nic(orr_vm *vm, const char *guid,
                               const json_t *adapter, uint64_t timeout_ms,
                               orr_vm_cb cb, void *arg);
ORR_API void orr_vm_remove_nic(orr_vm *vm, const char *guid,
                               uint64_t timeout_ms, orr_vm_cb cb, void *arg);
/* Plan9/Shares: share {Name, AccessName, Path, Port, ...} (add is refused
** by the qemu backend: ORR_ENOTSUP) */
ORR_API void orr_vm_add_plan9_share(orr_vm *vm, const json_t *share,
                                    uint64_t timeout_ms, orr_vm_cb cb,
                                    void *arg);
ORR_API void orr_vm_remove_plan9_share(orr_vm *vm, const json_t *share,
                                       uint64_t timeout_ms, orr_vm_cb cb,
                                       void *arg);
/* Processor/Limits: limits {Limit, Weight, Reservation} (cgroups) */
ORR_API void orr_vm_update_cpu_limits(orr_vm *vm, const json_t *limits,
                                      uint64_t timeout_ms, orr_vm_cb cb,
                                      void *arg);
/* Memory/SizeInMB through the balloon */
ORR_API void orr_vm_update_memory(orr_vm *vm, uint64_t size_mb,
                                  uint64_t timeout_ms, orr_vm_cb cb, void *arg);

/*
** Sends one raw QMP command and returns QEMU's answer as result: the escape
** hatch (like virsh qemu-monitor-command) and how tests check QEMU's own
** view (query-block, query-pci). It bypasses the live document.
*/
ORR_API void orr_vm_qmp(orr_vm *vm, const char *command,
                        const json_t *arguments, uint64_t timeout_ms,
                        orr_vm_cb cb, void *arg);

/*
** Live migration between two engines (docs/migration.md). The destination
** engine calls orr_vm_receive: it listens on `listen` ("unix:/abs/path" or
** "tcp:HOST:PORT") for one incoming VM and returns a VM at once, Creating,
** whose cb reports when it runs here (or failed: then just close it).
** opts as for create, but backend qemu, no restore; timeout_ms (0:
** ORR_VM_MIGRATE_TIMEOUT_MS) bounds the whole wait, connection included.
** The source calls orr_vm_migrate(vm, to, ...) on a Running or Paused VM:
** it hands its live document and layout over, the destination starts a
** matching QEMU that waits for the stream, the stream flows over a second
** connection, and once the destination runs the VM, the source's QEMU
** quits (the VM is Stopped, exit reason "migrated"). result: {TotalTimeMs,
** DowntimeMs, SetupTimeMs, TransferredBytes, Destination}. A migration
** that fails, times out or is refused leaves the source running as it was
** (ORR_EBUSY while another change or migration is in flight; ORR_ENOTSUP
** for a protocol version the peer does not speak; the destination's own
** code and message when it refuses the document). "migration" events
** {Role, Phase, ...} on both sides.
*/
#define ORR_MIGRATE_PROTOCOL 1
#define ORR_VM_MIGRATE_TIMEOUT_MS 300000
ORR_API int orr_vm_receive(orr_engine *eng, const char *id, const char *listen,
                           const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                           orr_vm **out, orr_error *e);
ORR_API void orr_vm_migrate(orr_vm *vm, const char *to, uint64_t timeout_ms,
                            orr_vm_cb cb, void *arg);

/* Sync queries. */
ORR_API const char *orr_vm_id(const orr_vm *vm);
/* "Created", "Running", ... */
ORR_API const char *orr_vm_state(const orr_vm *vm);
/* The live document; do not modify. */
ORR_API const json_t *orr_vm_document(const orr_vm *vm);
/* {Id, RuntimeId, State, Backend, Owner, RuntimeDirectory, Summary,
** ProcessId, Accel, Exit, Responsive, Unresponsive {Command, TimeoutMs,
** ForMs}, InDoubt [...]}: see the README. New reference. */
ORR_API json_t *orr_vm_properties(const orr_vm *vm);
ORR_API json_t *orr_vm_plan_log(const orr_vm *vm); /* new reference */
/* What a dry run recorded, as `orrery plan` reports it (new reference):
** {"plan_log": [...]} on the plan backend, {"kubevirt": {"manifest",
** "requests"}} on a kubevirt dry run; NULL for a VM that is not one. */
ORR_API json_t *orr_vm_plan_report(const orr_vm *vm);
/* The unix socket of the guest agent's virtio-serial port (QEMU is the
** server), or NULL when the VM has none (create option guest_agent). */
ORR_API const char *orr_vm_guest_socket(const orr_vm *vm);
/* The engine this VM lives on (its loop runs the guest agent client). */
ORR_API orr_engine *orr_vm_engine(const orr_vm *vm);

/*
** Console. The engine captures what every COM port of the VM prints
** (COM1, port 0, always exists; ports 1..3 when the document names them),
** whether or not a client is attached to the port's own socket: each line
** goes to a "console" event, a ring of the last ORR_CONSOLE_RING_LINES
** lines per port and <runtime dir>/console.log (at most
** ORR_CONSOLE_LOG_MAX bytes; the older part is moved to console.log.1).
** Lines are numbered per port from 0; a line longer than
** ORR_CONSOLE_LINE_MAX bytes is cut into several.
*/
#define ORR_CONSOLE_PORTS 4
#define ORR_CONSOLE_RING_LINES 512
#define ORR_CONSOLE_LINE_MAX 2048
#define ORR_CONSOLE_LOG_MAX (1024 * 1024)
#define ORR_VM_CONSOLE_LOG "console.log"
/* Whether port is captured (0 no: not a port of this VM, or a plan VM). */
ORR_API int orr_vm_console_has(const orr_vm *vm, int port);
/* Line number seq of port: 0 and *line (valid until the next loop turn),
** ORR_ENOENT when it has left the ring (*first, if not NULL, gets the
** oldest number still there) or 1 when it has not come yet. */
ORR_API int orr_vm_console_line(const orr_vm *vm, int port, uint64_t seq,
                                const char **line, uint64_t *first);
/* The number the next complete line will get. */
ORR_API uint64_t orr_vm_console_next(const orr_vm *vm, int port);
/* What the port printed since its last line end ("" if nothing). */
ORR_API const char *orr_vm_console_partial(const orr_vm *vm, int port);
/* Completes (result NULL) as soon as the port prints anything after line
** next and the partial text partial_len long, ORR_ETIMEDOUT after
** timeout_ms (0: no deadline), ORR_EVMGONE when the VM stops first (the
** message ends with its last console lines), ORR_ECANCELED at close. */
ORR_API void orr_vm_console_wait(orr_vm *vm, int port, uint64_t next,
                                 size_t partial_len, uint64_t timeout_ms,
                                 orr_vm_cb cb, void *arg);
/* Sends bytes to the port as if typed on it. ORR_ENOTSUP for a port the
** document gives its own socket (write there). */
ORR_API void orr_vm_console_write(orr_vm *vm, int port, const char *buf,
                                  size_t len, uint64_t timeout_ms, orr_vm_cb cb,
                                  void *arg);
/* Every byte a port prints, as it comes (an interactive console: prompts
** have no line end); NULL removes it. One tap per VM. */
typedef void (*orr_vm_console_cb)(void *arg, int port, const char *buf,
                                  size_t len);
ORR_API void orr_vm_console_tap(orr_vm *vm, orr_vm_console_cb cb, void *arg);
/* The last `lines` lines of every port (ports 1..3 prefixed "COMn: "),
** oldest first, joined with "\n", into buf; returns the length. */
ORR_API size_t orr_vm_console_tail(const orr_vm *vm, int lines, char *buf,
                                   size_t size);

/*
** Resource use, as result: {ProcessId, Cpu {UserSeconds, SystemSeconds,
** TotalSeconds} (QEMU's CPU time), Memory {ResidentBytes} (its RSS), Disks
** [{Device, Node, ReadBytes, WriteBytes, ReadOperations, WriteOperations,
** FlushOperations, ReadTimeNs}], Balloon {ActualBytes} (or {Error}), Nics
** [{Id, EndpointId, RxBytes, TxBytes, RxPackets, TxPackets, RxDropped,
** TxDropped} as the guest sees them, or {Id, EndpointId, Counters = why
** none}]}. timeout_ms 0: ORR_VM_TIMEOUT_MS for each QMP query. ORR_ENOTSUP
** on a backend without (plan), ORR_ESTATE for a VM that is not running or
** paused.
*/
ORR_API void orr_vm_stats(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb,
                          void *arg);

/* The one event subscriber (the bindings fan out). */
ORR_API void orr_vm_on_event(orr_vm *vm, orr_vm_event_cb cb, void *arg);

/*
** Releases the caller's handle. With ShouldTerminateOnLastHandleClosed the
** VM is terminated; either way requests still pending complete with
** ORR_ECANCELED (from the loop), the event callback is dropped, and the
** engine frees the VM once its process is gone. vm is invalid afterwards.
*/
ORR_API void orr_vm_close(orr_vm *vm);

#endif
