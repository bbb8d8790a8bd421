-- A busted helper (busted --helper=...) that checks the Lua process leaks no
-- file descriptors over a whole run: it lists /proc/<pid>/fd when the suite
-- starts and when it ends, and writes both counts and every descriptor that
-- is new at the end to $ORRERY_LEAK_REPORT, which scripts/leakcheck.sh
-- reads. Without that variable it does nothing.
--
-- The engine opens a few descriptors once per process and keeps them (the
-- loop's epoll and wake-up descriptors, libuv's signal pipes for SIGCHLD),
-- so the helper first creates and terminates one real VM; only then is the
-- baseline taken, and any descriptor left at the end is one the suite leaked.
local busted = require("busted")

local report = os.getenv("ORRERY_LEAK_REPORT")
if report == nil or report == "" then
  return
end

local function own_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  return pid
end

local pid = own_pid()

-- fd number -> what it points at. io.popen's own pipe is listed too, at the
-- same number both times (the lowest free one).
local function fds()
  local t, n = {}, 0
  local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"))
  for line in p:lines() do
    local fd, target = line:match(" (%d+) %-> (.*)$")
    if fd then
      t[tonumber(fd)] = target
      n = n + 1
    end
  end
  p:close()
  return t, n
end

local function warm_up()
  local orrery = require("orrery")
  local b = orrery.builder{ owner = "leakcheck" }
  b:set_memory{ SizeInMB = 64 }
  b:set_processor{ Count = 1 }
  local vm = assert(orrery.create("leakcheck-warmup", b,
    { accel = "tcg", guest_agent = false }))
  assert(vm:terminate())
  vm:close()
  collectgarbage("collect")
end

local before, nbefore

busted.subscribe({ "suite", "start" }, function()
  local ok, err = pcall(warm_up)
  if not ok then
    io.stderr:write("leakcheck: warm-up VM failed: ", tostring(err), "\n")
  end
  before, nbefore = fds()
  return nil, true
end)

busted.subscribe({ "suite", "end" }, function()
  -- VMs and tasks the specs dropped are released by their finalizers, and
  -- a VM closed last is freed once its QEMU is reaped: give that up to
  -- 10 s of loop time before calling what is left a leak.
  local orrery = require("orrery")
  local after, nafter
  local stop = orrery.now() + 10000
  repeat
    collectgarbage("collect")
    collectgarbage("collect")
    after, nafter = fds()
    if nafter <= (nbefore or 0) then break end
    orrery.sleep(50)
  until orrery.now() > stop
  local f = assert(io.open(report, "w"))
  f:write(string.format("fds %d %d\n", nbefore or -1, nafter))
  for fd, target in pairs(after) do
    if before == nil or before[fd] ~= target then
      f:write(string.format("new %d %s\n", fd, target))
    end
  end
  f:close()
  return nil, true
end)
