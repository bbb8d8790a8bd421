-- Faults against a real qemu-system-x86_64 (TCG, no guest OS): the QMP
-- socket cut under the engine, QEMU refusing a step in the middle of a
-- multi-step change, an unplug the guest never acknowledges, a disk that is
-- gone or unreadable before an add, a full disk during save, the runtime
-- directory deleted under a running VM, and QEMU SIGKILLed at random points
-- of a few hundred operations on several VMs. Each must end in a clear
-- error, a live document that shows only what QEMU confirmed, nothing left
-- behind in QEMU, and no leaked process or file descriptor.
local orrery = require("orrery")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"

local T = require("orrery.testing")
local sh, q, run, eventually, fd_count, pci_ids = T.sh, T.q, T.run, T.eventually, T.fd_count, T.pci_ids
local builder = T.builder -- builder(owner, { memory = MiB })

local ROOT = T.tmpdir()

local function qemu_pids() return T.qemu_pids(ROOT) end
local function image() return T.image(ROOT, "4M") end
local function create(id, b, opts) return T.create(id, b, opts, ROOT .. "/" .. id) end

local function node_names(vm)
  local names = {}
  for _, n in ipairs(assert(vm:qmp("query-named-block-nodes"))) do
    names[#names + 1] = n["node-name"]
  end
  table.sort(names)
  return table.concat(names, " ")
end

local function hmp(vm, line)
  return assert(vm:qmp("human-monitor-command", { ["command-line"] = line }))
end

-- A small helper that does from outside what QEMU would do if its monitor
-- connection broke: it takes QEMU's own socket descriptors (pidfd_getfd,
-- as root) and shuts them down, so the engine reads EOF on a QMP socket
-- whose QEMU is still alive.
local CUT = ROOT .. "/qmp-cut"
local function build_cut()
  local src = ROOT .. "/qmp-cut.c"
  local f = assert(io.open(src, "w"))
  f:write([[
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  char dir[64], link[128], target[128];
  int pid = argc > 1 ? atoi(argv[1]) : 0, cut = 0;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  struct dirent *de;
  DIR *d;
  snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
  if (pidfd < 0 || (d = opendir(dir)) == NULL) { perror("qmp-cut"); return 2; }
  while ((de = readdir(d)) != NULL) {
    ssize_t n;
    int fd;
    snprintf(link, sizeof link, "%s/%s", dir, de->d_name);
    n = readlink(link, target, sizeof target - 1);
    if (n < 0) continue;
    target[n] = 0;
    if (strncmp(target, "socket:", 7) != 0) continue;
    fd = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(de->d_name), 0);
    if (fd < 0) continue;
    if (shutdown(fd, SHUT_RDWR) == 0) cut++;
    close(fd);
  }
  printf("%d\n", cut);
  return cut > 0 ? 0 : 1;
}
]])
  f:close()
  return run("cc -o " .. q(CUT) .. " " .. q(src) .. " 2>/dev/null")
end

local baseline_fds

setup(function()
  -- One VM first, so the engine's once-per-process descriptors exist.
  local warm = assert(create("warm", builder("warm")))
  assert(warm:terminate())
  warm:close()
  collectgarbage("collect")
  baseline_fds = fd_count()
end)

teardown(function()
  run("umount " .. q(ROOT .. "/full") .. " 2>/dev/null")
  run("rm -rf " .. q(ROOT))
end)

describe("faults: the QMP socket", function()
  it("cut under the engine: QEMU refuses to drop its monitor; cut from outside, pending calls fail EVMGONE and the VM is ended", function()
    local vm <close> = assert(create("cut", builder("cut")))
    assert(vm:start())
    -- QEMU will not remove the monitor's chardev itself.
    local out = hmp(vm, "chardev-remove qmp")
    assert.truthy(out:find("busy", 1, true), out)
    assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = image() }))
    local doc = vm:document()
    assert(build_cut(), "cc is needed to build the helper")
    local pid = vm:properties().ProcessId
    -- A PCI unplug without a guest stays pending: it is in flight when the
    -- socket goes.
    assert(vm:add_vpci_device("7a1b2c3d-0000-4000-8000-000000000001",
      { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }))
    doc = vm:document()
    local pending = orrery.spawn(function()
      return vm:remove_vpci_device("7a1b2c3d-0000-4000-8000-000000000001", { timeout_ms = 20000 })
    end)
    orrery.sleep(100)
    assert.is_true(run(q(CUT) .. " " .. pid .. " >/dev/null"))
    local ok, err, code = pending:wait()
    assert.is_nil(ok)
    assert.equal("EVMGONE", code, err)
    assert.is_true(eventually(function() return vm:state() == "Stopped" end, 5000))
    assert.is_false(run("kill -0 " .. pid .. " 2>/dev/null"))
    -- The engine ended QEMU itself (SIGKILL): the document is the last one
    -- QEMU confirmed, and every later call fails the same way.
    assert.same(doc, vm:document())
    ok, err, code = vm:add_scsi_disk(0, 2, { Type = "VirtualDisk", Path = image() })
    assert.is_nil(ok)
    assert.equal("EVMGONE", code)
  end)
end)

describe("faults: QEMU refusing a step of a multi-step change", function()
  it("SCSI add: blockdevs succeed, device_add fails; the rollback leaves no node behind", function()
    local vm <close> = assert(create("scsi-rb", builder("scsi-rb")))
    assert(vm:start())
    -- Occupy the qdev id the engine will use for LUN 3 with a device of our
    -- own (LUN 9, on a node of our own), so its device_add is refused.
    assert(vm:qmp("blockdev-add", { driver = "file", ["node-name"] = "ours", filename = image(), ["read-only"] = true }))
    assert(vm:qmp("device_add", { driver = "scsi-hd", id = "disk-0-3", bus = "scsi0.0", lun = 9, drive = "ours" }))
    local nodes, doc = node_names(vm), vm:document()
    local ok, err, code = vm:add_scsi_disk(0, 3, { Type = "VirtualDisk", Path = image() })
    assert.is_nil(ok)
    assert.equal("EBACKEND", code)
    assert.truthy(err:find("device_add", 1, true), err)
    assert.equal(nodes, node_names(vm)) -- file-0-3 and fmt-0-3 were deleted
    assert.same(doc, vm:document())
    -- The same failure one step earlier: a node name already taken.
    assert(vm:qmp("blockdev-add", { driver = "file", ["node-name"] = "fmt-0-4", filename = image(), ["read-only"] = true }))
    nodes = node_names(vm)
    ok, err, code = vm:add_scsi_disk(0, 4, { Type = "VirtualDisk", Path = image() })
    assert.is_nil(ok)
    assert.equal("EBACKEND", code)
    assert.equal(nodes, node_names(vm))
    assert.same(doc, vm:document())
    -- Once the obstacle is gone, the same add works.
    assert(vm:qmp("device_del", { id = "disk-0-3" }))
    assert.is_true(eventually(function() return not hmp(vm, "info qtree"):find('"disk-0-3"', 1, true) end, 5000))
    assert(vm:add_scsi_disk(0, 3, { Type = "VirtualDisk", Path = image() }))
  end)

  it("NIC add: netdev_add succeeds, device_add fails; the rollback removes the netdev", function()
    local guid = "5c6d7e8f-1111-4222-8333-444455556666"
    local vm <close> = assert(create("nic-rb", builder("nic-rb"), { hotplug_ports = 4 }))
    assert(vm:start())
    -- A device of our own with the NIC's qdev id, in the last free port.
    assert(vm:qmp("device_add", { driver = "virtio-rng-pci", id = "nic-" .. guid, bus = "rp" .. 4 }))
    local pci, doc = pci_ids(vm), vm:document()
    local ok, err, code = vm:add_nic(guid, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-1A" })
    assert.is_nil(ok)
    assert.equal("EBACKEND", code)
    assert.truthy(err:find("device_add", 1, true), err)
    assert.is_nil(hmp(vm, "info network"):find("net-" .. guid, 1, true))
    assert.equal(pci, pci_ids(vm))
    assert.same(doc, vm:document())
    -- The port the failed add had claimed is free again: four more adds fit.
    for i = 1, 3 do
      assert(vm:add_nic(string.format("5c6d7e8f-1111-4222-8333-00000000000%d", i),
        { EndpointId = "user", MacAddress = string.format("00-15-5D-52-C0-2%d", i) }))
    end
  end)
end)

describe("faults: a guest that never acknowledges a PCI unplug", function()
  it("times out with the device still in the document and in QEMU; a second remove waits on the same unplug", function()
    local guid = "8d9e0f1a-2222-4333-8444-555566667777"
    local vm <close> = assert(create("noack", builder("noack")))
    assert(vm:start())
    assert(vm:add_vpci_device(guid, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }))
    local t0 = orrery.now()
    local ok, err, code = vm:remove_vpci_device(guid, { timeout_ms = 300 })
    assert.is_nil(ok)
    assert.equal("ETIMEDOUT", code, err)
    assert.is_true(orrery.now() - t0 < 3000)
    assert.truthy(vm:document().VirtualMachine.Devices.VirtualPci[guid])
    assert.truthy(pci_ids(vm):find("vpci-" .. guid, 1, true))
    ok, err, code = vm:remove_vpci_device(guid, { timeout_ms = 200 })
    assert.equal("ETIMEDOUT", code, err)
    -- The port stays taken until QEMU says the device is gone.
    assert.truthy(vm:document().VirtualMachine.Devices.VirtualPci[guid])
  end)
end)

describe("faults: the disk file", function()
  it("gone, a directory or unreadable before an add: a clear error, nothing in QEMU, the document unchanged", function()
    local vm <close> = assert(create("diskgone", builder("diskgone")))
    assert(vm:start())
    local nodes, doc = node_names(vm), vm:document()
    local gone = image()
    os.remove(gone)
    local dir = ROOT .. "/a-directory"
    assert(run("mkdir -p " .. q(dir)))
    -- Root reads a chmod 000 file anyway; a file below a directory that is
    -- not searchable is what root cannot open either... except root; so the
    -- unreadable case is a dangling symlink.
    local dangling = ROOT .. "/dangling.img"
    assert(run("ln -sfn " .. q(ROOT .. "/nowhere.img") .. " " .. q(dangling)))
    for lun, path in ipairs{ gone, dir, dangling } do
      local ok, err, code = vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = path })
      assert.is_nil(ok, path)
      assert.equal("EBACKEND", code, err)
      assert.truthy(err:find("blockdev-add", 1, true), err)
      assert.equal(nodes, node_names(vm))
      assert.same(doc, vm:document())
    end
  end)
end)

describe("faults: a full disk during save", function()
  it("fails the save with QEMU's reason and leaves the VM paused and usable", function()
    local full = ROOT .. "/full"
    assert(run("mkdir -p " .. q(full)))
    if not run("mount -t tmpfs -o size=16k tmpfs " .. q(full) .. " 2>/dev/null") then
      pending("cannot mount a 16 KiB tmpfs here (needs CAP_SYS_ADMIN)")
      return
    end
    local vm <close> = assert(create("full", builder("full", { memory = 64 })))
    assert(vm:start())
    assert(vm:pause())
    local doc = vm:document()
    local ok, err, code = vm:save{ SaveStateFilePath = full .. "/vm.state" }
    assert.is_nil(ok)
    assert.equal("EBACKEND", code, err)
    assert.truthy(err:find("migration failed", 1, true), err)
    assert.equal("Paused", vm:state())
    assert.same(doc, vm:document())
    assert(vm:resume())
    assert(vm:qmp("query-status"))
    -- The partial file stays: the path is the caller's, the engine does not
    -- delete it. Once QEMU (and the cat it wrote through) is gone, nothing
    -- holds the filesystem.
    assert(vm:terminate())
    vm:close()
    assert.is_true(eventually(function() return run("umount " .. q(full) .. " 2>/dev/null") end, 5000))
  end)
end)

describe("faults: the runtime directory removed under a running VM", function()
  it("does not stop the VM: QMP is connected already, changes and terminate work, close cleans up", function()
    local vm <close> = assert(create("rmdir", builder("rmdir"), { guest_agent = true }))
    assert(vm:start())
    local dir = vm:properties().RuntimeDirectory
    assert(run("rm -rf " .. q(dir)))
    assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = image() }))
    -- The agent's socket went with the directory: the guest manager cannot
    -- connect, and says where it looked.
    local g, err, code = vm:guest{ timeout_ms = 300 }
    assert.is_nil(g)
    assert.equal("ETIMEDOUT", code)
    assert.truthy(err:find("qga.sock", 1, true), err)
    assert(vm:pause())
    assert(vm:resume())
    assert(vm:remove_scsi_disk(0, 1))
    local info = assert(vm:terminate())
    assert.equal("Stopped", vm:state())
    assert.truthy(info)
    vm:close()
    assert.is_false(run("test -e " .. q(dir)))
  end)
end)

describe("faults: QEMU SIGKILLed at random points", function()
  it("fails every pending call with EVMGONE and keeps each document at what QEMU confirmed, across hundreds of operations", function()
    math.randomseed(tonumber(os.getenv("ORRERY_FAULT_SEED") or "") or os.time())
    local NVMS, WORKERS, LUNS = 4, 3, 4 -- each worker owns LUNs w*10+1..w*10+LUNS
    local vms, tasks, stats = {}, {}, { ops = 0, codes = {} }
    local function tally(code)
      stats.codes[code] = (stats.codes[code] or 0) + 1
    end
    for i = 1, NVMS do
      local w = { id = "kill" .. i, luns = {}, nics = {}, imgs = {} }
      w.vm = assert(create(w.id, builder(w.id)))
      assert(w.vm:start())
      for k = 1, WORKERS do
        for l = 1, LUNS do w.imgs[k * 10 + l] = image() end
      end
      vms[i] = w
    end

    local function worker(w, k)
      local nic_n, pausing = 0, k == 1
      while true do
        local op, ok, err, code = math.random(pausing and 6 or 5)
        if op <= 3 then
          local lun = k * 10 + math.random(LUNS)
          if w.luns[lun] then
            ok, err, code = w.vm:remove_scsi_disk(0, lun)
            if ok then w.luns[lun] = nil end
          else
            ok, err, code = w.vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = w.imgs[lun] })
            if ok then w.luns[lun] = w.imgs[lun] end
          end
        elseif op == 4 and nic_n < 3 then -- 9 NICs a VM, in 16 free ports
          nic_n = nic_n + 1
          local guid = string.format("%08x-0000-4000-8000-%012x", k, nic_n)
          ok, err, code = w.vm:add_nic(guid, { EndpointId = "user" })
          if ok then w.nics[guid] = true end
        elseif op <= 5 then
          ok, err, code = w.vm:qmp("query-status")
        else
          if w.vm:state() == "Running" then
            ok, err, code = w.vm:pause()
          else
            ok, err, code = w.vm:resume()
          end
        end
        stats.ops = stats.ops + 1
        if ok then
          tally("ok")
        else
          tally(code)
          -- Before the kill nothing may fail: the workers own disjoint
          -- resources. After it, only EVMGONE.
          assert(code == "EVMGONE", tostring(err))
          return
        end
      end
    end

    for _, w in ipairs(vms) do
      for k = 1, WORKERS do
        tasks[#tasks + 1] = orrery.spawn(worker, w, k)
      end
      tasks[#tasks + 1] = orrery.spawn(function()
        orrery.sleep(math.random(1000, 3000))
        -- A loaded host runs fewer operations in that time: the kills wait
        -- for the hundreds this test is about (a count, not a speed).
        while stats.ops < 250 do orrery.sleep(20) end
        w.killed_at = stats.ops
        assert(run("kill -KILL " .. w.vm:properties().ProcessId))
      end)
    end
    orrery.wait_all(tasks) -- raises with the message of any failed task

    for _, w in ipairs(vms) do
      -- The workers learn of the kill from QMP's end of file, the VM from
      -- QEMU's exit status: two channels, either may come first.
      assert.is_true(eventually(function() return w.vm:state() == "Stopped" end))
      assert.equal(9, w.vm:properties().Exit.Signal)
      -- The document holds exactly the changes QEMU confirmed.
      local doc = w.vm:document().VirtualMachine.Devices
      local attached = {}
      for lun, att in pairs((doc.Scsi[C0] or {}).Attachments or {}) do attached[tonumber(lun)] = att.Path end
      assert.same(w.luns, attached)
      local nics = {}
      for guid in pairs(doc.NetworkAdapters or {}) do nics[guid] = true end
      assert.same(w.nics, nics)
      local ok, _, code = w.vm:qmp("query-status")
      assert.is_nil(ok)
      assert.equal("EVMGONE", code)
      w.vm:close()
    end
    print(string.format("\n  faults: %d operations on %d VMs, outcomes %s", stats.ops, NVMS,
      (function()
        local parts = {}
        for c, n in pairs(stats.codes) do parts[#parts + 1] = c .. "=" .. n end
        table.sort(parts)
        return table.concat(parts, " ")
      end)()))
    assert.is_true(stats.ops >= 200, "only " .. stats.ops .. " operations")
  end)
end)

describe("faults: afterwards", function()
  it("leaves no QEMU, no runtime directory and no file descriptor behind", function()
    collectgarbage("collect")
    collectgarbage("collect")
    assert.is_true(eventually(function() return qemu_pids() == "" end, 10000), qemu_pids())
    assert.is_true(eventually(function()
      return sh("find " .. q(ROOT) .. " -name qmp.sock -o -name qemu.pid"):gsub("%s+", "") == ""
    end, 5000))
    assert.is_true(eventually(function()
      collectgarbage("collect")
      return fd_count() <= baseline_fds
    end, 5000), "descriptors: " .. fd_count() .. " now, " .. baseline_fds .. " before")
  end)
end)
