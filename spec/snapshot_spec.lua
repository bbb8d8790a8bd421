-- External disk snapshots of a running VM on real QEMU (TCG), issue 13 §2:
-- a qcow2 overlay over a SCSI disk, every disk at one point in time (one
-- QMP transaction), the merge back (block-commit, progress as events), what
-- is refused, a step QEMU refuses rolling everything back, and a fresh
-- engine re-attaching to the VM after the one that took the snapshot died.
-- The data is checked from inside the default guest through qemu-ga: written
-- before the snapshot, after it, read back after the merge. One VM for the
-- file (a clone of the default guest's template); the tests run in order.
local orrery = require("orrery")

local T = require("orrery.testing")
local q = T.q

local ROOT = T.tmpdir()
local RUN = ROOT .. "/run"
local GUID0 = orrery.scsi_controller_guids[0]

-- The debugfs listing of an ext2 image's root: which files the image itself
-- holds (not its overlays).
local function files_in(image)
  return T.sh("debugfs -R 'ls -l /' " .. q(image) .. " 2>/dev/null")
end

-- QEMU's block nodes named like a snapshot's (snap-*, sfile-*).
local function snap_nodes(vm)
  local out = {}
  for _, n in ipairs(assert(vm:qmp("query-named-block-nodes", { flat = true }))) do
    local name = n["node-name"]
    if name:find("^snap%-") or name:find("^sfile%-") then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

-- The image QEMU has open as the top of a SCSI disk.
local function qemu_top(vm, lun)
  local blk = T.block_by_qdev(vm, "disk-0-" .. lun)
  return blk and blk.inserted and blk.inserted.file
end

describe("disk snapshots of a running VM (TCG)", function()
  local vm, g, id, pid

  local function att(lun)
    return ((vm:document().VirtualMachine.Devices.Scsi[GUID0] or {}).Attachments or {})[tostring(lun)]
  end

  local function run(cmd)
    local r = assert(g:exec(cmd))
    assert.are.equal(0, r.exit_code, cmd .. ": " .. r.stderr)
    return r.stdout
  end

  setup(function()
    -- The VM outlives a closed handle: the re-attach test opens it again.
    local b = orrery.builder{ owner = "snapshots", ShouldTerminateOnLastHandleClosed = false }
    b:set_memory{ SizeInMB = 256 }
    b:set_processor{ Count = 1 }
    b:add_scsi_controller(0)
    b:set_linux_kernel_direct_boot(orrery.default_guest())
    id = string.format("snapshots-%d-%d", os.time(), math.random(1e6))
    assert(os.execute("mkdir -p " .. q(RUN)))
    vm, g = T.guest_vm(id, b, {}, RUN .. "/vm")
    pid = vm:properties().ProcessId
  end)

  teardown(function()
    if g then g:close() end
    if vm then
      vm:terminate()
      vm:close()
    end
    -- A test that failed between a close and the next open leaves QEMU
    -- running with no handle here.
    if pid and T.alive(pid) then T.run("kill -9 " .. pid) end
    os.execute("rm -rf " .. q(ROOT))
  end)

  it("puts a qcow2 overlay over a disk and merges it back, data intact", function()
    local base = T.image(ROOT, "32M")
    assert(T.run("mkfs.ext2 -q -F " .. q(base)))
    assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = base }))
    assert(g:mount_scsi_disk(0, 5, "/mnt/snap", { fstype = "ext2", timeout_ms = 20000 }))
    run("echo before > /mnt/snap/a && sync")

    local events = {}
    vm:on("block_job", function(d) events[#events + 1] = d end)
    local ov = ROOT .. "/snap1.qcow2"
    assert(vm:snapshot_disk(0, 5, { overlay = ov }))
    -- The document and QEMU name the overlay as the top; its header names
    -- the base and the base's format.
    assert.are.equal(ov, att(5).Path)
    assert.are.equal(ov, qemu_top(vm, 5))
    local info = T.sh("qemu-img info -U --output=json " .. q(ov))
    assert.matches('"backing%-filename": "' .. base:gsub("%p", "%%%0") .. '"', info)
    assert.matches('"backing%-filename%-format": "raw"', info)
    run("echo after > /mnt/snap/b && sync")
    -- The new write went to the overlay: the base has no b yet.
    assert.matches(" a\n", files_in(base))
    assert.is_nil(files_in(base):match(" b\n"))

    -- Refused, nothing changed: an overlay where a file is, none at all, a
    -- relative one, one where nothing can be written (a raw image then has
    -- no snapshot: EINVAL naming the field).
    local ok, err, code = vm:snapshot_disk(0, 5, { overlay = ov })
    assert.is_nil(ok)
    assert.are.equal("EEXIST", code, err)
    ok, err, code = vm:snapshot_disk(0, 5)
    assert.are.equal("EINVAL", code, err)
    assert.matches("options.overlay", err, 1, true)
    assert.matches("raw image has no snapshots of its own", err)
    ok, err, code = vm:snapshot_disk(0, 5, { overlay = "rel.qcow2" })
    assert.are.equal("EINVAL", code, err)
    assert.matches("options.overlay", err, 1, true)
    ok, err, code = vm:snapshot_disk(0, 5, { overlay = "/proc/nope.qcow2" })
    assert.are.equal("EINVAL", code, err)
    assert.matches("options.overlay: /proc/nope.qcow2", err, 1, true)
    ok, err, code = vm:snapshot_disk(0, 9, { overlay = ROOT .. "/none.qcow2" })
    assert.are.equal("ENOENT", code, err)
    assert.are.equal(ov, att(5).Path)
    assert.are.equal(ov, qemu_top(vm, 5))
    assert.same({ "sfile-0-5-1", "snap-0-5-1" }, snap_nodes(vm))

    assert(vm:commit_disk(0, 5))
    assert.are.equal(base, att(5).Path)
    assert.are.equal(base, qemu_top(vm, 5))
    assert.same({}, snap_nodes(vm))
    local seen = {}
    for _, e in ipairs(events) do
      assert.are.equal("commit-0-5", e.Job)
      seen[e.Status] = true
    end
    assert.is_true(seen.running and seen.merged and seen.concluded,
      "block_job events: " .. require("cjson").encode(events))
    -- Everything reads back in the guest, and the base holds it now.
    assert.are.equal("before\nafter\n", run("cat /mnt/snap/a /mnt/snap/b"))
    run("echo merged > /mnt/snap/c && sync")
    assert.matches(" b\n", files_in(base))
    assert.matches(" c\n", files_in(base))
    -- Nothing left to merge.
    ok, err, code = vm:commit_disk(0, 5)
    assert.are.equal("EINVAL", code, err)
    assert.matches("no snapshot to merge", err)
  end)

  it("snapshots every disk at one point in time and rolls back what QEMU refuses", function()
    local base2 = T.image(ROOT, "16M")
    assert(vm:add_scsi_disk(0, 6, { Type = "VirtualDisk", Path = base2 }))
    local base5 = att(5).Path
    local g5, g6 = ROOT .. "/g5.qcow2", ROOT .. "/g6.qcow2"

    -- A step QEMU refuses (a node by the name the second overlay's file
    -- would take already exists): the first disk's nodes are deleted again,
    -- no overlay file stays, the document is unchanged.
    assert(vm:qmp("blockdev-add", { driver = "null-co", ["node-name"] = "sfile-0-6-1" }))
    local doc = vm:document()
    local ok, err, code = vm:snapshot_disks{ ["0-5"] = g5, ["0-6"] = g6 }
    assert.is_nil(ok)
    assert.are.equal("EBACKEND", code, err)
    assert.matches("sfile%-0%-6%-1", err)
    assert.same(doc, vm:document())
    assert.is_nil(io.open(g5))
    assert.is_nil(io.open(g6))
    assert.same({ "sfile-0-6-1" }, snap_nodes(vm))
    assert(vm:qmp("blockdev-del", { ["node-name"] = "sfile-0-6-1" }))

    -- A group with one member that is no disk changes nothing either.
    ok, err, code = vm:snapshot_disks{ ["0-5"] = g5, ["0-9"] = ROOT .. "/g9.qcow2" }
    assert.are.equal("ENOENT", code, err)
    ok, err, code = vm:snapshot_disks{ ["0-5"] = g5, ["0-6"] = "g6.qcow2" }
    assert.are.equal("EINVAL", code, err)
    assert.matches('disks["0-6"]', err, 1, true)
    assert.same(doc, vm:document())
    assert.is_nil(io.open(g5))

    -- Both at once (one transaction), the guest writing before and after.
    run("echo one > /mnt/snap/d && sync")
    assert(vm:snapshot_disks{ ["0-5"] = g5, ["0-6"] = g6 })
    assert.are.equal(g5, att(5).Path)
    assert.are.equal(g6, att(6).Path)
    assert.are.equal(g5, qemu_top(vm, 5))
    assert.are.equal(g6, qemu_top(vm, 6))
    assert(T.run("qemu-img check -U -q " .. q(g6)))
    run("echo two > /mnt/snap/e && sync")
    assert.is_nil(files_in(base5):match(" e\n"))
    -- A second overlay over the first, then both merged down, top first.
    local g5b = ROOT .. "/g5b.qcow2"
    assert(vm:snapshot_disk(0, 5, { overlay = g5b }))
    assert.are.equal(g5b, att(5).Path)
    run("echo three > /mnt/snap/f && sync")
    assert(vm:commit_disk(0, 5))
    assert.are.equal(g5, att(5).Path)
    assert.are.equal(g5, qemu_top(vm, 5))
    assert(vm:commit_disk(0, 5))
    assert.are.equal(base5, att(5).Path)
    assert.are.equal("one\ntwo\nthree\n", run("cat /mnt/snap/d /mnt/snap/e /mnt/snap/f"))
    assert.matches(" f\n", files_in(base5))

    -- A disk removed with its overlay in place takes the overlay's nodes.
    assert(vm:remove_scsi_disk(0, 6))
    assert.is_nil(att(6))
    assert.same({}, snap_nodes(vm))
  end)

  it("re-attaches to a VM with an overlay: the top image and the chain are known", function()
    local base5 = att(5).Path
    local ov = ROOT .. "/r5.qcow2"
    assert(vm:snapshot_disk(0, 5, { overlay = ov }))
    run("echo reopened > /mnt/snap/g && sync")
    g:close()
    g = nil
    vm:close() -- QEMU runs on; state.json holds the document and the chain
    vm = assert(orrery.open(id, { runtime_dir = RUN .. "/vm" }))
    g = assert(vm:guest{ timeout_ms = 30000 })
    assert.are.equal(ov, att(5).Path)
    assert.are.equal(ov, qemu_top(vm, 5))
    -- The overlay's nodes are the disk's, not orphans deleted on open.
    assert.same({ "sfile-0-5-1", "snap-0-5-1" }, snap_nodes(vm))
    assert(vm:commit_disk(0, 5))
    assert.are.equal(base5, att(5).Path)
    assert.are.equal(base5, qemu_top(vm, 5))
    assert.are.equal("reopened\n", run("cat /mnt/snap/g"))
    assert.matches(" g\n", files_in(base5))
  end)

  -- The engine dies at a named point of a snapshot or merge (ORRERY_FAULT,
  -- engine/src/fault.c), in another process; this one then re-attaches and
  -- must find the document naming the top image QEMU has.
  it("re-attaches after the engine died in the middle of a snapshot or a merge", function()
    local base5 = att(5).Path
    local function reopen()
      vm = assert(orrery.open(id, { runtime_dir = RUN .. "/vm" }))
      g = assert(vm:guest{ timeout_ms = 30000 })
    end
    local function die_at(point, body)
      g:close()
      g = nil
      vm:close()
      vm = nil
      local rc, out = T.orrery_run(ROOT, "die", string.format([[
local orrery = require("orrery")
local vm = assert(orrery.open(%q, { runtime_dir = %q }))
%s
vm:close()
]], id, RUN .. "/vm", body), { ORRERY_FAULT = point })
      assert.are_not.equal(0, rc, "the engine did not die at " .. point .. ": " .. out)
      reopen()
    end

    -- Killed once QEMU has put the overlay over the disk, before the
    -- outcome was written: the journaled intent is adopted.
    local ov = ROOT .. "/c5.qcow2"
    die_at("step:blockdev-snapshot:after",
      string.format("assert(vm:snapshot_disk(0, 5, { overlay = %q }))", ov))
    assert.are.equal(ov, att(5).Path)
    assert.are.equal(ov, qemu_top(vm, 5))
    assert.same({ "sfile-0-5-1", "snap-0-5-1" }, snap_nodes(vm))
    run("echo crashed > /mnt/snap/h && sync")
    assert.is_nil(files_in(base5):match(" h\n"))

    -- Killed before: undone, the overlay's nodes and file gone.
    local ov2 = ROOT .. "/c5b.qcow2"
    die_at("step:blockdev-snapshot:before",
      string.format("assert(vm:snapshot_disk(0, 5, { overlay = %q }))", ov2))
    assert.are.equal(ov, att(5).Path)
    assert.are.equal(ov, qemu_top(vm, 5))
    assert.same({ "sfile-0-5-1", "snap-0-5-1" }, snap_nodes(vm))
    assert.is_nil(io.open(ov2))

    -- Killed with the merge job started: the job is cancelled, the overlay
    -- stays the top, and a merge from this engine then completes.
    die_at("step:block-commit:after", "assert(vm:commit_disk(0, 5))")
    assert.are.equal(ov, att(5).Path)
    assert.is_truthy(T.eventually(function()
      return #assert(vm:qmp("query-block-jobs")) == 0
    end, 10000, 100), "the merge job of the dead engine is still there")
    assert.are.equal(ov, qemu_top(vm, 5))
    assert(vm:commit_disk(0, 5))
    assert.are.equal(base5, att(5).Path)
    assert.are.equal(base5, qemu_top(vm, 5))
    assert.same({}, snap_nodes(vm))
    assert.are.equal("crashed\n", run("cat /mnt/snap/h"))
    assert.matches(" h\n", files_in(base5))

    -- Killed once the merge completed, before the overlay's nodes were
    -- deleted: adopted, the base is the top, the nodes are deleted on open.
    local ov3 = ROOT .. "/c5c.qcow2"
    assert(vm:snapshot_disk(0, 5, { overlay = ov3 }))
    run("echo late > /mnt/snap/i && sync")
    die_at("cleanup:blockdev-del:before", "assert(vm:commit_disk(0, 5))")
    assert.are.equal(base5, att(5).Path)
    assert.are.equal(base5, qemu_top(vm, 5))
    assert.same({}, snap_nodes(vm))
    assert.are.equal("late\n", run("cat /mnt/snap/i"))
    assert.matches(" i\n", files_in(base5))
    -- The disk takes a new overlay as its first again.
    assert(vm:snapshot_disk(0, 5, { overlay = ROOT .. "/c5d.qcow2" }))
    assert.same({ "sfile-0-5-1", "snap-0-5-1" }, snap_nodes(vm))
    assert(vm:commit_disk(0, 5))
  end)
end)
