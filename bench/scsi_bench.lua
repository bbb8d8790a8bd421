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
-- Runs are interleaved and alternate which side goes first; medians are
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

local function builder()
  local b = orrery.builder{ owner = "bench" }
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

local function run_orrery(i)
  local vm = assert(orrery.create("bench-" .. i, builder(),
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
  assert(vm:terminate())
  vm:close()
  return out
end

local KEYS = { "add32", "rm32", "rm32par", "add1", "rm1" }
local orr, raw = {}, {}
for _, k in ipairs(KEYS) do orr[k], raw[k] = {}, {} end
run_orrery(0) -- warm-up: page cache, the loop's first VM
B.interleave(RUNS, run_orrery, run_raw, function(i, o, r)
  for _, k in ipairs(KEYS) do
    table.insert(orr[k], o[k])
    table.insert(raw[k], r[k])
  end
  io.stderr:write(string.format("run %d: add32 %.0f/%.1f ms, rm32 %.0f/%.1f, rm32par %.0f/%.1f, rm1 %.0f/%.1f (orrery/raw)\n",
    i, o.add32, r.add32, o.rm32, r.rm32, o.rm32par, r.rm32par, o.rm1, r.rm1))
end)

local m = {}
for _, k in ipairs(KEYS) do m[k] = { o = median(orr[k]), r = median(raw[k]) } end
print(string.format("SCSI hot-plug, %d disks, TCG, medians of %d interleaved runs (ms):", N, RUNS))
print(string.format("  %-34s %9s %9s %7s", "", "orrery", "raw QMP", "ratio"))
local rows = {
  { "add32", "32 hot-adds, sequential" },
  { "rm32", "32 hot-removes, sequential" },
  { "rm32par", "32 hot-removes, concurrent" },
  { "add1", "1 hot-add" },
  { "rm1", "1 hot-remove" },
}
for _, row in ipairs(rows) do
  local k = row[1]
  print(string.format("  %-34s %9.1f %9.1f %6.2fx", row[2], m[k].o, m[k].r, m[k].o / m[k].r))
end
print("  attach: orrery/raw = " .. B.ratio(m.add32.o, m.add32.r, 1.2))
print("  32 concurrent removes / 1 remove (orrery) = " .. B.ratio(m.rm32par.o, m.rm1.o, 3))
print(string.format("  32 sequential removes / 32 concurrent (orrery) = %.1fx", m.rm32.o / m.rm32par.o))
assert(os.execute("rm -rf " .. quote(ROOT)))
