-- Operating VMs from the shell (issue 10 §4) against real QEMU: `orrery ps`,
-- `orrery console`, `orrery stop` and `orrery kill` on VMs that outlived
-- the engine that created them, and the one-owner rule (a VM another
-- engine holds is refused, naming it).
local cjson = require("cjson")

local T = require("orrery.testing")
local q, sh = T.q, T.sh

local ORRERY = T.orrery_bin()
local ROOT = T.tmpdir()
local RT = ROOT .. "/rt" -- the runtime root of every engine here
assert(os.execute("mkdir -m 700 " .. q(RT)))

-- Runs orrery with args in the private runtime root; stdout, stderr, code.
local function orr(args, stdin)
  local err = ROOT .. "/err"
  local p = assert(io.popen("ORRERY_RUNTIME_DIR=" .. q(RT) .. " ORRERY_PROGRESS=0 " .. q(ORRERY) .. " "
    .. args .. " 2>" .. q(err) .. (stdin and (" <" .. q(stdin)) or " </dev/null")))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, T.slurp(err), code
end

local function ps()
  local out, err, code = orr("ps --json")
  assert.equal(0, code, err)
  local by = {}
  for _, v in ipairs(cjson.decode(out)) do
    v.ProcessId, v.EnginePid = math.tointeger(v.ProcessId), math.tointeger(v.EnginePid)
    by[v.Id] = v
  end
  return by
end

-- A VM that outlives the `orrery run` that creates it. guest: running the
-- default guest, a clone of its cached template (booting is not what is
-- tested here): its shell waits on COM1 and its agent answers.
local function kept(id, guest)
  local rc, out = T.orrery_run(ROOT, "make-" .. id, string.format([[
    local b = orrery.builder{ owner = "shell-spec", ShouldTerminateOnLastHandleClosed = false }
    b:set_memory{ SizeInMB = 256 }
    local opts = { accel = "tcg" }
    if %s then
      b:set_linux_kernel_direct_boot(orrery.default_guest())
      opts.template = assert(orrery.template(b, { accel = "tcg" }))
    end
    local vm = assert(orrery.create(%q, b, opts))
    assert(vm:start())
    if opts.template then assert(vm:guest{ timeout_ms = 60000 }):close() end
    vm:close()
  ]], tostring(guest), id), { ORRERY_RUNTIME_DIR = RT })
  assert.equal(0, rc, out)
end

describe("orrery ps, console, stop and kill", function()
  teardown(function()
    -- Whatever a failed test left running goes.
    for id in pairs(ps()) do orr("kill " .. q(id)) end
    os.execute("rm -rf " .. q(ROOT))
  end)

  it("list, attach to and stop a VM that outlived its engine", function()
    kept("shell-a", true)
    local v = ps()["shell-a"]
    assert.same({ "running", "shell-spec", 0, true }, { v.State, v.Owner, v.EnginePid, v.Kept })
    assert.is_true(T.alive(v.ProcessId))
    assert.is_true(v.UptimeSeconds > 0)
    local table_out = orr("ps")
    assert.truthy(table_out:find("^ID +STATE +PID +UPTIME +OWNER +ENGINE +KEPT\n"), table_out)
    assert.truthy(table_out:find("\nshell%-a +running +" .. v.ProcessId .. " +%S+ +shell%-spec +%- +yes\n"), table_out)

    -- console: what is typed reaches COM1, what COM1 prints comes back;
    -- Ctrl-] detaches and the VM runs on.
    local input = T.spit(ROOT .. "/typed", "echo shell-$((20+3))\n")
    local out, err, code = orr("console shell-a", nil)
    -- (stdin /dev/null: detaches at end of input at once)
    assert.equal(0, code, err)
    assert.truthy(err:find("Connected to COM1 of VM shell-a. Escape character is ^]", 1, true), err)
    assert.truthy(err:find("detached from VM shell-a (it keeps running)", 1, true), err)
    out, err, code = (function()
      local p = assert(io.popen("(cat " .. q(input) .. "; sleep 4; printf '\\035'; sleep 30) | ORRERY_RUNTIME_DIR="
        .. q(RT) .. " " .. q(ORRERY) .. " console shell-a 2>" .. q(ROOT .. "/cerr")))
      local o = p:read("a")
      local _, _, c = p:close()
      return o, T.slurp(ROOT .. "/cerr"), c
    end)()
    assert.equal(0, code, err)
    assert.truthy(out:find("shell-23", 1, true), out)
    assert.is_true(T.alive(v.ProcessId))
    assert.truthy(T.slurp(RT .. "/shell-a/console.log"):find("shell-23", 1, true))

    -- One owner at a time: while another engine holds the VM, stop is
    -- refused and names it; ps shows it.
    local holder = T.orrery_run(ROOT, "hold", [[
      local vm = assert(orrery.open("shell-a"))
      io.open(]] .. string.format("%q", ROOT .. "/held") .. [[, "w"):close()
      orrery.sleep(6000)
      vm:close()
    ]], { ORRERY_RUNTIME_DIR = RT }, true)
    assert.is_true(T.eventually(function() return T.read(ROOT .. "/held") ~= nil end, 30000, 50))
    assert.equal(holder, ps()["shell-a"].EnginePid)
    out, err, code = orr("stop shell-a")
    assert.equal(1, code)
    assert.truthy(err:find("EBUSY", 1, true), err)
    assert.truthy(err:find("engine pid " .. holder, 1, true), err)
    assert.is_true(T.eventually(function() return not T.alive(holder) end, 30000, 100))

    -- stop: the guest powers off.
    out, err, code = orr("stop --timeout=30 shell-a")
    assert.equal(0, code, err)
    assert.equal("shell-a: guest-shutdown\n", out)
    assert.is_true(T.eventually(function() return not T.alive(v.ProcessId) end, 5000, 20))
    assert.is_nil(ps()["shell-a"])
  end)

  it("kill ends a VM at once; no such VM is ENOENT; bad use is a usage error", function()
    kept("shell-b", false)
    local pid = ps()["shell-b"].ProcessId
    local out, err, code = orr("kill shell-b")
    assert.equal(0, code, err)
    assert.equal("shell-b: host-qmp-quit\n", out)
    -- (gone; init reaps it, as its engine is)
    assert.is_true(T.eventually(function() return not T.alive(pid) end, 5000, 20))
    out, err, code = orr("kill shell-b")
    assert.equal(1, code)
    assert.truthy(err:find("ENOENT", 1, true), err)
    for _, args in ipairs{ "kill", "stop", "console", "stop --timeout=0 x", "kill a b", "ps x" } do
      out, err, code = orr(args)
      assert.equal(2, code, args .. ": " .. err)
    end
  end)

  it("kill ends a QEMU that does not answer QMP (SIGSTOP) by its proved pid", function()
    kept("shell-c", false)
    local pid = ps()["shell-c"].ProcessId
    local ok, err = pcall(function()
      assert(os.execute("kill -STOP " .. pid))
      local out, err, code = orr("kill shell-c")
      assert.equal(0, code, err)
      assert.equal("shell-c: killed by its pid (it did not answer)\n", out)
      assert.truthy(err:find("ETIMEDOUT", 1, true), err)
      assert.truthy(err:find("killing it by its pid", 1, true), err)
      assert.is_true(T.eventually(function() return not T.alive(pid) end, 5000, 20))
      -- its directory goes as after any exit
      assert.is_nil(ps()["shell-c"])
      assert.is_nil(T.read(RT .. "/shell-c/state.json"))
    end)
    os.execute("kill -CONT " .. pid .. " 2>/dev/null")
    assert(ok, err)
  end)

  it("stop of a QEMU that does not answer QMP cannot power it down: it is killed by its proved pid", function()
    kept("shell-g", false)
    local pid = ps()["shell-g"].ProcessId
    local ok, err = pcall(function()
      assert(os.execute("kill -STOP " .. pid))
      local out, err, code = orr("stop --timeout=5 shell-g")
      assert.equal(0, code, err)
      assert.equal("shell-g: killed by its pid (it did not answer)\n", out)
      assert.truthy(err:find("orrery stop: ETIMEDOUT: ", 1, true), err)
      assert.truthy(err:find("killing it by its pid", 1, true), err)
      assert.is_true(T.eventually(function() return not T.alive(pid) end, 5000, 20))
      assert.is_nil(ps()["shell-g"])
    end)
    os.execute("kill -CONT " .. pid .. " 2>/dev/null")
    assert(ok, err)
  end)

  it("kill refuses a recorded pid that is not the VM's QEMU, and that process lives on", function()
    kept("shell-d", false)
    local qpid = ps()["shell-d"].ProcessId
    local state = RT .. "/shell-d/state.json"
    local orig = assert(T.read(state))
    -- An unrelated process of ours: a pid reused by something else.
    local p = assert(io.popen("sleep 120 >/dev/null 2>&1 </dev/null & echo $!"))
    local other = math.tointeger(tonumber(p:read("l")))
    p:close()
    local function forge(text)
      -- rewritten in place: the file stays ours and 0600, only its words lie
      local f = assert(io.open(state, "r+"))
      f:write(text)
      f:close()
      assert(os.execute("truncate -s " .. #text .. " " .. q(state)))
    end
    local ok, err = pcall(function()
      assert(os.execute("kill -STOP " .. qpid))
      -- 1. the pid only: its start time differs
      forge((orig:gsub('"ProcessId":%s*%d+', '"ProcessId": ' .. other)))
      T.spit(RT .. "/shell-d/qemu.pid", other .. "\n")
      local out, err, code = orr("kill shell-d")
      assert.equal(1, code, err)
      assert.truthy(err:find("EPERM", 1, true), err)
      assert.truthy(err:find("pid " .. other .. " is not this VM's QEMU", 1, true), err)
      assert.truthy(err:find("the pid was reused", 1, true), err)
      assert.is_true(T.alive(other))
      -- 2. its start time forged too: its command line is not the VM's
      local stat = assert(T.read("/proc/" .. other .. "/stat"))
      local start = stat:match("%)%s+(.*)"):match(string.rep("%S+%s+", 19) .. "(%d+)")
      forge((orig:gsub('"ProcessId":%s*%d+', '"ProcessId": ' .. other)
        :gsub('"StartTime":%s*%d+', '"StartTime": ' .. start)))
      out, err, code = orr("kill shell-d")
      assert.equal(1, code, err)
      assert.truthy(err:find("its command line does not hold", 1, true), err)
      assert.is_true(T.alive(other))
      assert.is_true(T.alive(qpid))
      assert.is_not_nil(ps()["shell-d"])
      -- the true record again: the frozen QEMU goes
      forge(orig)
      T.spit(RT .. "/shell-d/qemu.pid", qpid .. "\n")
      out, err, code = orr("kill shell-d")
      assert.equal(0, code, err)
      assert.is_true(T.eventually(function() return not T.alive(qpid) end, 5000, 20))
      assert.is_true(T.alive(other))
    end)
    os.execute("kill -CONT " .. qpid .. " 2>/dev/null; kill " .. other .. " 2>/dev/null")
    assert(ok, err)
  end)

  it("kill leaves a frozen QEMU another engine holds to that engine (EBUSY)", function()
    kept("shell-e", false)
    local pid = ps()["shell-e"].ProcessId
    local holder = T.orrery_run(ROOT, "hold-e", [[
      local vm = assert(orrery.open("shell-e"))
      io.open(]] .. string.format("%q", ROOT .. "/held-e") .. [[, "w"):close()
      orrery.sleep(8000)
      vm:close()
    ]], { ORRERY_RUNTIME_DIR = RT }, true)
    local ok, err = pcall(function()
      assert.is_true(T.eventually(function() return T.read(ROOT .. "/held-e") ~= nil end, 30000, 50))
      assert(os.execute("kill -STOP " .. pid))
      local out, err, code = orr("kill shell-e")
      assert.equal(1, code, err)
      assert.truthy(err:find("EBUSY", 1, true), err)
      assert.truthy(err:find("engine pid " .. holder, 1, true), err)
      assert.is_true(T.alive(pid))
    end)
    os.execute("kill -CONT " .. pid .. " 2>/dev/null")
    assert.is_true(T.eventually(function() return not T.alive(holder) end, 30000, 100))
    assert(ok, err)
  end)

  it("orrery.kill ends a frozen kept VM from Lua, which orrery.open leaves", function()
    kept("shell-f", false)
    local pid = ps()["shell-f"].ProcessId
    local ok, err = pcall(function()
      assert(os.execute("kill -STOP " .. pid))
      local rc, out = T.orrery_run(ROOT, "kill-f", [[
        local vm, msg, code = orrery.open("shell-f", { timeout_ms = 1000 })
        assert(vm == nil and code == "ETIMEDOUT", tostring(msg))
        local info = assert(orrery.kill("shell-f"))
        print(info.Signal, info.Reason)
        print(select(3, orrery.kill("shell-f")))
      ]], { ORRERY_RUNTIME_DIR = RT })
      assert.equal(0, rc, out)
      assert.truthy(out:find("9\tkilled by its pid (it did not answer)\nENOENT\n", 1, true), out)
      assert.is_true(T.eventually(function() return not T.alive(pid) end, 5000, 20))
      assert.is_nil(ps()["shell-f"])
    end)
    os.execute("kill -CONT " .. pid .. " 2>/dev/null")
    assert(ok, err)
  end)
end)
