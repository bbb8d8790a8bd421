-- SCSI hot-plug through Orrery against the same QMP sent by a raw client
-- (bench/qmp_raw: a blocking socket, nothing else), on TCG, a VM running
-- SeaBIOS with no guest OS (SCSI unplug completes in QEMU alone), measured
-- once SeaBIOS has settled (SETTLE_MS after cont).
--
-- Per run, each side gets a fresh VM of the same document and argv (the
-- raw side's argv and commands come from the plan backend, which translates
-- exactly as the qemu backend does), and times:
--   add32    32 add_scsi_disk, one after the other
--   rm32     32 remove_scsi_disk, one after the other (device_del, wait for
--            DEVICE_DELETED, blockdev-del x2)
--   rm32par  the 32 removes from 32 tasks at once (Orrery); the raw client
--            sends 32 device_del, collects the events, then the blockdev-dels
--   rm1      one remove
--   add32par the 32 adds from 32 tasks at once (Orrery only)
-- Orrery runs twice per run: a VM that terminates with its handle (nothing
-- on disk) and one created with ShouldTerminateOnLastHandleClosed = false,
-- whose every change is journaled in state.json before QEMU sees it
-- ("keep"; the journal costs one write+fsync per loop turn, shared by the
-- requests starting in it, so add32par shows the group commit).
-- Runs are interleaved and rotate which side goes first; medians are
-- printed with the ratios and their targets:
--   add32 Orrery/raw <= 1.2, rm32par Orrery / rm1 Orrery <= 3.
--
--   cmake -S . -B build -DORR_BUILD_BENCH=ON && cmake --build build
--   lua5.4 bench/scsi_bench.lua [runs (default 9)]
-- BUILD=dir picks another build directory than build/.
local B = dofile("bench/lib.lua")
local BUILD = B.use_build()

local orrery = require("orrery")

local RUNS = tonumber(arg[1]) or 9
local N = 32
-- Right after cont, SeaBIOS is booting and QEMU answers QMP several times
-- slower (the vCPU thread holds the big lock): both sides let it settle.
local SETTLE_MS = 1500
local RAW = B.tool(BUILD, "qmp_raw")

local ROOT = B.tmpdir()

local function builder(keep)
  local b = orrery.builder{ owner = "bench", ShouldTerminateOnLastHandleClosed = not keep }
  b:set_memory{ SizeInMB = 256 }
  b:set_processor{ Count = 1 }
  b:add_scsi_controller(0)
  return b
end

local function images(side)
  local t = {}
  for lun = 0, N - 1 do
    t[lun] = ROOT .. "/" .. side .. lun .. ".raw"
    assert(os.execute("truncate -s 1M " .. t[lun]))
  end
  return t
end
-- Separate images per side: two QEMUs may not both open one writable.
local ORR_IMG, RAW_IMG = images("o"), images("r")

local function att(path)
  return { Type = "VirtualDisk", Path = path }
end

local median, quote = B.median, B.quote

-- The raw side's script: the plan backend records the argv and every QMP
-- command of the same calls.
local function raw_script(dir)
  local vm = assert(orrery.create("bench-plan", builder(),
    { backend = "plan", accel = "tcg", runtime_dir = dir }))
  local log_at = 0
  local function sent()
    local out = {}
    local log = vm:plan_log()
    for i = log_at + 1, #log do
      if log[i].kind == "qmp" then out[#out + 1] = log[i].value end
    end
    log_at = #log
    return out
  end
  local argv = B.plan_argv(vm)
  local lines = {}
  local function emit(cmds)
    for _, c in ipairs(cmds) do
      lines[#lines + 1] = require("cjson").encode(c)
    end
  end
  sent()
  assert(vm:start())
  emit(sent())
  lines[#lines + 1] = "sleep " .. SETTLE_MS
  for lun = 0, N - 1 do assert(vm:add_scsi_disk(0, lun, att(RAW_IMG[lun]))) end
  emit(sent())
  lines[#lines + 1] = "mark add32"
  for lun = 0, N - 1 do assert(vm:remove_scsi_disk(0, lun)) end
  emit(sent())
  lines[#lines + 1] = "mark rm32"
  for lun = 0, N - 1 do assert(vm:add_scsi_disk(0, lun, att(RAW_IMG[lun]))) end
  emit(sent())
  lines[#lines + 1] = "mark readd"
  for lun = 0, N - 1 do assert(vm:remove_scsi_disk(0, lun)) end
  local dels, cleanup = {}, {}
  for _, c in ipairs(sent()) do
    if c.execute == "device_del" then dels[#dels + 1] = c else cleanup[#cleanup + 1] = c end
  end
  lines[#lines + 1] = "batch"
  emit(dels)
  lines[#lines + 1] = "end"
  lines[#lines + 1] = "batch"
  emit(cleanup)
  lines[#lines + 1] = "end"
  lines[#lines + 1] = "mark rm32par"
  assert(vm:add_scsi_disk(0, 0, att(RAW_IMG[0])))
  emit(sent())
  lines[#lines + 1] = "mark add1"
  assert(vm:remove_scsi_disk(0, 0))
  emit(sent())
  lines[#lines + 1] = "mark rm1"
  vm:close()
  local path = ROOT .. "/raw.script"
  local f = assert(io.open(path, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  return path, argv
end

local RAW_DIR = ROOT .. "/raw"
local SCRIPT, ARGV = raw_script(RAW_DIR)

local function run_raw()
  assert(os.execute("mkdir -p " .. RAW_DIR))
  local p = assert(io.popen(B.command{ RAW, SCRIPT, "--", table.unpack(ARGV) }))
  local out = {}
  for line in p:lines() do
    local k, v = line:match("^(%S+) ([%d.]+)$")
    if k then out[k] = tonumber(v) end
  end
  assert(p:close(), "qmp_raw failed")
  return out
end

local function run_orrery(i, keep)
  local vm = assert(orrery.create("bench-" .. i, builder(keep),
    { accel = "tcg", runtime_dir = ROOT .. "/o" .. i }))
  assert(vm:start())
  orrery.sleep(SETTLE_MS)
  local out, t = {}, orrery.now()
  local function mark(name)
    local n = orrery.now()
    out[name] = n - t
    t = n
  end
  for lun = 0, N - 1 do assert(vm:add_scsi_disk(0, lun, att(ORR_IMG[lun]))) end
  mark("add32")
  for lun = 0, N - 1 do assert(vm:remove_scsi_disk(0, lun)) end
  mark("rm32")
  for lun = 0, N - 1 do assert(vm:add_scsi_disk(0, lun, att(ORR_IMG[lun]))) end
  mark("readd")
  local tasks = {}
  for lun = 0, N - 1 do
    tasks[#tasks + 1] = orrery.spawn(function() return assert(vm:remove_scsi_disk(0, lun)) end)
  end
  orrery.wait_all(tasks)
  mark("rm32par")
  assert(vm:add_scsi_disk(0, 0, att(ORR_IMG[0])))
  mark("add1")
  assert(vm:remove_scsi_disk(0, 0))
  mark("rm1")
  tasks = {}
  for lun = 0, N - 1 do
    tasks[#tasks + 1] = orrery.spawn(function() return assert(vm:add_scsi_disk(0, lun, att(ORR_IMG[lun]))) end)
  end
  orrery.wait_all(tasks)
  mark("add32par")
  assert(vm:terminate())
  vm:close()
  return out
end

local KEYS = { "add32", "rm32", "rm32par", "add1", "rm1", "add32par" }
local SIDES = { "orr", "keep", "raw" }
local res = {}
for _, side in ipairs(SIDES) do
  res[side] = {}
  for _, k in ipairs(KEYS) do res[side][k] = {} end
end
local runners = {
  orr = function(i) return run_orrery(i) end,
  keep = function(i) return run_orrery(100 + i, true) end,
  raw = function() return run_raw() end,
}
run_orrery(0) -- warm-up: page cache, the loop's first VM
run_orrery(200, true)
for i = 1, RUNS do
  local got = {}
  for j = 0, #SIDES - 1 do
    local side = SIDES[(i + j) % #SIDES + 1]
    got[side] = runners[side](i)
  end
  for _, side in ipairs(SIDES) do
    for _, k in ipairs(KEYS) do table.insert(res[side][k], got[side][k]) end
  end
  local o, kp, r = got.orr, got.keep, got.raw
  io.stderr:write(string.format("run %d: add32 %.0f/%.0f/%.1f ms, rm32 %.0f/%.0f/%.1f, rm32par %.0f/%.0f/%.1f, rm1 %.0f/%.0f/%.1f, add32par %.0f/%.0f (orrery/keep/raw)\n",
    i, o.add32, kp.add32, r.add32, o.rm32, kp.rm32, r.rm32, o.rm32par, kp.rm32par, r.rm32par, o.rm1, kp.rm1, r.rm1, o.add32par, kp.add32par))
end

local m = {}
for _, side in ipairs(SIDES) do
  m[side] = {}
  for _, k in ipairs(KEYS) do
    m[side][k] = #res[side][k] > 0 and median(res[side][k]) or nil
  end
end
print(string.format("SCSI hot-plug, %d disks, TCG, medians of %d interleaved runs (ms):", N, RUNS))
print(string.format("  %-34s %9s %9s %9s %7s %7s", "", "orrery", "keep", "raw QMP", "o/raw", "keep/o"))
local rows = {
  { "add32", "32 hot-adds, sequential" },
  { "rm32", "32 hot-removes, sequential" },
  { "rm32par", "32 hot-removes, concurrent" },
  { "add1", "1 hot-add" },
  { "rm1", "1 hot-remove" },
  { "add32par", "32 hot-adds, concurrent" },
}
for _, row in ipairs(rows) do
  local k = row[1]
  local o, kp, r = m.orr[k], m.keep[k], m.raw[k]
  print(string.format("  %-34s %9.1f %9.1f %9s %7s %6.2fx", row[2], o, kp,
    r and string.format("%.1f", r) or "-", r and string.format("%.2fx", o / r) or "-", kp / o))
end
print("  attach: orrery/raw = " .. B.ratio(m.orr.add32, m.raw.add32, 1.2))
print("  32 concurrent removes / 1 remove (orrery) = " .. B.ratio(m.orr.rm32par, m.orr.rm1, 3))
print(string.format("  32 sequential removes / 32 concurrent (orrery) = %.1fx", m.orr.rm32 / m.orr.rm32par))
assert(os.execute("rm -rf " .. quote(ROOT)))
