/*
** The qemu backend's translation layer: an HCS schema 2.1 compute system
** document (a validated Jansson value with the exact HCS keys) in, QEMU 7.2
** argv and QMP "plans" out. Pure data: nothing here spawns a process or opens
** a socket. It reads a few bytes of disk images (format detection) and stats
** pmem images, because the argv depends on them.
**
** Three files, one job each:
**   qemu_xlate.c  names, config, field rules, the JSON of disks/NICs/VPCI
**                 devices shared by boot time and run time
**   qemu_argv.c   orr__qemu_argv(), orr__qemu_prepare_files()
**   qemu_plan.c   the run-time change plans (one function per change type)
**
** Every value that carries a user string (path, name, MAC) goes to QEMU as
** JSON (`-device {...}`, `-blockdev {...}`, `-object {...}`, `-netdev {...}`),
** so a path holding "," or "driver=" reaches QEMU literally. The options that
** cannot take JSON (-fsdev, -chardev) get QEMU's own escape: every "," in
** the path is doubled. -kernel/-initrd/-append take their value verbatim in
** 7.2 (checked: a "," in the kernel path and the command line arrive intact).
**
** The decisions (port order, graphics, pmem, restore, advisory fields) are
** in the comment at the top of qemu_argv.c; the disk format rule and the
** chain of files an image names are image.h's; one function per VPCI
** device is explained in qemu_xlate.c.
*/
#ifndef ORR_BACKENDS_QEMU_XLATE_H
#define ORR_BACKENDS_QEMU_XLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "hostres.h"
#include "orrery/error.h"

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */
/* ---------------------------------------------------------------------- */

/* Facts about the host that change the translation. Probed by
** orr__qemu_probe_host(); tests set them by hand. */
typedef struct {
  bool vhost_vsock; /* /dev/vhost-vsock exists: HvSocket services possible */
  bool vhost_net;   /* /dev/vhost-net exists (recorded; we never use vhost) */
  bool kvm;         /* /dev/kvm exists */
} orr_qemu_host_facts;

typedef struct {
  const char *binary;  /* argv[0]; default "qemu-system-x86_64" */
  const char *run_dir; /* the VM's private dir (0700), absolute, no ','; the
                       ** socket paths in it must fit a sockaddr_un */
  const char *accel;   /* "tcg" (-accel tcg -cpu max) or "kvm" (-accel kvm
                       ** -cpu host); "auto" is resolved by the VM layer */
  int hotplug_ports;   /* free root ports for run-time hot-adds; default 16 */
  /* Memory the VM may grow to at run time, MiB (0: none). Above
  ** Memory.SizeInMB a virtio-mem-pci device (ORR_QEMU_VMEM_ID) over a RAM
  ** backend of the difference is cold-plugged with nothing plugged in;
  ** -m gets maxmem for it. */
  unsigned long long memory_max_mb;
  bool guest_agent;         /* add virtio-serial + the qga socket */
  const char *restore_path; /* NULL, or a saved state to -incoming from
                               (opened through hr) */
  /* Templates (orrery.template): guest RAM in this file instead of
  ** anonymous memory (memory-backend-file "ram0"). ram_shared: the
  ** template itself, whose RAM is written through to the file; otherwise
  ** a clone, mapping it private (copy-on-write). Both get a VM generation
  ** id device (vmgenid_guid) and boot SeaBIOS, never qboot (qboot cannot
  ** run the ACPI linker commands vmgenid needs and hangs). A clone's
  ** restore loads with x-ignore-shared (-incoming defer; the layout's
  ** "incoming" says how). */
  const char *ram_file;
  bool ram_shared;
  const char *vmgenid_guid;
  /* A VM received from another engine: -incoming defer, the root ports
  ** exactly as the source's layout "ports" (every PCI device of the
  ** document in the port the source has it in; hotplug_ports unused), and
  ** RAM of memory_mb (the source's boot size; 0: the document's). */
  bool incoming;
  const json_t *pin_ports;
  long long memory_mb;
  /* Also from the source, so that the state QEMU sends fits: its -m
  ** (layout "hotplug_memory": {slots, maxmem_mb}; the ACPI memory hotplug
  ** state has one entry per slot), the guest address of each memory device
  ** (layout "memory_devices": query-memory-devices; virtio-mem checks it,
  ** a virtio-pmem guest has mapped it) and its mapped pipes (layout
  ** "pipes": each a virtserialport at the same nr, its chardev listening on
  ** a temporary name next to the host path: ORR_QEMU_PIPE_TMP, renamed over
  ** the host path once the VM is here; a COM port's NamedPipe the same,
  ** layout "com_moved": {host path: temporary name}). NULL: none. */
  const json_t *pin_memory;
  const json_t *pin_memaddr;
  const json_t *pipes;
  unsigned vsock_cid;    /* guest CID (>= 3) if HvSocket services need vsock */
  const char *ovmf_code; /* default /usr/share/OVMF/OVMF_CODE_4M.fd */
  const char *ovmf_vars_template; /* default /usr/share/OVMF/OVMF_VARS_4M.fd */
  orr_qemu_host_facts host;
  /* Where every host file, directory and socket of the document comes
  ** from (hostres.h): judged under the engine's policy, passed by name or as
  ** a descriptor. NULL: an unconfined engine, by name. */
  orr_hostres *hr;
} orr_qemu_config;

#define ORR_QEMU_DEFAULT_BINARY "qemu-system-x86_64"
/* -sandbox: seccomp filters QEMU 7.2 applies to itself; every QEMU the
** engine starts gets them. */
#define ORR_QEMU_SANDBOX                                                       \
  "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
#define ORR_QEMU_DEFAULT_HOTPLUG_PORTS 16
#define ORR_QEMU_OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"
#define ORR_QEMU_OVMF_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"
/* Root ports live at pcie.0 slots 0x02..0x1e, 8 functions each. */
#define ORR_QEMU_MAX_PORTS (29 * 8)

/* Fills defaults: binary, accel "tcg", 16 hot-plug ports, OVMF paths; the
** rest zero (no run_dir: the caller must set it). */
void orr__qemu_config_init(orr_qemu_config *cfg);
/* Looks at /dev for the facts above. */
void orr__qemu_probe_host(orr_qemu_host_facts *facts);

/* ---------------------------------------------------------------------- */
/* The fixed naming scheme (the VM layer depends on it)                   */
/* ---------------------------------------------------------------------- */

/* Files in cfg->run_dir. */
#define ORR_QEMU_QMP_SOCK "qmp.sock"      /* -chardev id=qmp + -mon control */
#define ORR_QEMU_QGA_SOCK "qga.sock"      /* guest agent (cfg->guest_agent) */
#define ORR_QEMU_VNC_SOCK "vnc.sock"      /* -vnc unix: when graphics */
#define ORR_QEMU_PIDFILE "qemu.pid"       /* -pidfile */
#define ORR_QEMU_VARS_FILE "OVMF_VARS.fd" /* per-VM UEFI variable store */

/* Fixed ids. */
#define ORR_QEMU_QMP_CHARDEV "qmp"
#define ORR_QEMU_QGA_CHARDEV "qga"
#define ORR_QEMU_QGA_PORT_NAME "org.qemu.guest_agent.0"
#define ORR_QEMU_VSERIAL_ID "vser0"    /* virtio-serial-pci for the agent */
#define ORR_QEMU_BALLOON_ID "balloon0" /* virtio-balloon-pci, always */
#define ORR_QEMU_VSOCK_ID "vsock0"     /* vhost-vsock-pci, when needed */
#define ORR_QEMU_VIDEO_ID "video0"     /* VGA on pcie.0 addr 0x1 */
#define ORR_QEMU_RAM_ID "ram0"         /* a template's memory-backend-file */
#define ORR_QEMU_VMGENID_ID "vmgenid0" /* a template's generation id */
#define ORR_QEMU_THROTTLE_GROUP "tg0"  /* the VM-wide StorageQoS group */
#define ORR_QEMU_VMEM_ID "vmem0"       /* virtio-mem-pci (memory_max_mb) */
#define ORR_QEMU_VMEM_MEMDEV "vmem0-mem"
#define ORR_QEMU_VMEM_PATH "/machine/peripheral/vmem0"
/* virtio-mem's block size: what it plugs and unplugs at a time. */
#define ORR_QEMU_VMEM_BLOCK_MB 2
#define ORR_QEMU_THROTTLE_PATH "/objects/tg0"

/* A qdev id / node name / port name, returned by value so it can be used in
** one expression: orr__qemu_disk_qdev(0, 3).s is "disk-0-3". GUIDs are
** 36 characters, so 64 bytes always suffice. */
typedef struct {
  char s[64];
} orr_qemu_name;

orr_qemu_name orr__qemu_port_id(int n);                 /* "rp<n>" */
orr_qemu_name orr__qemu_scsi_ctrl_qdev(int c);          /* "scsi<c>" */
orr_qemu_name orr__qemu_scsi_bus(int c);                /* "scsi<c>.0" */
orr_qemu_name orr__qemu_disk_qdev(int c, int lun);      /* "disk-<c>-<lun>" */
orr_qemu_name orr__qemu_disk_file_node(int c, int lun); /* "file-<c>-<lun>" */
orr_qemu_name orr__qemu_disk_fmt_node(int c, int lun);  /* "fmt-<c>-<lun>" */
orr_qemu_name orr__qemu_disk_qos_node(int c, int lun);  /* "qos-<c>-<lun>" */
orr_qemu_name orr__qemu_vpci_qdev(const char *guid);    /* "vpci-<guid>" */
orr_qemu_name orr__qemu_nic_qdev(const char *guid);     /* "nic-<guid>" */
orr_qemu_name orr__qemu_nic_netdev(const char *guid);   /* "net-<guid>" */
orr_qemu_name orr__qemu_p9_fsdev(int k);    /* "fs<k>" (Shares[k]) */
orr_qemu_name orr__qemu_p9_qdev(int k);     /* "p9-<k>" */
orr_qemu_name orr__qemu_pmem_qdev(int k);   /* "pmem-<k>" (Devices key) */
orr_qemu_name orr__qemu_pmem_memdev(int k); /* "pmem-<k>-mem" */
orr_qemu_name orr__qemu_com_chardev(int n); /* "com<n>" (ComPorts key) */
orr_qemu_name orr__qemu_com_qdev(int n);    /* "serial<n>" (isa-serial) */
orr_qemu_name orr__qemu_pipe_qdev(int n);   /* "pipe-<n>" (virtserialport) */
/* The k-th external snapshot (1..) of disk (c, lun): its qcow2 overlay's
** format node "snap-<c>-<lun>-<k>" over file node "sfile-<c>-<lun>-<k>". */
orr_qemu_name orr__qemu_snap_node(int c, int lun, int k);
orr_qemu_name orr__qemu_snap_file_node(int c, int lun, int k);
#define ORR_QEMU_MAX_SNAPSHOTS 8 /* overlays on one disk at a time */
orr_qemu_name orr__qemu_pipe_chardev(int n); /* "pipechr-<n>" */

/* The -chardev value of the QMP socket of a VM in run_dir, as the argv
** holds it: what proves a process is this VM's QEMU (orrery.open). */
int orr__qemu_qmp_chardev(char *buf, size_t size, const char *run_dir);

/* Which of the hot-plug names above s is: 'd' a device (disk-C-L,
** vpci-GUID, nic-GUID, p9-K, pmem-K), 'n' a block node (file-, fmt- or
** qos-C-L), 'N' a netdev (net-GUID), 'o' an object (pmem-K-mem), 'c' a
** chardev (pipechr-N; its device is pipe-N, 'd'), 0 none. What
*the engine may delete as
** its own when re-attaching. */
char orr__qemu_name_kind(const char *s);

/* In fd mode (hostres.h) each image of the disk at (ctrl, lun) is an
** fdset: member k of its chain (0: the image itself) is this one. */
#define ORR_QEMU_FDSET_MEMBERS 32
#define ORR_QEMU_FDSET(ctrl, lun, k)                                           \
  (1000 + ((ctrl)*64 + (lun)) * ORR_QEMU_FDSET_MEMBERS + (k))
#define ORR_QEMU_FDSET_LAST ORR_QEMU_FDSET(3, 63, ORR_QEMU_FDSET_MEMBERS - 1)
/* The disk (ctrl * 64 + lun) fdset id belongs to, or -1: not the engine's. */
static inline int orr__qemu_fdset_disk(long long id) {
  if (id < ORR_QEMU_FDSET(0, 0, 0) || id > ORR_QEMU_FDSET_LAST)
    return -1;
  return (int)((id - ORR_QEMU_FDSET(0, 0, 0)) / ORR_QEMU_FDSET_MEMBERS);
}
/* The key of a disk in layout "fdsets" ("<ctrl>-<lun>"). */
orr_qemu_name orr__qemu_disk_key(int c, int lun);

/* "<run_dir>/<file>" into buf; ORR_EINVAL if it does not fit. */
int orr__qemu_run_path(char *buf, size_t size, const orr_qemu_config *cfg,
                       const char *file);

/* ---------------------------------------------------------------------- */
/* Boot time                                                              */
/* ---------------------------------------------------------------------- */

/*
** Translates a validated document into QEMU's argv.
**
** *argv: a JSON array of strings, argv[0] = cfg->binary; spawn it without a
** shell. *layout:
**   {"ports":[{"id":"rp0","device":"scsi0"}, ..., {"id":"rp9","device":null}],
**    "ignored":["VirtualMachine.ComputeTopology.Memory.Backing", ...],
**    "throttle_group": true|false,   (StorageQoS given: tg0 exists)
**    "qmp": "<run_dir>/qmp.sock", "pidfile": "...", "qga": "..."|null,
**    "vnc": "..."|null,
**    "files": [{"path":"<run_dir>/OVMF_VARS.fd","from":"<template>"}]}
** "fdsets" (fd mode, hostres.h): {"<ctrl>-<lun>": [fdset ids]} of each
** disk, for its removal.
** "ports" lists every root port in order; "device" is the qdev id that
** occupies it, null for a free one (the hot-plug pool). "ignored" lists the
** advisory fields present in the document that have no QEMU equivalent.
** "files" are files orr__qemu_prepare_files() creates before the spawn.
**
** Errors: ORR_EINVAL (a bad value; the message names the field and the
** rule), ORR_ENOTSUP (a field this backend cannot honour; the message names
** it and says why), ORR_ENOENT (a pmem image that cannot be stat'ed),
** ORR_ENOMEM. On error *argv and *layout are NULL.
*/
int orr__qemu_argv(const json_t *doc, const orr_qemu_config *cfg, json_t **argv,
                   json_t **layout, orr_error *err);

/* Creates the files the argv expects (layout "files"): the per-VM copy of
** the OVMF variable store when Chipset.Uefi is set. An existing copy is kept
** (it is the VM's NVRAM). Mode 0600. ORR_EIO with the errno text. */
int orr__qemu_prepare_files(const orr_qemu_config *cfg, const json_t *doc,
                            orr_error *err);

/* ---------------------------------------------------------------------- */
/* Run time: change plans                                                 */
/* ---------------------------------------------------------------------- */

/*
** A plan is what the VM layer sends over QMP for one ModifySettingRequest:
**   {"do":[{"execute":"blockdev-add","arguments":{...},
**           "undo":{"execute":"blockdev-del","arguments":{...}} | null}, ...],
**    "wait_deleted": "<qdev id>" | null,
**    "after":[{"execute":"blockdev-del","arguments":{...}}, ...],
**    "ignored":[advisory field paths],
**    "verifiable": false (only when QEMU cannot report the outcome)}
** A step with "fd": i passes the request's held descriptor i (hostres.h)
** with the command (SCM_RIGHTS). A disk add in fd mode also says
** "fdsets": [ids], which its removal needs.
** Run "do" in order. If step i fails, run the undos of steps i-1..0 in
** reverse (a failed device_add leaves its blockdevs/netdev behind) and
** report step i's error. If "wait_deleted" is set, wait for DEVICE_DELETED
** whose data.device equals it (the caller's deadline: PCI unplug needs a
** guest), then run "after" in order (cleanup that QEMU refuses while the
** device exists).
*/

/* SCSI attachment add at (controller index 0..3, lun 0..63); attachment is
** the HCS Attachment; throttle_group: the VM has tg0 (layout
** "throttle_group"), so the disk gets a throttle node. */
int orr__qemu_plan_scsi_add(int ctrl, int lun, const json_t *attachment,
                            bool throttle_group, orr_hostres *hr, json_t **plan,
                            orr_error *err);
/* fdsets: the ids its add put the disk's images in (layout "fdsets"), to
** drop once the nodes are gone; NULL when none (by name). snaps: the
** external snapshots on it (their overlay nodes go first, top down). */
int orr__qemu_plan_scsi_remove(int ctrl, int lun, bool throttle_group,
                               const json_t *fdsets, int snaps, json_t **plan,
                               orr_error *err);

/* External snapshot k (1..ORR_QEMU_MAX_SNAPSHOTS) of disk (ctrl, lun): the
** qcow2 overlay the engine wrote at overlay (backing: the current top) is
** added with no backing (file node, then qcow2 node; each undone by
** blockdev-del), then blockdev-snapshot puts it over the current top node
** (fmt-C-L for k = 1, else snap-C-L-(k-1)). Several disks at one point in
** time: orr__qemu_plan_snapshot_group joins their last steps into one
** transaction. */
int orr__qemu_plan_snapshot(int ctrl, int lun, int k, const char *overlay,
                            json_t **plan, orr_error *err);
/* Merges plans made by orr__qemu_plan_snapshot into *group (created on the
** first call): their adds in order, and one "transaction" of every
** blockdev-snapshot as the last step. */
int orr__qemu_plan_snapshot_group(json_t **group, const json_t *plan,
                                  orr_error *err);
/* Commit of the top overlay k of disk (ctrl, lun) into the image below it
** (active block-commit, job "commit-<ctrl>-<lun>"); the VM layer waits for
** BLOCK_JOB_READY, sends "complete" (job-complete), waits for
** BLOCK_JOB_COMPLETED, then runs "after" (the overlay's nodes deleted);
** "cancel" (block-job-cancel) ends it early. */
int orr__qemu_plan_commit(int ctrl, int lun, int k, json_t **plan,
                          orr_error *err);

/* VPCI device add into the free root port `port` chosen by the VM layer;
** device is the HCS VirtualPciDevice. */
int orr__qemu_plan_vpci_add(const char *guid, const json_t *device,
                            const char *port, orr_hostres *hr, json_t **plan,
                            orr_error *err);
int orr__qemu_plan_vpci_remove(const char *guid, json_t **plan, orr_error *err);

/* NIC add (netdev_add + device_add) into `port`; remove is device_del, wait
** for DEVICE_DELETED, then netdev_del. */
int orr__qemu_plan_nic_add(const char *guid, const json_t *settings,
                           const char *port, orr_hostres *hr, json_t **plan,
                           orr_error *err);
int orr__qemu_plan_nic_remove(const char *guid, json_t **plan, orr_error *err);

/*
** Memory/SizeInMB update, from cur_mb (its undo). At or below boot_mb the
** balloon gives memory back to the host; above it (up to max_mb, the
** create option memory_max_mb, 0: none) virtio-mem plugs memory in: its
** requested-size is set to size - boot (qom-set), in ORR_QEMU_VMEM_BLOCK_MB
** steps. A change across boot_mb does both: the balloon back to boot_mb
** and virtio-mem to its new size, or virtio-mem to 0 and the balloon down.
** Growing beyond boot_mb without max_mb, or beyond max_mb, is ORR_ENOTSUP
** / ORR_EINVAL naming the limit. QEMU cannot say what target the balloon
** was given, so the plan is "verifiable": false.
*/
int orr__qemu_plan_memory(uint64_t size_mb, uint64_t cur_mb, uint64_t boot_mb,
                          uint64_t max_mb, json_t **plan, orr_error *err);

/* VPMem device k (Devices.VirtualPMem.Devices."k") added at run time into
** the free root port `port`: object-add of its memory-backend-file, then
** device_add of virtio-pmem-pci. The VM must have room for it (layout
** "pmem_room_mb", kept at create from MaximumCount and MaximumSizeBytes);
** QEMU refuses a device that does not fit what is left. Remove is always
** ORR_ENOTSUP: QEMU 7.2 cannot unplug virtio-pmem-pci (nor nvdimm). */
int orr__qemu_plan_pmem_add(int k, const json_t *device, long long maxsize,
                            const char *port, orr_hostres *hr, json_t **plan,
                            orr_error *err);
int orr__qemu_plan_pmem_remove(int k, json_t **plan, orr_error *err);

/* A mapped pipe n at run time: chardev-add of a unix socket QEMU listens on
** at host (server, no wait), then a virtserialport named name on the agent's
** virtio-serial bus (ORR_QEMU_VSERIAL_ID) at port number n + 2 (0 is kept
** for a console, the agent's port is 1; fixed so that a migration's
** destination can place it the same): the guest sees
** /dev/virtio-ports/<name>. Remove: device_del, DEVICE_DELETED,
** chardev-remove (QEMU then unlinks the socket). */
int orr__qemu_plan_pipe_add(int n, const char *host, const char *name,
                            json_t **plan, orr_error *err);
int orr__qemu_plan_pipe_remove(int n, json_t **plan, orr_error *err);
/* virtio-serial's ports (31 by default) less the console's and the agent's:
** pipes 0..ORR_QEMU_PIPE_MAX - 1. */
#define ORR_QEMU_PIPE_MAX 29
/* A received socket's temporary name, next to its host path (a rename does
** not cross file systems): "<dir>/.orrery-in-<pid>-<tag><n>" (tag "pipe" or
** "com"). 0, or -1 when it does not fit a unix socket path. */
int orr__qemu_sock_tmp(const char *host, const char *tag, int n, char *out,
                       size_t size);

/* StorageQoS update: qom-set of tg0's "limits". That replaces the whole
** struct, so a missing field means 0 = unlimited. Without tg0 (the VM was
** created without StorageQoS, so no disk has a throttle node): ORR_ENOTSUP. */
int orr__qemu_plan_storage_qos(const json_t *qos, bool throttle_group,
                               json_t **plan, orr_error *err);

/* Plan9 share add at run time: always ORR_ENOTSUP (QEMU 7.2 has no run-time
** fsdev). Remove of boot-time share k is device_del p9-<k> (the fsdev stays:
** it cannot be deleted either). */
int orr__qemu_plan_plan9_add(const json_t *share, json_t **plan,
                             orr_error *err);
int orr__qemu_plan_plan9_remove(int k, json_t **plan, orr_error *err);

/* Save to a file (the VM paused): "do" turns on migration events and
** hands QEMU the descriptor the request holds at index fd, with getfd as
** ORR_QEMU_SAVE_FD ("fd": fd in that step; the engine opened the file, so
** any path); then the VM layer sends "start" (migrate to fd:, never exec:,
** which QEMU's -sandbox spawn=deny forbids), polls with "poll" until its
** answer's "status" is completed, failed or cancelled, and sends "cancel"
** when the caller's deadline passes first (the caller is told the save
** failed: no migration may go on). after_save: QEMU is still in
** "postmigrate" from an earlier save, which it refuses to migrate from:
** "do" starts with a cont and a stop (the guest runs for that round trip;
** the stop is also cont's undo). */
#define ORR_QEMU_SAVE_FD "orr-save"
int orr__qemu_plan_save(bool after_save, bool ignore_shared, int fd,
                        json_t **plan, orr_error *err);
/* The migration stream's getfd names, on the source and the destination. */
#define ORR_QEMU_MIGRATE_FD "orr-migrate"
#define ORR_QEMU_MIGRATE_IN_FD "orr-migrate-in"

/* ---------------------------------------------------------------------- */
/* Shared by qemu_argv.c and qemu_plan.c (not for the VM layer)           */
/* ---------------------------------------------------------------------- */

/* How a document field is treated. */
typedef enum {
  ORR_QF_USE,        /* translated */
  ORR_QF_ADVISORY,   /* no QEMU equivalent: ignored, reported in "ignored" */
  ORR_QF_VMLAYER,    /* applied by the VM layer (cgroups): accepted here */
  ORR_QF_REFUSE_SET, /* ORR_ENOTSUP when set (true, non-zero, non-empty) */
  ORR_QF_REFUSE      /* ORR_ENOTSUP when present (not null) */
} orr_qemu_field_kind;

typedef struct {
  const char *key;
  orr_qemu_field_kind kind;
  const char *why; /* the reason in the ORR_ENOTSUP message */
} orr_qemu_field_rule;

/* Checks every key of obj (named `path` in messages) against rules (ended
** by a {NULL} entry): unknown keys are ORR_ENOTSUP, advisory ones are
** appended to `ignored` (may be NULL). obj must be an object (ORR_EINVAL). */
int orr__qemu_check_fields(const json_t *obj, const char *path,
                           const orr_qemu_field_rule *rules, json_t *ignored,
                           orr_error *err);

/* Typed getters; `path` names obj. Absent (or null) keys give the default
** (or ORR_EINVAL "PATH.KEY is required" for the req_ variants). */
int orr__qemu_get_int(const json_t *obj, const char *key, const char *path,
                      long long lo, long long hi, long long dflt,
                      long long *out, orr_error *err);
int orr__qemu_req_int(const json_t *obj, const char *key, const char *path,
                      long long lo, long long hi, long long *out,
                      orr_error *err);
int orr__qemu_get_bool(const json_t *obj, const char *key, const char *path,
                       bool dflt, bool *out, orr_error *err);
int orr__qemu_get_str(const json_t *obj, const char *key, const char *path,
                      const char **out /* NULL if absent */, orr_error *err);
int orr__qemu_req_str(const json_t *obj, const char *key, const char *path,
                      const char **out, orr_error *err);

/* The format the engine gives the image at path: image.h's
** orr__image_top_format, through a descriptor opened only if it is a
** regular file. Returns a static string. */
const char *orr__qemu_disk_format(const char *path);

/* The block nodes (file, format, then throttle if throttle_group; each a
** blockdev-add argument object, in creation order) and the scsi-hd/scsi-cd
** device_add object for attachment (ctrl, lun). `path` names the attachment
** in messages. The image is opened through hr (hostres.h; NULL: by name). */
int orr__qemu_disk_objects(int ctrl, int lun, const json_t *att,
                           const char *path, bool throttle_group,
                           orr_hostres *hr, json_t *ignored, json_t **nodes,
                           json_t **device, orr_error *err);

/* The netdev_add (== -netdev JSON) and device_add objects of a NIC. A tap
** endpoint creates a host interface: refused when hr is confined. */
int orr__qemu_nic_objects(const char *guid, const json_t *nic, const char *path,
                          const char *port, const orr_hostres *hr,
                          json_t *ignored, json_t **netdev, json_t **device,
                          orr_error *err);

/* The device_add object of a VPCI device: exactly one function; its
** DeviceInstancePath is "DDDD:BB:DD.F" (vfio-pci host=) or "qemu:<model>"
** ([a-z0-9-]+, the driver). More than one function, or a non-zero
** VirtualFunction, is ORR_ENOTSUP (see qemu_xlate.c). */
int orr__qemu_vpci_objects(const char *guid, const json_t *dev,
                           const char *path, const char *port,
                           const orr_hostres *hr, json_t *ignored,
                           json_t **device, orr_error *err);

/* The memory-backend-file object (-object / object-add) and the
** virtio-pmem-pci device (no bus yet) of VPMem device k, described by d
** (named dpath in messages); the image is judged through hr and its size
** (*size, bytes) must be a multiple of 4 KiB (a fixed VHD's footer left
** out) and at most maxsize. */
int orr__qemu_pmem_objects(int k, const json_t *d, const char *dpath,
                           long long maxsize, orr_hostres *hr, json_t *ignored,
                           json_t **object, json_t **device, long long *size,
                           orr_error *err);
/* The address space kept for VPMem devices added at run time stops here
** (MiB): a controller declaring more gets none (its hot-adds are refused). */
#define ORR_QEMU_PMEM_ROOM_MAX_MB (256LL * 1024)

/* Appends s to the JSON array `ignored` (NULL: no-op). */
void orr__qemu_ignore(json_t *ignored, const char *path, const char *key);

#endif
