-- The REPL driven through a real pseudo-terminal: each test starts
-- `orrery` in a private tmux server, types with send-keys and reads the
-- screen with capture-pane. Every check polls the screen until what it
-- expects is there or a deadline passes, so a slow, busy machine only makes
-- the tests slower, never flaky.
local T = require("orrery.testing")
local quote, tmpdir = T.q, T.tmpdir

local BUILD = T.build_dir()
local ORRERY = BUILD .. "/orrery"

-- stdout and stderr of a shell command.
local function sh(cmd) return T.sh(cmd .. " 2>&1") end

local function sleep_ms(ms)
  os.execute(string.format("sleep %.3f", ms / 1000))
end

local function now_ms()
  local p = assert(io.popen("date +%s%3N"))
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

local has_tmux = os.execute("command -v tmux >/dev/null 2>&1")

-- A plan-backend VM in one line (the plan backend checks like qemu's).
local function plan_vm(var, id, opts)
  return string.format('%s = assert(orrery.create("%s", (function() local b = orrery.builder{ owner = "t"%s }; '
    .. 'b:set_memory{ SizeInMB = 128 }; b:set_processor{ Count = 1 }; return b end)(), { backend = "plan" }))',
    var, id, opts or "")
end

-- A terminal running a command. The shell around it prints "[exited N]"
-- and keeps the pane open, so the last screen can still be read.
local Term = {}
Term.__index = Term
local serial = 0

function Term.start(args, env)
  serial = serial + 1
  local self = setmetatable({ sock = string.format("orrspec%d_%d", math.random(1e6), serial) }, Term)
  local parts = { "env", "TERM=xterm-256color" }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. quote(v) end
  parts[#parts + 1] = ORRERY
  for _, a in ipairs(args or {}) do parts[#parts + 1] = quote(a) end
  local cmd = table.concat(parts, " ") .. '; echo "[exited $?]"; sleep 600'
  self.tmux = "tmux -f /dev/null -L " .. self.sock
  sh(self.tmux .. " new-session -d -s s -x 150 -y 50 " .. quote(cmd))
  return self
end

function Term:keys(...)
  local ks = {}
  for i, k in ipairs{ ... } do ks[i] = quote(k) end
  sh(self.tmux .. " send-keys -t s " .. table.concat(ks, " "))
end

-- Types text literally (tmux would read "end" as the End key).
function Term:type(text)
  sh(self.tmux .. " send-keys -t s -l " .. quote(text))
end

function Term:line(text)
  self:type(text)
  self:keys("Enter")
end

function Term:screen()
  return sh(self.tmux .. " capture-pane -p -J -S -300 -t s")
end

-- Polls the screen until find(pattern) (plain text unless pattern_mode)
-- holds; fails with the screen when the deadline passes.
function Term:wait_for(text, timeout_ms, pattern_mode)
  local deadline = now_ms() + (timeout_ms or 15000)
  local screen
  repeat
    screen = self:screen()
    if screen:find(text, 1, not pattern_mode) then return screen end
    sleep_ms(50)
  until now_ms() > deadline
  error(string.format("timed out waiting for %q; the screen:\n%s", text, screen), 2)
end

-- The last non-empty line of the screen (where the prompt is).
function Term:last_line()
  local last = ""
  for l in self:screen():gmatch("[^\n]+") do
    if l:match("%S") then last = l end
  end
  return (last:gsub("%s+$", ""))
end

-- Waits until the last line is exactly text (the prompt and what is typed).
function Term:wait_last(text, timeout_ms)
  local deadline = now_ms() + (timeout_ms or 15000)
  repeat
    if self:last_line() == text then return end
    sleep_ms(50)
  until now_ms() > deadline
  error(string.format("timed out waiting for the line %q; the screen:\n%s", text, self:screen()), 2)
end

function Term:kill()
  sh(self.tmux .. " kill-server")
end

local describe_tty = has_tmux and describe or pending

describe_tty("orrery REPL (in a pseudo-terminal)", function()
  local term, state
  local function start(args, env)
    env = env or {}
    env.XDG_STATE_HOME = env.XDG_STATE_HOME or state
    env.XDG_CACHE_HOME = env.XDG_CACHE_HOME or state
    -- The REPL is killed with its terminal: its VMs' runtime directories go
    -- with `state` instead of staying in the shared runtime root.
    env.ORRERY_RUNTIME_DIR = env.ORRERY_RUNTIME_DIR or (state .. "/run")
    term = Term.start(args, env)
    term:wait_for("Ctrl-D leaves")
    term:wait_last(">")
    return term
  end

  before_each(function() state = tmpdir() end)
  after_each(function()
    if term then term:kill() end
    term = nil
    os.execute("rm -rf " .. quote(state))
  end)

  it("prints the values of an expression, and of =expr", function()
    start()
    term:line("1 + 41")
    term:wait_for("\n42\n")
    term:line("='x', 2, nil")
    term:wait_for("\nx%s+2%s+nil\n", nil, true) -- tabs, as print writes them
  end)

  it("prints tables nested, with sorted keys and cycles marked", function()
    start()
    term:line('{ zeta = 1, alpha = { 3, 2, 1 }, ["not an id"] = true }')
    term:wait_for('{ alpha = { 3, 2, 1 }, ["not an id"] = true, zeta = 1 }')
    term:line("t = { name = 'loop' }; t.self = t")
    term:line("t")
    term:wait_for('{ name = "loop", self = <cycle: table: 0x', 15000)
  end)

  it("continues an incomplete statement on the next line", function()
    start()
    term:line("function twice(x)")
    term:wait_last(">>")
    term:line("return 2 * x")
    term:type("end")
    term:keys("Enter")
    term:wait_last(">")
    term:line("twice(21)")
    term:wait_for("\n42\n")
  end)

  it("prints an error with its traceback and carries on", function()
    start()
    term:line('error("boom")')
    term:wait_for("stdin:1: boom\nstack traceback:")
    term:line("x = = 1")
    term:wait_for("unexpected symbol near '='")
    term:line("6 * 7")
    term:wait_for("\n42\n")
  end)

  it("completes the methods of an orrery.VM with Tab", function()
    start()
    term:line(plan_vm("vm", "tabvm"))
    term:wait_last(">")
    term:type("vm:add_")
    term:keys("Tab")
    term:keys("Tab") -- the first Tab completes the common part, the second lists
    local screen = term:wait_for("vm:add_scsi_disk")
    assert.truthy(screen:find("vm:add_vpci_device", 1, true), screen)
    assert.truthy(screen:find("vm:add_nic", 1, true), screen)
    assert.falsy(screen:find("vm:remove_scsi_disk", 1, true), screen)
    term:keys("C-u")
    term:type("vm:remove_scsi_d")
    term:keys("Tab")
    term:wait_last("> vm:remove_scsi_disk(")
    term:keys("C-u")
    term:type("orrery.sle")
    term:keys("Tab")
    term:wait_last("> orrery.sleep(")
  end)

  it("prints a VM event above the prompt, leaving the typed line intact", function()
    -- A real QEMU VM (TCG), terminated from a task while the prompt waits.
    start()
    term:line("b = orrery.builder{ owner = 'ev' }; b:set_memory{ SizeInMB = 128 }; "
              .. "b:set_processor{ Count = 1 }")
    term:line('vm = assert(orrery.create("evvm", b, { accel = "tcg" })); assert(vm:start())')
    term:wait_for("[evvm] state: Created -> Running", 30000)
    term:wait_last(">")
    term:line("orrery.spawn(function() orrery.sleep(1500); vm:terminate() end)")
    term:wait_for("orrery.Task: 0x")
    term:wait_last(">")
    term:type('typed = "still here"')
    local screen = term:wait_for("[evvm] exit:", 30000)
    assert.truthy(screen:find("[evvm] state: Running -> Stopped", 1, true), screen)
    -- The event is above the prompt, and the prompt still holds the line.
    term:wait_last('> typed = "still here"')
    term:keys("Enter")
    term:line("typed")
    term:wait_for("\nstill here\n")
  end)

  it("reports a background task's failure above the prompt", function()
    start()
    term:line('orrery.spawn(function() orrery.sleep(800); error("late failure") end)')
    term:wait_for("orrery.Task: 0x")
    term:wait_last(">")
    term:type("still = 1")
    term:wait_for("orrery: task failed: stdin:1: late failure")
    term:wait_last("> still = 1")
  end)

  it("interrupts a long wait with Ctrl-C and lives on", function()
    start()
    term:line("orrery.sleep(60000)")
    term:wait_for("waiting: sleep at stdin:1") -- the spinner: it is waiting
    term:keys("C-c")
    term:wait_for("\nnil%s+ECANCELED: interrupted%s+ECANCELED\n", nil, true)
    -- Ctrl-C makes the terminal discard input not read yet: only press it
    -- once the chunk visibly runs.
    term:line('print("spinning"); while true do end')
    term:wait_for("\nspinning\n")
    term:keys("C-c")
    term:wait_for("interrupted!")
    term:line("6 * 7")
    term:wait_for("\n42\n")
  end)

  it("drops the line on Ctrl-C and leaves on a second one at an empty prompt", function()
    start()
    term:type("half a line")
    term:wait_last("> half a line") -- read by libedit, not just typed
    term:keys("C-c")
    term:wait_for("half a line^C")
    term:wait_last(">")
    term:keys("C-c")
    term:wait_for("(Ctrl-C again or Ctrl-D to leave)")
    term:keys("C-c")
    term:wait_for("[exited 0]")
  end)

  it("keeps history across sessions", function()
    start()
    term:line("history_marker = 12345")
    term:wait_last(">")
    term:keys("C-d")
    term:wait_for("[exited 0]")
    term:kill()
    local f = assert(io.open(state .. "/orrery/history"))
    -- libedit's format escapes blanks (strvis), so look for the name alone.
    assert.truthy(f:read("a"):find("history_marker", 1, true))
    f:close()
    start()
    term:keys("Up")
    term:wait_last("> history_marker = 12345")
  end)

  it("closes the session's VMs on Ctrl-D, saying what becomes of each", function()
    start()
    term:line(plan_vm("a", "gone"))
    term:line(plan_vm("_", "kept", ", ShouldTerminateOnLastHandleClosed = false"))
    term:wait_last(">")
    term:line("vms.kept:state()")
    term:wait_for("\nCreated\n")
    term:keys("C-d")
    local screen = term:wait_for("[exited 0]")
    assert.truthy(screen:find("closing VM gone (terminating)", 1, true), screen)
    assert.truthy(screen:find("closing VM kept (left running", 1, true), screen)
  end)

  it("orrery run -i enters the REPL with the recipe's VMs alive", function()
    local recipe = state .. "/recipe.lua"
    local f = assert(io.open(recipe, "w"))
    f:write([[
local orrery = require("orrery")
local b = orrery.builder{ owner = "r" }
b:set_memory{ SizeInMB = 128 }
b:set_processor{ Count = 1 }
local vm = assert(orrery.create("fromrecipe", b, { backend = "plan" }))
assert(vm:start())
print("recipe done", ...)
]])
    f:close()
    start({ "run", "-i", recipe, "arg1" })
    term:wait_for("recipe done%s+arg1", nil, true)
    term:line("vms.fromrecipe:state()")
    term:wait_for("\nRunning\n")
    term:keys("C-d")
    term:wait_for("closing VM fromrecipe (terminating)")
    term:wait_for("[exited 0]")
  end)
end)
