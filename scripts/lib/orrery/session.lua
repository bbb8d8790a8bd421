-- The VMs of an interactive session (the REPL, `orrery run -i`): every VM
-- created (or opened) from start() on is kept here, so it lives as long as
-- the session even when the code that made it dropped it, its events are
-- announced while the REPL runs, and close_all() closes each one on the way
-- out, saying what becomes of it.
local orrery = require("orrery")

local M = {
  vms = {},     -- in creation order
  by_id = {},   -- the REPL's global `vms`
  announcing = false,
}

local function say(fmt, ...)
  if M.announcing then print(string.format(fmt, ...)) end
end

local function describe_exit(d)
  local parts = {}
  if d.ExitCode ~= nil then parts[#parts + 1] = "code " .. tostring(d.ExitCode) end
  if d.Signal ~= nil and d.Signal ~= 0 then parts[#parts + 1] = "signal " .. tostring(d.Signal) end
  local how = d.Reason and tostring(d.Reason) or "exited"
  if #parts > 0 then how = how .. " (" .. table.concat(parts, ", ") .. ")" end
  return how
end

local function track(vm)
  local id = vm:id()
  M.vms[#M.vms + 1] = vm
  M.by_id[id] = vm
  vm:on("state", function(d)
    say("[%s] state: %s -> %s", id, tostring(d.Previous), tostring(d.State))
  end)
  vm:on("exit", function(d) say("[%s] exit: %s", id, describe_exit(d)) end)
  vm:on("device_deleted", function(d)
    say("[%s] device deleted: %s (%s)", id, tostring(d.Device), tostring(d.ResourcePath))
  end)
  vm:on("unresponsive", function(d)
    say("[%s] unresponsive: QEMU did not answer %s within %s ms", id, tostring(d.Command),
      tostring(d.TimeoutMs))
  end)
  vm:on("responsive", function(d)
    say("[%s] responsive again after %s ms", id, tostring(d.UnresponsiveMs))
  end)
  vm:on("settled", function(d)
    say("[%s] settled: %s %s", id, tostring(d.ResourcePath or d.Command), tostring(d.Outcome))
  end)
  return vm
end

local function wrap(name)
  local fn = orrery[name]
  if type(fn) ~= "function" then return end
  orrery[name] = function(...)
    local vm, err, code = fn(...)
    if vm then track(vm) end
    return vm, err, code
  end
end

local started = false

-- Starts tracking (idempotent): orrery.create and orrery.open keep their
-- results here from now on.
function M.start()
  if started then return end
  started = true
  wrap("create")
  wrap("open")
  _G.vms = M.by_id
end

-- Whether events print (only while a prompt is there to print above).
function M.announce(on)
  M.announcing = on and true or false
end

local function is_open(vm)
  return (pcall(vm.id, vm))
end

-- Closes every VM of the session still open; returns how many.
function M.close_all()
  local n = 0
  for _, vm in ipairs(M.vms) do
    if is_open(vm) then
      local ok, doc = pcall(vm.document, vm)
      local keep = ok and type(doc) == "table" and doc.ShouldTerminateOnLastHandleClosed == false
      local how = keep and "left running" or "terminating"
      if keep and type(orrery.open) == "function" then
        how = how .. string.format('; orrery.open("%s") re-attaches', vm:id())
      end
      io.stdout:write(string.format("closing VM %s (%s)\n", vm:id(), how))
      vm:close()
      n = n + 1
    end
  end
  io.stdout:flush()
  M.vms, M.by_id = {}, {}
  _G.vms = M.by_id
  return n
end

return M
