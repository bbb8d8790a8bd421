/*
** The guest manager: a client of the QEMU guest agent (qemu-ga) on a VM's
** virtio-serial agent port, on the engine's loop. It acts inside the guest:
** runs programs, reads and writes files, asks for OS facts.
**
** The agent's protocol is JSON lines without request ids: it answers in
** order, one command at a time. So commands are queued and sent one by one,
** and whenever a reply may have gone astray (a command timed out, the
** connection is new) the client first sends guest-sync-delimited with a
** random id: the agent answers it with a 0xFF byte and the id, and the
** client drops every byte before that 0xFF, stale replies included.
**
** Contract for every call taking an orr_vm_cb: the callback runs exactly
** once, from the loop, never from inside the call. status is 0 or an ORR_*
** code; err (never NULL) carries the message; result is borrowed (may be
** NULL): json_incref() it to keep it. Codes: ORR_ETIMEDOUT (no answer in
** time), ORR_EVMGONE (the connection ended: the VM exited or the socket
** closed), ORR_EBACKEND (the agent refused; err has its words, prefixed
** with the command), ORR_ECANCELED (orr_guest_close() came first),
** ORR_EINVAL, ORR_EIO (the agent sent something unusable), ORR_ENOMEM.
**
** Byte strings in results (exec output, file contents) are JSON strings
** made with json_stringn_nocheck(): they may hold any byte, NUL included,
** so read them with json_string_value() and json_string_length().
*/
#ifndef ORRERY_GUEST_H
#define ORRERY_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "orrery/error.h"
#include "orrery/vm.h"

typedef struct orr_guest orr_guest;

/* Diagnostics (stale lines skipped, resyncs); may be NULL. */
typedef void (*orr_guest_log_cb)(void *arg, const char *msg);

typedef struct {
  /* How long to keep connecting, syncing and pinging until the agent
  ** answers (it answers only once the guest has booted); 0: 30 s. */
  uint64_t timeout_ms;
  /* Deadline of a command given timeout_ms 0; 0: 30 s. */
  uint64_t command_timeout_ms;
  /* A refused connect means the VM is gone (ORR_EVMGONE at once) rather
  ** than not listening yet. orr_guest_open() sets it: a created VM's QEMU
  ** listens on the socket before create completes. */
  int refused_is_gone;
  orr_guest_log_cb log_cb;
  void *log_arg;
  const char *log_id; /* who it is for in log lines (a VM id); may be NULL */
} orr_guest_options;

ORR_API void orr_guest_options_init(orr_guest_options *o);

/*
** Connects to a qemu-ga socket on loop, retrying until the deadline while
** the socket does not exist yet or refuses, then syncs and pings. cb runs
** once the agent answered the ping (result NULL), or with the failure:
** ORR_ETIMEDOUT (never connected, or connected and the agent never
** answered; the message says which), ORR_EVMGONE (the connection closed,
** or refused with refused_is_gone), ORR_EPERM/ORR_EIO (the socket is
** unusable). Returns 0 and *out, or ORR_EINVAL (path missing or too long
** for a unix socket) or ORR_ENOMEM with e set: then cb never runs. After a
** failure the object must still be released with orr_guest_close().
*/
ORR_API int orr_guest_connect(uv_loop_t *loop, const char *path,
                              const orr_guest_options *opts, orr_vm_cb cb,
                              void *arg, orr_guest **out, orr_error *e);

/*
** orr_guest_connect() to vm's agent port on its engine's loop. Returns
** ORR_ENOENT when the VM has no agent port (create option guest_agent),
** ORR_ENOTSUP for the plan backend (no guest runs), ORR_EVMGONE when the VM
** has stopped; then cb never runs. The guest does not keep vm: it may be
** closed before the guest.
*/
ORR_API int orr_guest_open(orr_vm *vm, const orr_guest_options *opts,
                           orr_vm_cb cb, void *arg, orr_guest **out,
                           orr_error *e);

/* Nonzero once the open's ping answered and until the connection ends. */
ORR_API int orr_guest_is_ready(const orr_guest *g);
/* Nonzero until the connection ends (connecting, opening or ready):
** commands sent meanwhile wait for the open and then run. */
ORR_API int orr_guest_is_open(const orr_guest *g);
/* The agent socket's path. */
ORR_API const char *orr_guest_path(const orr_guest *g);

/*
** Sends one agent command, {"execute": command, "arguments": arguments}:
** the escape hatch for commands without a wrapper. arguments is stolen
** (may be NULL). result is the agent's "return" value. timeout_ms 0: the
** command timeout of the options. Commands that never answer by design
** (guest-shutdown, guest-suspend-*) end with ORR_ETIMEDOUT.
*/
ORR_API void orr_guest_command(orr_guest *g, const char *command,
                               json_t *arguments, uint64_t timeout_ms,
                               orr_vm_cb cb, void *arg);

/* guest-ping; result NULL. */
ORR_API void orr_guest_ping(orr_guest *g, uint64_t timeout_ms, orr_vm_cb cb,
                            void *arg);

typedef struct {
  const char *const *argv; /* NULL-terminated, argv[0] looked up in PATH */
  /* "NAME=value" strings, NULL-terminated, replacing the agent's whole
  ** environment; PATH=/usr/sbin:/usr/bin:/sbin:/bin is added when absent
  ** so argv[0] is still found. NULL: the agent's environment. */
  const char *const *env;
  const void *input; /* stdin bytes (NULL: empty stdin) */
  size_t input_len;
  uint64_t timeout_ms; /* until the process exits; 0: command timeout */
} orr_guest_exec_req;

/*
** Runs a program (guest-exec with captured output, then guest-exec-status
** polled with a growing interval until it exits). result: {"exit_code": n,
** "stdout": bytes, "stderr": bytes}, plus "signal": n (exit_code is then
** 128 + n, as shells report it) when a signal ended it, and
** "stdout_truncated"/"stderr_truncated": true when the agent cut the
** output (at 16 MiB). A non-zero exit is a result, not a failure. On
** timeout the process is sent SIGKILL (best effort) and cb gets
** ORR_ETIMEDOUT. The request is copied: it need not outlive the call.
*/
ORR_API void orr_guest_exec(orr_guest *g, const orr_guest_exec_req *req,
                            orr_vm_cb cb, void *arg);

/* Reads a whole file (guest-file-open/read/close, 1 MiB per read, at most
** 64 MiB); result {"content": bytes}. */
ORR_API void orr_guest_read_file(orr_guest *g, const char *path,
                                 uint64_t timeout_ms, orr_vm_cb cb, void *arg);

/* Creates or truncates a file and writes len bytes to it; result NULL. The
** data is copied. */
ORR_API void orr_guest_write_file(orr_guest *g, const char *path,
                                  const void *data, size_t len,
                                  uint64_t timeout_ms, orr_vm_cb cb, void *arg);

/* guest-get-osinfo; result is the agent's object ("kernel-release",
** "machine", and "id"/"name"/... when the guest has /etc/os-release). */
ORR_API void orr_guest_os_info(orr_guest *g, uint64_t timeout_ms, orr_vm_cb cb,
                               void *arg);

/* guest-network-get-interfaces; result is the agent's array of {"name",
** "hardware-address", "ip-addresses": [...], "statistics"}. */
ORR_API void orr_guest_interfaces(orr_guest *g, uint64_t timeout_ms,
                                  orr_vm_cb cb, void *arg);

/*
** Closes the connection and releases g. Everything pending (the open,
** queued and in-flight commands, exec polls) fails with ORR_ECANCELED,
** from the loop, once the socket is closed; then the memory is freed. g
** must not be used after this call, except that it stays valid inside the
** callbacks it triggers, where calling it again does nothing. Safe to
** call from any callback.
*/
ORR_API void orr_guest_close(orr_guest *g);

#endif
