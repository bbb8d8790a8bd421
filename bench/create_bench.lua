-- Create to QMP-ready: orrery.create (translate the document, make the
-- runtime directory, spawn QEMU paused, connect QMP, handshake, read its
-- status) against a bare qemu-system-x86_64 started with the same argv by
-- bench/qmp_raw (fork, exec, poll the socket every 100 us, greeting,
-- qmp_capabilities). The argv comes from the plan backend, which translates
-- exactly as the qemu backend does. TCG; runs interleaved, alternating which
-- side goes first; medians and their ratio (target <= 1.2).
--
--   cmake -S . -B build -DORR_BUILD_BENCH=ON && cmake --build build
--   lua5.4 bench/create_bench.lua [runs (default 15)]
-- BUILD=dir picks another build directory than build/.
local B = dofile("bench/lib.lua")
local BUILD = B.use_build()

local orrery = require("orrery")

local RUNS = tonumber(arg[1]) or 15
local RAW = B.tool(BUILD, "qmp_raw")

local ROOT = B.tmpdir()

-- What a recipe typically creates: memory, two processors, a SCSI
-- controller with a disk, and the default pool of hot-plug root ports.
local DISK = ROOT .. "/disk.raw"
assert(os.execute("truncate -s 64M " .. DISK))
local function builder()
  local b = orrery.builder{ owner = "bench" }
  b:set_memory{ SizeInMB = 512 }
  b:set_processor{ Count = 2 }
  b:add_scsi_controller(0)
  b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = DISK, ReadOnly = true })
  return b
end

local median, quote = B.median, B.quote

local RAW_DIR = ROOT .. "/bare"
local ARGV
do
  local vm = assert(orrery.create("bench-plan", builder(),
    { backend = "plan", accel = "tcg", runtime_dir = RAW_DIR }))
  ARGV = B.plan_argv(vm)
  vm:close()
end
local SCRIPT = ROOT .. "/empty.script"
assert(io.open(SCRIPT, "w")):close()

local function run_bare()
  assert(os.execute("mkdir -p " .. RAW_DIR))
  local p = assert(io.popen(B.command{ RAW, SCRIPT, "--", table.unpack(ARGV) }))
  local ms = tonumber(p:read("a"):match("ready_ms ([%d.]+)"))
  assert(p:close() and ms, "qmp_raw failed")
  return ms
end

-- orrery.now() is the loop's clock (milliseconds, a float), the clock a
-- recipe sees.
local function run_orrery(i)
  local t0 = orrery.now()
  local vm = assert(orrery.create("bench-" .. i, builder(),
    { accel = "tcg", runtime_dir = ROOT .. "/o" .. i }))
  local ms = orrery.now() - t0
  assert(vm:terminate())
  vm:close()
  return ms
end

run_orrery(0) -- warm-up: page cache, the loop's first VM
run_bare()
local orr, bare = B.interleave(RUNS, run_orrery, run_bare, function(i, o, b)
  io.stderr:write(string.format("run %d: orrery %.1f ms, bare %.1f ms\n", i, o, b))
end)
local mo, mb = median(orr), median(bare)
print(string.format("create to QMP ready, TCG, medians of %d interleaved runs:", RUNS))
print(string.format("  orrery.create %.1f ms, bare QEMU + raw QMP %.1f ms: %s",
  mo, mb, B.ratio(mo, mb, 1.2)))
assert(os.execute("rm -rf " .. quote(ROOT)))
