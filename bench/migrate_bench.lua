-- Live migration of a 256 MiB default guest (TCG), through Orrery against QEMU's own migration
-- driven by raw QMP, measured in the same run.
--
-- Each run boots a fresh source VM (the default guest, 256 MiB, agent ready, then SETTLE_MS of idle
-- guest), then:
--   orrery  vm:migrate to an orrery.receive of the same engine process (the handshake, the
--           destination QEMU's launch with the source's layout, the stream over unix sockets, the
--           hand-over and the source's quit): total = the call; downtime = the source QEMU's
--           "downtime"; gap = the last agent answer on the source (pinged every PING_MS from a
--           task) to the first agent answer at the destination (guest-visible, engine included).
--   raw     the same source, QEMU's own "migrate" sent over QMP (vm:qmp, no engine bookkeeping) to
--           a bare destination QEMU already started with the same argv and -incoming unix:
--           total = migrate to query-migrate "completed" (polled every 20 ms, as the engine
--           does); downtime = QEMU's.
-- Runs alternate which side goes first; medians and ratios are printed.
--
--   lua5.4 bench/migrate_bench.lua [runs (default 5)]
-- BUILD=dir picks another build directory than build/.
local B = dofile("bench/lib.lua")
B.use_build()
local orrery = require("orrery")

local RUNS = tonumber(arg[1]) or 5
local MEMORY_MB = 256
local SETTLE_MS = 2000
local PING_MS = 10
local ROOT = B.tmpdir()

local function builder(owner)
  local b = orrery.builder{ owner = owner }
  b:set_memory{ SizeInMB = MEMORY_MB }
  b:set_processor{ Count = 1 }
  b:set_linux_kernel_direct_boot(orrery.default_guest())
  return b
end

local nvm = 0
local function boot()
  nvm = nvm + 1
  local id = "bsrc" .. nvm
  local vm = assert(orrery.create(id, builder("bench"), { accel = "tcg", runtime_dir = ROOT .. "/" .. id }))
  assert(vm:start())
  local g = assert(vm:guest{ timeout_ms = 120000 })
  orrery.sleep(SETTLE_MS)
  return vm, g
end

local function orrery_run(i)
  local vm, g = boot()
  local sock = ROOT .. "/o" .. i .. ".sock"
  local last_src, first_dst
  local stop = false
  -- The source's agent, pinged until it stops answering (the guest is stopped for the last pass).
  local pinger = orrery.spawn(function()
    while not stop do
      if g:ping{ timeout_ms = 200 } then last_src = orrery.now() end
      orrery.sleep(PING_MS)
    end
  end)
  local receiver = orrery.spawn(function()
    local dst = assert(orrery.receive("bdst" .. i, { listen = "unix:" .. sock, timeout_ms = 120000,
      runtime_dir = ROOT .. "/bdst" .. i }))
    local dg = assert(dst:guest{ timeout_ms = 30000 })
    first_dst = orrery.now()
    dg:close()
    return dst
  end)
  orrery.sleep(50) -- the receiver listens
  local t0 = orrery.now()
  local res = assert(vm:migrate{ to = "unix:" .. sock, timeout_ms = 120000 })
  local total = orrery.now() - t0
  stop = true
  local dst = assert(receiver:wait())
  pinger:wait()
  g:close()
  vm:close()
  dst:terminate()
  dst:close()
  return { total = total, downtime = res.DowntimeMs, gap = first_dst - last_src, qemu_total = res.QemuTotalTimeMs }
end

-- The argv Orrery would run for the VM (the plan backend translates as the qemu backend does),
-- in directory dir, with -incoming.
local function bare_argv(dir, incoming)
  local p = assert(orrery.create("plan" .. nvm, builder("bench"), { backend = "plan", accel = "tcg",
    runtime_dir = dir }))
  local argv = B.plan_argv(p)
  p:close()
  argv[#argv + 1] = "-incoming"
  argv[#argv + 1] = incoming
  return argv
end

local function sh(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  f:close()
  return out
end

local function raw_run(i)
  local vm, g = boot()
  local dir = ROOT .. "/raw" .. i
  local sock = ROOT .. "/r" .. i .. ".sock"
  assert(os.execute("mkdir -p " .. dir .. " && chmod 700 " .. dir))
  local pid = tonumber(sh(B.command(bare_argv(dir, "unix:" .. sock)) .. " >" .. dir .. "/out 2>&1 & echo $!"))
  while not os.execute("test -S " .. sock) do orrery.sleep(5) end
  g:close()
  local t0 = orrery.now()
  assert(vm:qmp("migrate-set-capabilities", { capabilities = { { capability = "events", state = true } } }))
  assert(vm:qmp("migrate", { uri = "unix:" .. sock }))
  local st, total
  repeat
    orrery.sleep(20) -- as often as the engine polls: each query takes QEMU's lock
    st = assert(vm:qmp("query-migrate"))
    if st.status == "completed" and not total then total = orrery.now() - t0 end
  until (st.status == "completed" and (st["total-time"] or 0) > 0) or st.status == "failed"
  assert(st.status == "completed", "raw migration failed: " .. tostring(st["error-desc"]))
  os.execute("kill -9 " .. pid .. " 2>/dev/null")
  vm:terminate()
  vm:close()
  -- total: the first poll that saw "completed" (QEMU writes its times down a moment later).
  return { total = total, downtime = st.downtime, qemu_total = st["total-time"] }
end

print(string.format("migrating a %d MiB default guest (TCG), %d runs", MEMORY_MB, RUNS))
local ro, rr = B.interleave(RUNS, orrery_run, raw_run, function(i, a, b)
  print(string.format("run %d: orrery total %.0f ms (QEMU %d), downtime %d ms, agent gap %.0f ms | raw total %.0f ms (QEMU %d), downtime %d ms",
    i, a.total, a.qemu_total, a.downtime, a.gap, b.total, b.qemu_total, b.downtime))
end)
local function med(t, k)
  local v = {}
  for i, r in ipairs(t) do v[i] = r[k] end
  return B.median(v)
end
print(string.format("median orrery: total %.0f ms, QEMU downtime %.0f ms, agent gap %.0f ms",
  med(ro, "total"), med(ro, "downtime"), med(ro, "gap")))
print(string.format("median raw:    total %.0f ms, QEMU downtime %.0f ms", med(rr, "total"), med(rr, "downtime")))
print(string.format("total orrery/raw %.2fx, downtime orrery/raw %.2fx", med(ro, "total") / med(rr, "total"),
  med(ro, "downtime") / math.max(1, med(rr, "downtime"))))
os.execute("rm -rf " .. ROOT)
