-- Guest manager benchmarks on TCG, the default guest:
--
-- 1. Boot to guest agent ready: Orrery (orrery.create + vm:start +
--    vm:guest, i.e. QMP handshake, document, cont, agent sync + ping)
--    against bare qemu-system-x86_64 run with the very argv the qemu
--    backend uses (taken from the plan backend, which translates the same
--    way) minus -S, timed by bench/guest_bare (spawn, then the engine's
--    agent client until guest-ping answers). Runs alternate which side goes
--    first; the medians and their ratio are printed (target <= 1.05).
--    Each Orrery boot also says where its time went (medians printed):
--    create + start (QEMU spawned paused, QMP, document, cont), firmware and
--    early kernel (cont until the guest's clock starts), kernel (until /init
--    runs), modules, the rest of /init until qemu-ga is exec'd, and qemu-ga
--    until guest-ping answers. The guest side comes from the marks /init
--    writes to /run/orrery/boot-times; the guest clock is placed on the
--    host's by reading /proc/uptime right after the agent answered.
-- 2. Hot-add latency: the time from vm:add_scsi_disk returning to
--    g:wait_scsi_disk seeing the disk in the guest's /sys (median).
--
--   cmake -S . -B build -DORR_BUILD_BENCH=ON && cmake --build build
--   lua5.4 bench/guest_bench.lua [runs (default 7)] [hot-adds (default 15)]
-- BUILD=dir picks another build directory than build/.
local B = dofile("bench/lib.lua")
local BUILD = B.use_build()

local orrery = require("orrery")

local RUNS = tonumber(arg[1]) or 7
local ADDS = tonumber(arg[2]) or 15
local BARE = B.tool(BUILD, "guest_bare")

local ROOT = B.tmpdir()

-- Which guest this run boots: the one orrery.default_guest() finds (the build's, or
-- $ORRERY_GUEST_DIR), named by its manifest's kernel release. ORRERY_GUEST_KERNEL picks the
-- kernel when the guest is BUILT (build-guest.sh, or cmake's ORR_GUEST_KERNEL); setting it
-- for this script changes nothing, so a run that sets it and gets the other kernel stops
-- here instead of printing the other kernel's figures under its name.
local GUEST = orrery.default_guest()
local RELEASE = (function()
  local dir = GUEST.KernelFilePath:match("^(.*)/[^/]+$") or "."
  local f = assert(io.open(dir .. "/orrery-guest.json"))
  local m = f:read("a")
  f:close()
  return m:match('"kernel_release"%s*:%s*"([^"]*)"') or "?"
end)()
local want = os.getenv("ORRERY_GUEST_KERNEL")
if want and want ~= "" then
  local is_built = RELEASE:find("-orrery$") ~= nil
  if (want == "orrery") ~= is_built then
    io.stderr:write(string.format("guest_bench: ORRERY_GUEST_KERNEL=%s, but the guest at %s runs kernel %s: the variable"
      .. " is read when the guest is built, not when it boots. Build that guest first"
      .. " (cmake -DORR_GUEST_KERNEL=%s, or vendor/guest/build-guest.sh DIR with the variable set)"
      .. " and point ORRERY_GUEST_DIR at DIR\n", want, GUEST.KernelFilePath, RELEASE, want))
    os.exit(1)
  end
end
local function loadavg()
  local f = io.open("/proc/loadavg")
  local l = f and f:read("l") or "?"
  if f then f:close() end
  return l:match("^(%S+ %S+ %S+)") or l
end
print(string.format("guest kernel %s (%s); load average %s", RELEASE, GUEST.KernelFilePath, loadavg()))

local function builder()
  local b = orrery.builder{ owner = "bench" }
  b:set_memory{ SizeInMB = 256 }
  b:set_processor{ Count = 1 }
  b:set_linux_kernel_direct_boot(GUEST)
  b:add_scsi_controller(0)
  return b
end

local median = B.median

-- The qemu backend's argv for this document, in directory dir.
local function bare_argv(dir)
  local vm = assert(orrery.create("bench-plan", builder(),
    { backend = "plan", accel = "tcg", runtime_dir = dir }))
  local argv = B.plan_argv(vm)
  vm:close()
  local out = {}
  for _, a in ipairs(argv) do
    if a ~= "-S" then out[#out + 1] = a end -- bare QEMU runs at once
  end
  return out
end

-- The phases of one boot, in ms, from host times t0 (before create),
-- t_start (start returned) and t_ready (the agent answered), and the guest.
local PHASES = { "create + start", "firmware + early kernel", "kernel", "modules", "rest of /init", "qemu-ga" }
local function phases(g, t0, t_start, t_ready)
  local marks = {}
  for name, up in assert(g:read_file("/run/orrery/boot-times")):gmatch("(%S+) ([%d.]+)") do
    marks[name] = tonumber(up) * 1000
  end
  local ta = orrery.now()
  local up = tonumber(assert(g:read_file("/proc/uptime")):match("^[%d.]+")) * 1000
  local zero = (ta + orrery.now()) / 2 - up -- host time of guest uptime 0
  assert(marks.init and marks.modules and marks.agent, "incomplete /run/orrery/boot-times")
  return {
    t_start - t0, zero - t_start, marks.init, marks.modules - marks.init,
    marks.agent - marks.modules, t_ready - zero - marks.agent,
  }
end

local nrun = 0
local boot_phases = {}
local function orrery_boot()
  nrun = nrun + 1
  local t0 = orrery.now()
  local vm = assert(orrery.create("bench-" .. nrun, builder(),
    { accel = "tcg", runtime_dir = ROOT .. "/o" .. nrun }))
  assert(vm:start())
  local t_start = orrery.now()
  local g = assert(vm:guest{ timeout_ms = 60000 })
  local ms = orrery.now() - t0
  boot_phases[#boot_phases + 1] = phases(g, t0, t_start, t0 + ms)
  g:close()
  vm:terminate()
  vm:close()
  return ms
end

local function bare_boot()
  nrun = nrun + 1
  local dir = ROOT .. "/b" .. nrun
  assert(os.execute("mkdir -p -m 0700 " .. dir))
  local argv = bare_argv(dir)
  local p = assert(io.popen(B.command{ BARE, dir .. "/qga.sock", table.unpack(argv) }))
  local out = p:read("a")
  p:close()
  local ms = tonumber(out:match("ready_ms ([%d.]+)"))
  assert(ms, "guest_bare failed: " .. out)
  return ms
end

if RUNS > 0 then
  print(string.format("boot to guest agent ready, TCG, %d interleaved runs each", RUNS))
  local o, b = B.interleave(RUNS, orrery_boot, bare_boot, function(i, oi, bi)
    print(string.format("  run %d: orrery %6.0f ms   bare qemu %6.0f ms", i, oi, bi))
  end)
  local mo, mb = median(o), median(b)
  print(string.format("median: orrery %.0f ms (target <= 1500), bare qemu %.0f ms, ratio %.3f (target <= 1.05)",
    mo, mb, mo / mb))
  print("load average after the boots: " .. loadavg())
  print("where an Orrery boot goes (medians of the same runs):")
  for i, name in ipairs(PHASES) do
    local v = {}
    for r, p in ipairs(boot_phases) do v[r] = p[i] end
    print(string.format("  %-24s %6.0f ms", name, median(v)))
  end
end

if ADDS < 1 then
  os.execute("rm -rf " .. ROOT)
  return
end
print(string.format("\nadd_scsi_disk returned -> disk visible in the guest, %d hot-adds", ADDS))
local vm <close> = assert(orrery.create("bench-hotadd", builder(),
  { accel = "tcg", runtime_dir = ROOT .. "/hotadd" }))
assert(vm:start())
local g = assert(vm:guest{ timeout_ms = 60000 })
local disk = ROOT .. "/disk.img"
assert(os.execute("truncate -s 16M " .. disk))
local lat = {}
for i = 1, ADDS do
  local lun = i % 64
  assert(vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = disk }))
  local t0 = orrery.now()
  assert(g:wait_scsi_disk(0, lun, { timeout_ms = 10000 }))
  lat[#lat + 1] = orrery.now() - t0
  assert(vm:remove_scsi_disk(0, lun))
end
table.sort(lat)
print(string.format("median %.0f ms (min %.0f, max %.0f)", median(lat), lat[1], lat[#lat]))
g:close()
vm:terminate()
os.execute("rm -rf " .. ROOT)
