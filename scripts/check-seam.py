#!/usr/bin/env python3
"""The backend seam, checked (docs/backends.md).

Usage: scripts/check-seam.py BUILD_DIR

1. No core file (engine/src/vm*.c, rundir.c, engine.c, defer.c and the
   core's headers) includes a header under engine/src/backends/.
2. None of them spells a QMP command or a QEMU event as a string, nor
   calls a qemu translation function (orr__qemu_*, ORR_QEMU_*).
3. The engine's object files, as the linker sees them (every undefined
   symbol of one file that another defines is an arrow), have no circle
   that crosses a part of /work/shared/architecture.json's layering (Core,
   Backends, Engine, Host, Transport, Document): core files may call each
   other, a backend's files each other, but no circle goes through two
   parts. Nor any circle among the core's own files: their calls go one
   way (vm_base.c at the bottom; a lower file reaches a higher one only
   through a callback, e.g. engine->vm_free, vm->mig_hooks). The circles
   that remain inside another part are printed.

Prints what it found and "check-seam: ok" or "check-seam: N problems";
exits non-zero on a problem.
"""
import collections
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "engine", "src")

CORE = ["vm.c", "vm_modify.c", "vm_commit.c", "vm_persist.c", "vm_req.c",
        "vm_state.c", "vm_migrate.c", "vm_typed.c", "vm_reap.c", "vm_base.c",
        "vm_open.c", "vm_console.c", "rundir.c", "engine.c", "defer.c", "vm_internal.h",
        "backend.h", "rundir.h"]

# Every QMP command and event the qemu backend sends or reads (and a few it
# might): none of these may appear as a string in the core.
QMP = """cont stop quit system_powerdown system_reset migrate migrate_cancel
migrate-set-capabilities migrate-incoming query-status query-migrate
query-named-block-nodes query-fdsets query-balloon query-block qom-list
qom-get qom-set device_add device_del blockdev-add blockdev-del netdev_add
netdev_del add-fd remove-fd getfd closefd balloon human-monitor-command
qmp_capabilities object-add object-del DEVICE_DELETED RESUME STOP SHUTDOWN
MIGRATION BALLOON_CHANGE""".split()


def part_of(path):
    """The architecture part of an engine source file."""
    rel = os.path.relpath(path, SRC)
    base = os.path.basename(rel)
    if rel.startswith("backends" + os.sep):
        return "Backends"
    if base in ("engine.c",):
        return "Engine"
    if base.startswith("vm") or base in ("rundir.c", "defer.c",
                                         "runtime_root.c"):
        return "Core"
    if base in ("accel.c", "cgroup.c", "hostres.c", "landlock.c",
                "policy.c", "fault.c", "image.c", "guest_image.c",
                "install.c"):
        return "Host"
    if base in ("qmp.c", "guest_agent.c", "jsonconn.c", "framer.c",
                "process.c", "pidwatch.c", "migrate_wire.c"):
        return "Transport"
    if base in ("guest.c",):
        return "Guest"
    return "Document"


def check_sources(problems):
    quoted = re.compile(r'"((?:[^"\\]|\\.)*)"')
    for name in CORE:
        path = os.path.join(SRC, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                code = line.split("/*")[0] if "/*" in line else line
                if code.lstrip().startswith("**"):
                    continue  # a comment's continuation
                if re.match(r'\s*#\s*include\s+"backends/', code):
                    problems.append(f"{name}:{n}: includes a backend header: "
                                    f"{line.strip()}")
                if re.search(r"\borr__qemu_\w+|\bORR_QEMU_\w+", code):
                    problems.append(f"{name}:{n}: calls into the qemu "
                                    f"backend: {line.strip()}")
                for s in quoted.findall(code):
                    if s in QMP:
                        problems.append(f"{name}:{n}: names \"{s}\", a QMP "
                                        f"command or event")


def check_graph(build, problems):
    objdir = os.path.join(build, "CMakeFiles", "orrery_engine_objects.dir")
    objs = glob.glob(os.path.join(objdir, "**", "*.o"), recursive=True)
    if not objs:
        problems.append(f"no object files under {objdir} (build first)")
        return
    defs, uses = {}, {}
    for o in objs:
        src = os.path.join(ROOT, os.path.relpath(o, objdir)[:-2])
        out = subprocess.run(["nm", o], capture_output=True, text=True,
                             check=True).stdout
        uses[src] = set()
        for line in out.splitlines():
            f = line.split()
            if len(f) == 2 and f[0] == "U":
                uses[src].add(f[1])
            elif len(f) == 3 and f[1] in "TDBR":
                defs[f[2]] = src
    graph = collections.defaultdict(set)
    for src, syms in uses.items():
        for s in syms:
            if s in defs and defs[s] != src:
                graph[src].add(defs[s])
    # Tarjan's strongly connected components, iteratively.
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]
    for root in sorted(uses):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                sccs.append(sorted(comp))
    for comp in sccs:
        if len(comp) < 2:
            continue
        parts = sorted({part_of(f) for f in comp})
        names = ", ".join(os.path.relpath(f, SRC) for f in comp)
        if len(parts) > 1:
            problems.append(f"a circle across {' and '.join(parts)}: {names}")
        elif parts == ["Core"]:
            problems.append(f"a circle among the core's files: {names} "
                            f"(make the lower one's call up a callback)")
        else:
            print(f"check-seam: inside {parts[0]}, these call each other: "
                  f"{names}")


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    problems = []
    check_sources(problems)
    check_graph(sys.argv[1], problems)
    for p in problems:
        print("check-seam: " + p)
    print("check-seam: ok" if not problems else
          f"check-seam: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
