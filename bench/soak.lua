-- A bounded soak on real QEMU (TCG, no guest OS): N VMs for M minutes, each
-- driven by three tasks making random run-time changes (SCSI disk add and
-- remove, NIC add, pause and resume, QMP queries), every VM closed and
-- created again now and then. Reports operations done, failures by code,
-- the engine's RSS and open file descriptors at the start and at the end,
-- and the QEMU processes left. It fails (exit 1) on a failure code it does
-- not expect, on QEMU left behind, or on descriptors that grew.
--   lua5.4 bench/soak.lua [VMS=4] [MINUTES=1] [SEED]
package.cpath = "build/?.so;" .. package.cpath
package.path = "scripts/lib/?.lua;scripts/lib/?/init.lua;" .. package.path

local orrery = require("orrery")

local NVMS = tonumber(arg[1]) or 4
local MINUTES = tonumber(arg[2]) or 1
local SEED = tonumber(arg[3]) or os.time()
math.randomseed(SEED)

-- Codes a soak may meet without anything being wrong: two tasks racing for
-- the same VM's state (ESTATE: pause while paused), a port pool that is
-- full (EBUSY), the VM closed and replaced under a task (ECANCELED,
-- EVMGONE when the task's handle is already the old one).
local EXPECTED = { ESTATE = true, EBUSY = true, ECANCELED = true, EVMGONE = true }

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local PID = assert(io.open("/proc/self/stat")):read("l"):match("^(%d+)")

local function rss_kib()
  for line in io.lines("/proc/" .. PID .. "/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end

local function fds()
  return tonumber(sh("ls /proc/" .. PID .. "/fd | wc -l"))
end

local function fd_list()
  return sh("ls -l /proc/" .. PID .. "/fd | awk 'NR > 1 {print $9, $10, $11}'")
end

local ROOT = os.tmpname()
os.remove(ROOT)
assert(os.execute("mkdir -p " .. ROOT))

local function qemus()
  return tonumber(sh("pgrep -fc -- '[q]emu-system-x86_64 .*" .. ROOT .. "/' || true"))
end

local C0 = orrery.scsi_controller_guids[0]
local LUNS = 6
local images = {}
for i = 1, NVMS do
  images[i] = {}
  for l = 1, 3 * LUNS do
    images[i][l] = string.format("%s/vm%d-lun%d.raw", ROOT, i, l)
  end
end
assert(os.execute("truncate -s 4M " .. (function()
  local all = {}
  for i = 1, NVMS do
    for l = 1, 3 * LUNS do all[#all + 1] = images[i][l] end
  end
  return table.concat(all, " ")
end)()))

local generation = 0
local function new_vm(i)
  generation = generation + 1
  local b = orrery.builder{ owner = "soak" }
  b:set_memory{ SizeInMB = 64 }
  b:set_processor{ Count = 1 }
  b:add_scsi_controller(0)
  local id = string.format("soak%d-%d", i, generation)
  return assert(orrery.create(id, b, { accel = "tcg", runtime_dir = ROOT .. "/" .. id }))
end

local stats = { ops = 0, ok = 0, codes = {}, unexpected = {}, recreated = 0 }

local function record(ok, err, code)
  stats.ops = stats.ops + 1
  if ok then
    stats.ok = stats.ok + 1
    return
  end
  stats.codes[code] = (stats.codes[code] or 0) + 1
  if not EXPECTED[code] then
    stats.unexpected[#stats.unexpected + 1] = tostring(err)
  end
end

-- Warm up once so the engine's per-process descriptors exist before the
-- first measurement.
do
  local warm = new_vm(0)
  assert(warm:terminate())
  warm:close()
  collectgarbage("collect")
end
local start = { rss = rss_kib(), fds = fds(), list = fd_list(), t = orrery.now() }
local deadline = start.t + MINUTES * 60000

local slots = {}
for i = 1, NVMS do
  slots[i] = { vm = new_vm(i) }
  assert(slots[i].vm:start())
end

-- Worker k of VM i owns LUNs (k-1)*LUNS+1 .. k*LUNS, so two workers never
-- race for one LUN; they do race for the VM's run state.
local function worker(i, k)
  local slot, nics = slots[i], 0
  while orrery.now() < deadline do
    local vm = slot.vm
    local op, ok, err, code = math.random(10)
    if op <= 5 then
      local lun = (k - 1) * LUNS + math.random(LUNS)
      local scsi = vm:document().VirtualMachine.Devices.Scsi or {}
      if ((scsi[C0] or {}).Attachments or {})[tostring(lun)] then
        ok, err, code = vm:remove_scsi_disk(0, lun)
        if code == "ETIMEDOUT" then
          -- A SCSI unplug needs no guest: say whether QEMU still has it.
          local has = false
          for _, p in ipairs(vm:qmp("qom-list", { path = "/machine/peripheral" }) or {}) do
            if p.name == "disk-0-" .. lun then has = true end
          end
          err = err .. (has and " [QEMU still has the device]" or " [QEMU no longer has the device]")
        end
      else
        -- Read-only: a replaced VM's QEMU may still hold the image for a
        -- moment, and QEMU refuses a second writer (image locking).
        ok, err, code = vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = images[i][lun], ReadOnly = true })
      end
    elseif op == 6 and nics < 3 then
      nics = nics + 1
      ok, err, code = vm:add_nic(string.format("%08x-%04x-4000-8000-%012x", i, k, nics + 100 * generation),
        { EndpointId = "user" })
    elseif op <= 8 then
      if vm:state() == "Running" then
        ok, err, code = vm:pause()
      else
        ok, err, code = vm:resume()
      end
    else
      ok, err, code = vm:qmp("query-status")
    end
    record(ok, err, code)
  end
end

-- Now and then a VM is closed (terminating QEMU) and replaced by a new one.
local function recycler()
  while orrery.now() < deadline - 2000 do
    orrery.sleep(math.random(3000, 8000))
    local i = math.random(NVMS)
    local old = slots[i].vm
    slots[i].vm = new_vm(i)
    assert(slots[i].vm:start())
    old:close()
    stats.recreated = stats.recreated + 1
  end
end

local tasks = {}
for i = 1, NVMS do
  for k = 1, 3 do tasks[#tasks + 1] = orrery.spawn(worker, i, k) end
end
tasks[#tasks + 1] = orrery.spawn(recycler)
orrery.wait_all(tasks)

for i = 1, NVMS do
  assert(slots[i].vm:terminate())
  slots[i].vm:close()
end
slots = nil
collectgarbage("collect")
collectgarbage("collect")
-- Closed VMs are freed once their QEMU is reaped.
local settle = orrery.now() + 5000
while (qemus() > 0 or fds() > start.fds) and orrery.now() < settle do
  orrery.sleep(50)
  collectgarbage("collect")
end
local stop = { rss = rss_kib(), fds = fds(), t = orrery.now() }
local left = qemus()

local codes = {}
for c, n in pairs(stats.codes) do codes[#codes + 1] = c .. "=" .. n end
table.sort(codes)
print(string.format("soak: %d VMs x %.1f min (seed %d): %d operations (%.0f/s), %d ok, %d VMs recreated",
  NVMS, (stop.t - start.t) / 60000, SEED, stats.ops, stats.ops * 1000 / (stop.t - start.t), stats.ok,
  stats.recreated))
print("soak: failures by code: " .. (#codes > 0 and table.concat(codes, " ") or "none"))
print(string.format("soak: engine RSS %d KiB at the start, %d KiB at the end; file descriptors %d, then %d",
  start.rss, stop.rss, start.fds, stop.fds))
print(string.format("soak: QEMU processes left: %d", left))
if stop.fds > start.fds then
  print("soak: descriptors at the start:\n" .. start.list .. "soak: and at the end:\n" .. fd_list())
end
for n, e in ipairs(stats.unexpected) do
  if n > 10 then break end
  print("soak: unexpected failure: " .. e)
end
os.execute("rm -rf " .. ROOT)
if #stats.unexpected > 0 or left > 0 or stop.fds > start.fds then
  os.exit(1)
end
