-- Templates against boots of the same document (the default guest, 256 MiB,
-- one processor, a SCSI controller; TCG), all measured in this run:
--   1. clone to agent-ready (orrery.create with the template, start,
--      guest():ping()) against a boot to agent-ready (create, start,
--      guest():ping()), interleaved; medians and their ratio (targets:
--      clone <= 250 ms and <= 1/10 of the boot);
--   2. 8 clones started at once (one task each) until all answer, against
--      the same 8 one after another (target <= 0.7x);
--   3. 16 clones running at once: their QEMUs' summed PSS against one booted
--      VM's RSS (target <= 3x).
-- The template is built first, in a cache directory of this run's own.
--
--   cmake -S . -B build && cmake --build build
--   lua5.4 bench/template_bench.lua [boots (default 3)] [clones (default 9)]
-- BUILD=dir picks another build directory than build/.
local B = dofile("bench/lib.lua")
B.use_build()

local orrery = require("orrery")

local BOOTS = tonumber(arg[1]) or 3
local CLONES = tonumber(arg[2]) or 9
local ROOT = B.tmpdir()
local median = B.median

local function builder()
  local b = orrery.builder{ owner = "bench" }
  b:set_memory{ SizeInMB = 256 }
  b:set_processor{ Count = 1 }
  b:set_linux_kernel_direct_boot(orrery.default_guest())
  b:add_scsi_controller(0)
  return b
end

local n = 0
local function next_id(kind)
  n = n + 1
  return kind .. n
end

-- create + start + guest():ping(); returns the VM (running), the ms taken
-- and where they went: create, start, guest (vm:guest() and a ping) and,
-- for a clone, start's parts (cont, the agent's first answer, the clock).
local function ready(opts, kind)
  local id = next_id(kind)
  opts.runtime_dir = ROOT .. "/run-" .. id
  local t0 = orrery.now()
  local vm = assert(orrery.create(id, builder(), opts))
  local t1 = orrery.now()
  assert(vm:start())
  local t2 = orrery.now()
  local g = assert(vm:guest{ timeout_ms = 300000 })
  assert(g:ping())
  local t3 = orrery.now()
  local parts = { create = t1 - t0, start = t2 - t1, guest = t3 - t2 }
  for k, v in pairs(orrery._template_start_ms[vm] or {}) do parts[k] = v end
  return vm, t3 - t0, parts
end

-- Medians of each part over runs (a list of ready()'s parts).
local function breakdown(label, runs, keys)
  local out = {}
  for _, k in ipairs(keys) do
    local xs = {}
    for _, p in ipairs(runs) do xs[#xs + 1] = p[k] end
    out[#out + 1] = string.format("%s %.1f", k, median(xs))
  end
  print(string.format("  %s, medians (ms): %s", label, table.concat(out, ", ")))
end

local function pss_kb(pid)
  local f = io.open("/proc/" .. pid .. "/smaps_rollup")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("\nPss:%s+(%d+) kB")) or 0
end

local function rss_kb(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+) kB"))
end

local function main()
  local t0 = orrery.now()
  local t = assert(orrery.template(builder(), { accel = "tcg", dir = ROOT .. "/cache" }))
  print(string.format("template built in %.0f ms (its boot to agent-ready: %d ms)", orrery.now() - t0, t.BootMs))

  -- 1. clone vs boot, interleaved (a boot every CLONES/BOOTS clones).
  local boots, clones, boot_parts, clone_parts = {}, {}, {}, {}
  local booted_rss
  for i = 1, math.max(BOOTS, CLONES) do
    if i <= BOOTS then
      local vm, ms, parts = ready({ accel = "tcg" }, "boot")
      boots[#boots + 1], boot_parts[#boot_parts + 1] = ms, parts
      if not booted_rss then booted_rss = rss_kb(vm:properties().ProcessId) end
      vm:close()
    end
    if i <= CLONES then
      local vm, ms, parts = ready({ template = t }, "clone")
      clones[#clones + 1], clone_parts[#clone_parts + 1] = ms, parts
      vm:close()
    end
  end
  local mb, mc = median(boots), median(clones)
  print(string.format("boot to agent-ready:  median %7.1f ms (%d runs)", mb, #boots))
  breakdown("create (QEMU up, paused), start (cont), guest (agent up + ping)", boot_parts,
    { "create", "start", "guest" })
  print(string.format("clone to agent-ready: median %7.1f ms (%d runs)   clone/boot %.3f (targets <= 250 ms, <= 0.100)",
    mc, #clones, mc / mb))
  breakdown("create (QEMU up, state loaded), start = cont + agent (first answer) + clock (guest-set-time), "
    .. "guest (vm:guest() + ping)", clone_parts, { "create", "start", "cont", "agent", "clock", "guest" })

  -- 2. 8 at once against 8 one after another.
  local seq, par = {}, {}
  for _ = 1, 3 do
    local s0 = orrery.now()
    for _ = 1, 8 do
      local vm = ready({ template = t }, "seq")
      vm:close()
    end
    seq[#seq + 1] = orrery.now() - s0
    local p0, tasks, vms = orrery.now(), {}, {}
    for k = 1, 8 do
      tasks[k] = orrery.spawn(function() vms[k] = ready({ template = t }, "par") end)
    end
    orrery.wait_all(tasks)
    par[#par + 1] = orrery.now() - p0
    for _, vm in ipairs(vms) do vm:close() end
  end
  local ms_, mp = median(seq), median(par)
  print(string.format("8 clones one after another: median %7.1f ms; 8 at once: median %7.1f ms   at once/sequential %.3f (target <= 0.700)",
    ms_, mp, mp / ms_))

  -- 3. 16 clones running together.
  local vms, pss = {}, 0
  for k = 1, 16 do vms[k] = ready({ template = t }, "mem") end
  orrery.sleep(1000)
  for _, vm in ipairs(vms) do pss = pss + pss_kb(vm:properties().ProcessId) end
  for _, vm in ipairs(vms) do vm:close() end
  print(string.format("16 running clones: summed PSS %.1f MiB; one booted VM: RSS %.1f MiB   ratio %.2f (target <= 3)",
    pss / 1024, booted_rss / 1024, pss / booted_rss))
end
main()

os.execute("rm -rf " .. B.quote(ROOT))
