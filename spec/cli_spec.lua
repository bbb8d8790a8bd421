-- The orrery command line: every subcommand, its --help and its exit codes
-- (0 success, 1 failure, 2 usage, 130 Ctrl-C), `orrery doctor` and the KVM
-- probe behind accel = "auto". The REPL itself is in repl_spec.lua.
local cjson = require("cjson")

local T = require("orrery.testing")
local quote, slurp, spit, tmpdir = T.q, T.slurp, T.spit, T.tmpdir

local ORRERY = T.orrery_bin()

-- Runs orrery with args (and env, stdin text); returns stdout, stderr, code.
local function run(args, opts)
  opts = opts or {}
  local parts = { "env" }
  for k, v in pairs(opts.env or {}) do parts[#parts + 1] = k .. "=" .. quote(v) end
  parts[#parts + 1] = ORRERY
  for _, a in ipairs(args) do parts[#parts + 1] = quote(a) end
  local errfile, infile = os.tmpname(), os.tmpname()
  spit(infile, opts.stdin or "")
  local p = assert(io.popen(table.concat(parts, " ") .. " <" .. quote(infile)
                            .. " 2>" .. quote(errfile)))
  local out = p:read("a")
  local _, how, code = p:close()
  local err = slurp(errfile)
  os.remove(errfile)
  os.remove(infile)
  assert.equal("exit", how)
  return out, err, code
end

local dir
before_each(function() dir = tmpdir() end)
after_each(function() os.execute("rm -rf " .. quote(dir)) end)

-- A verdict file as the probe writes it, for this host's kernel.
local function write_verdict(cache, verdict, kernel)
  assert(os.execute("mkdir -p " .. quote(cache .. "/orrery")))
  local p = io.popen("uname -r")
  kernel = kernel or p:read("l")
  p:close()
  spit(cache .. "/orrery/kvm-verdict", string.format(
    "%s\nqemu_version 7.2\nkernel %s\ndate 2024-01-01T00:00:00Z\nreason written by the spec\n",
    verdict, kernel))
end

describe("orrery template", function()
  it("lists the cache and removes templates by key prefix", function()
    local dir = T.tmpdir()
    finally(function() T.run("rm -rf " .. T.q(dir)) end)
    local env = { XDG_CACHE_HOME = dir }
    local out, err, code = run({ "template", "ls" }, { env = env })
    assert.equal(0, code, err)
    assert.matches("^KEY%s+MEMORY%s+ACCEL%s+DISK%s+LAST USED%s+KERNEL\n$", out)
    -- Two templates as orrery.template leaves them (their RAM and state files are not read).
    for _, key in ipairs({ "00aa11bb22cc33dd", "00aa99ee88ff7766" }) do
      local t = dir .. "/orrery/templates/" .. key
      assert(T.run("mkdir -p " .. T.q(t)))
      spit(t .. "/template.json", string.format([[{"Key":"%s","SizeInMB":256,"Accel":"tcg","LastUsed":%d,
        "Parts":{"Kernel":{"path":"/k"},"Qemu":{"version":"7.2"}}}]], key, os.time()))
      spit(t .. "/ram", "")
    end
    out, err, code = run({ "template", "ls", "--json" }, { env = env })
    assert.equal(0, code, err)
    local list = cjson.decode(out)
    assert.equal(2, #list)
    assert.equal("/k", list[1].Kernel)
    _, err, code = run({ "template", "rm", "00aa" }, { env = env })
    assert.equal(1, code)
    assert.truthy(err:find("00aa names 2 templates", 1, true), err)
    out, err, code = run({ "template", "rm", "00aa9" }, { env = env })
    assert.equal(0, code, err)
    assert.equal("removed 00aa99ee88ff7766\n", out)
    assert.is_false(T.run("test -e " .. T.q(dir .. "/orrery/templates/00aa99ee88ff7766")))
    out, err, code = run({ "template", "rm", "--all" }, { env = env })
    assert.equal(0, code, err)
    assert.equal("removed 00aa11bb22cc33dd\n", out)
    _, err, code = run({ "template", "rm", "ffff" }, { env = env })
    assert.equal(1, code)
    assert.truthy(err:find("no template ffff", 1, true), err)
  end)
end)

describe("orrery help and version", function()
  it("--help lists every command and the exit codes", function()
    local out, err, code = run({ "--help" })
    assert.equal(0, code)
    assert.equal("", err)
    for _, cmd in ipairs{ "run", "plan", "repl", "doctor", "template", "ps", "console", "stop", "kill", "version" } do
      assert.matches("\n  " .. cmd .. " ", out)
    end
    assert.matches("exit codes:", out, 1, true)
    assert.matches("130", out, 1, true)
  end)

  it("every command has --help, also as `help CMD`", function()
    for _, cmd in ipairs{ "run", "plan", "repl", "doctor", "template", "ps", "console", "stop", "kill", "version" } do
      local out, _, code = run({ cmd, "--help" })
      assert.equal(0, code, cmd)
      assert.matches("^usage: orrery " .. cmd, out)
      assert.matches("exit codes:", out, 1, true)
      local again = run({ "help", cmd })
      assert.equal(out, again)
    end
  end)

  it("version prints orrery's, Lua's, libuv's and Jansson's versions", function()
    local out, _, code = run({ "version" })
    assert.equal(0, code)
    assert.matches("^orrery %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, libuv %d", out)
    assert.equal(out, (run({ "--version" })))
    local json = cjson.decode((run({ "version", "--json" })))
    assert.matches("^%d+%.%d+%.%d+$", json.orrery)
    assert.matches("^Lua 5%.4", json.lua)
    assert.is_string(json.libuv)
    assert.is_string(json.jansson)
  end)

  it("exits 2 on usage errors, naming the problem", function()
    local cases = {
      { { "docter" }, "no command 'docter'" },
      { { "run" }, "missing RECIPE" },
      { { "run", "--bogus", "x.lua" }, "unknown option --bogus" },
      { { "-e" }, "-e needs a chunk" },
      { { "plan" }, "missing RECIPE" },
      { { "doctor", "--bogus" }, "unknown option --bogus" },
      { { "doctor", "extra" }, "unknown argument extra" },
      { { "doctor", "--json=yes" }, "option --json takes no argument" },
      { { "-qz" }, "unknown option -z" },
      { { "run", "-l" }, "-l needs a module" },
      { { "run", "--allow-write" }, "--allow-write needs a directory" },
      { { "run", "--allow-write=" }, "--allow-write needs a directory" },
      { { "run", "--log-file" }, "--log-file needs a file" },
      { { "run", "--events" }, "--events needs a file or -" },
      { { "run", "--events=", "x.lua" }, "--events needs a file or -" },
      { { "ps", "--bogus" }, "unknown option --bogus" },
      { { "stop", "--timeout=soon", "x" }, "--timeout must be 1..86400 seconds" },
      { { "kill" }, "missing ID" },
      { { "console", "a", "b" }, "one ID at a time" },
      { { "plan", "-x", "r.lua" }, "unknown option -x" },
      { { "version", "extra" }, "unknown argument extra" },
      { { "repl", "extra" }, "unknown argument extra" },
      { { "help", "nope" }, "no command 'nope'" },
      { { "template" }, "expected ls or rm" },
      { { "template", "cp" }, "unknown subcommand cp" },
      { { "template", "ls", "--all" }, "--all is an option of rm" },
      { { "template", "rm" }, "rm needs a KEY or --all" },
      { { "template", "ls", "x" }, "unknown argument x" },
    }
    for _, c in ipairs(cases) do
      local out, err, code = run(c[1])
      assert.equal(2, code, table.concat(c[1], " "))
      assert.equal("", out)
      assert.truthy(err:find(c[2], 1, true), err)
      assert.truthy(err:find("--help", 1, true), err)
    end
  end)
end)

describe("orrery run", function()
  it("passes ARGS as ... and as arg", function()
    local r = spit(dir .. "/args.lua", [[
local a, b = ...
print(a, b, select("#", ...), arg[0], arg[1], arg[2], #arg)
]])
    local out, err, code = run({ "run", r, "one", "two words" })
    assert.equal(0, code, err)
    assert.equal(string.format("one\ttwo words\t2\t%s\tone\ttwo words\t2\n", r), out)
    -- The lua5.4-style top level runs a recipe the same way.
    assert.equal(out, (run({ r, "one", "two words" })))
  end)

  it("runs the recipe as a task, then every task it spawned", function()
    local r = spit(dir .. "/tasks.lua", [[
local orrery = require("orrery")
orrery.spawn(function() orrery.sleep(30); print("spawned task done") end)
orrery.sleep(5) -- a waiting call yields: this is a task
print("recipe done")
]])
    local out, err, code = run({ "run", r })
    assert.equal(0, code, err)
    assert.equal("recipe done\nspawned task done\n", out)
  end)

  it("exits 1 with the recipe's error and traceback", function()
    local r = spit(dir .. "/fail.lua", 'local x = 1\nerror("recipe broke")\n')
    local out, err, code = run({ "run", r })
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find(r .. ":2: recipe broke", 1, true), err)
    assert.truthy(err:find("stack traceback:", 1, true), err)
  end)

  it("exits 1 when a spawned task failed", function()
    local r = spit(dir .. "/task_fail.lua", [[
require("orrery").spawn(function() error("task broke") end)
]])
    local _, err, code = run({ "run", r })
    assert.equal(1, code)
    assert.truthy(err:find("task broke", 1, true), err)
    assert.truthy(err:find("1 task(s) failed", 1, true), err)
  end)

  it("exits 1 when the recipe cannot be loaded", function()
    local _, err, code = run({ "run", dir .. "/missing.lua" })
    assert.equal(1, code)
    assert.truthy(err:find("cannot open " .. dir .. "/missing.lua", 1, true), err)
    local bad = spit(dir .. "/syntax.lua", "x = = 1\n")
    _, err, code = run({ "run", bad })
    assert.equal(1, code)
    assert.truthy(err:find("syntax.lua:1:", 1, true), err)
  end)

  it("combines short options and takes their arguments attached, as getopt does", function()
    local out, err, code = run({ "-qe", "print('qe', orrery ~= nil)" })
    assert.equal(0, code, err)
    assert.equal("qe\ttrue\n", out)
    out, err, code = run({ "-e" .. "print('attached')", "-iq" }, { stdin = "print('then stdin')" })
    assert.equal(0, code, err)
    assert.equal("attached\nthen stdin\n", out)
    -- Options stop at the recipe: its own arguments pass untouched.
    local r = spit(dir .. "/args.lua", "print(...)\n")
    out, err, code = run({ "run", "-q", r, "-e", "--quiet", "-x" })
    assert.equal(0, code, err)
    assert.equal("-e\t--quiet\t-x\n", out)
    out, err, code = run({ "run", "--", r, "a" })
    assert.equal(0, code, err)
    assert.equal("a\n", out)
  end)

  it("-l requires a module into a global, as lua5.4 -l does, in order with -e", function()
    local out, err, code = run({ "-l", "cjson", "-e", "print(cjson.encode{ 1 })" })
    assert.equal(0, code, err)
    assert.equal("[1]\n", out)
    out, err, code = run({ "-e", "print(j)", "-lj=cjson", "-e", "print(j.encode{ 2 })" })
    assert.equal(0, code, err)
    assert.equal("nil\n[2]\n", out)
    -- With no recipe and no chunk the REPL follows (here: stdin's script).
    out, err, code = run({ "-l", "cjson" }, { stdin = "print(cjson.encode{ 3 })" })
    assert.equal(0, code, err)
    assert.equal("[3]\n", out)
    out, err, code = run({ "-l", "no.such.module", "-e", "print('not reached')" })
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find("module 'no.such.module' not found", 1, true), err)
  end)

  it("has the orrery global wherever user code runs", function()
    local check = "assert(orrery == require('orrery') and orrery.create, 'no orrery global') "
      .. "print('global')"
    local r = spit(dir .. "/global.lua", check .. "\n")
    for _, c in ipairs{
      { { "-e", check } },
      { { r } },
      { { "run", r } },
      { {}, { stdin = check } },
      { { "repl" }, { stdin = check } },
      { { "run", "-" }, { stdin = check } },
    } do
      local out, err, code = run(c[1], c[2])
      assert.equal(0, code, table.concat(c[1], " ") .. ": " .. err)
      assert.equal("global\n", out, table.concat(c[1], " "))
    end
    -- And in a recipe under plan, whose output goes to stderr.
    local p = spit(dir .. "/global_plan.lua", check .. "\nreturn orrery.builder('g')\n")
    local out, err, code = run({ "plan", "--compact", p })
    assert.equal(0, code, err)
    assert.equal("global\n", err)
    assert.matches('"Owner":"g"', out)
  end)

  it("tells a recipe that returns a builder and creates no VM what to do (exit 1)", function()
    local r = spit(dir .. "/builder.lua", [[
local b = orrery.builder{ owner = "only-a-builder" }
b:set_memory{ SizeInMB = 64 }
return b
]])
    local out, err, code = run({ "run", r })
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find(r .. " returned an orrery.Builder and created no VM", 1, true), err)
    assert.truthy(err:find("orrery.create(", 1, true), err)
    assert.truthy(err:find("orrery plan " .. r, 1, true), err)
    -- The same recipe creating its VM as well (the shipped recipes do, so
    -- that plan shows both): nothing to say.
    local both = spit(dir .. "/both.lua", [[
local b = orrery.builder{ owner = "both" }
b:set_memory{ SizeInMB = 64 }
local vm <close> = assert(orrery.create("both", b, { backend = "plan" }))
return b
]])
    out, err, code = run({ "run", both })
    assert.equal(0, code, err)
    assert.equal("", err)
  end)

  it("runs -e chunks first, in order, like lua5.4", function()
    local r = spit(dir .. "/e.lua", "print('recipe sees', x)\n")
    local out, err, code = run({ "-e", "x = 1", "-e", "x = x + 1; print('chunk', x)", r })
    assert.equal(0, code, err)
    assert.equal("chunk\t2\nrecipe sees\t2\n", out)
    out, err, code = run({ "run", "-e", "print('no recipe needed?')", r })
    assert.equal(0, code, err)
    out, err, code = run({ "-e", "error('chunk broke')" })
    assert.equal(1, code)
    assert.truthy(err:find("(command line):1: chunk broke", 1, true), err)
  end)

  it("reads the recipe from stdin for `-`, or when stdin is not a terminal", function()
    local script = "print('from stdin', ...)\n"
    local out, err, code = run({ "run", "-", "a" }, { stdin = script })
    assert.equal(0, code, err)
    assert.equal("from stdin\ta\n", out)
    out, err, code = run({}, { stdin = script })
    assert.equal(0, code, err)
    assert.equal("from stdin\n", out)
    out, err, code = run({ "repl" }, { stdin = "error('piped')" })
    assert.equal(1, code)
    assert.truthy(err:find("stdin:1: piped", 1, true), err)
  end)

  it("reports long waits with plain lines when stderr is not a terminal", function()
    local r = spit(dir .. "/slow.lua", "require('orrery').sleep(5600)\n")
    local _, err, code = run({ "run", r })
    assert.equal(0, code, err)
    assert.truthy(err:find("orrery: waiting: sleep at " .. r .. ":1 ...", 1, true), err)
    assert.truthy(err:find("orrery: ... sleep at " .. r .. ":1 done after", 1, true), err)
    _, err = run({ "run", "-q", r })
    assert.equal("", err)
  end)

  it("exits 130 when Ctrl-C interrupts the recipe; the wait returns ECANCELED", function()
    local r = spit(dir .. "/wait.lua", string.format([[
local orrery = require("orrery")
io.open(%q, "w"):close()
print(orrery.sleep(60000))
io.stdout:flush()
error("interrupted, so this fails")
]], dir .. "/started"))
    local cmd = string.format(
      "%s run %s >%s 2>%s & pid=$!; "
        .. "for i in $(seq 300); do [ -e %s ] && break; sleep 0.05; done; "
        .. "sleep 0.2; kill -INT $pid; wait $pid; echo $?",
      ORRERY, quote(r), quote(dir .. "/out"), quote(dir .. "/err"), quote(dir .. "/started"))
    local p = assert(io.popen(cmd))
    local code = tonumber(p:read("l"))
    p:close()
    assert.equal(130, code)
    assert.equal("nil\tECANCELED: interrupted\tECANCELED\n", slurp(dir .. "/out"))
    local err = slurp(dir .. "/err")
    assert.truthy(err:find("interrupted (Ctrl-C again to kill)", 1, true), err)
  end)

  -- Runs orrery with args in the background, sends one SIGINT once the
  -- file `started` exists; returns the exit code and stdout.
  local function interrupt(args)
    local cmd = string.format(
      "%s %s >%s 2>%s & pid=$!; "
        .. "for i in $(seq 300); do [ -e %s ] && break; sleep 0.05; done; "
        .. "sleep 0.2; kill -INT $pid; wait $pid; echo $?",
      ORRERY, args, quote(dir .. "/out"), quote(dir .. "/err"), quote(dir .. "/started"))
    local p = assert(io.popen(cmd))
    local code = tonumber(p:read("l"))
    p:close()
    return code, slurp(dir .. "/out")
  end

  it("exits 130 after one Ctrl-C even when the recipe takes the ECANCELED in its stride", function()
    local r = spit(dir .. "/calm.lua", string.format([[
io.open(%q, "w"):close()
local ok, msg, code = orrery.sleep(60000)
print("carried on after", code)
]], dir .. "/started"))
    local code, out = interrupt("run " .. quote(r))
    assert.equal(130, code)
    assert.equal("carried on after\tECANCELED\n", out)
    -- A waiting -e chunk at top level, too.
    code, out = interrupt("-e " .. quote(string.format(
      "io.open(%q, 'w'):close() print(select(3, orrery.sleep(60000)))", dir .. "/started")))
    assert.equal(130, code)
    assert.equal("ECANCELED\n", out)
  end)

  it("on a terminal erases the spinner when a wait ends and names each wait's own call", function()
    if not T.run("command -v script >/dev/null") then return pending("needs script(1)") end
    -- Two waits in a row: the second one's op may reuse the first one's
    -- memory, which must not make the spinner keep the first one's name.
    local r = spit(dir .. "/spin.lua", "orrery.sleep(1600)\norrery.sleep(1600)\nprint('after')\n")
    local typescript = dir .. "/typescript"
    assert(T.run(string.format("script -qec %s %s >/dev/null 2>&1",
      quote(ORRERY .. " run " .. quote(r)), quote(typescript))))
    local text = slurp(typescript)
    assert.truthy(text:find("waiting: sleep at " .. r .. ":1", 1, true), text)
    assert.truthy(text:find("waiting: sleep at " .. r .. ":2", 1, true), text)
    -- Once the second wait began, the first one's name is never drawn.
    local second = text:find("waiting: sleep at " .. r .. ":2", 1, true)
    assert.is_nil(text:find("waiting: sleep at " .. r .. ":1", second, true))
    -- The line is erased before the recipe prints: "after" starts a clean line.
    local after = text:find("after", second, true)
    assert.truthy(after, text)
    assert.equal("\r\27[K", text:sub(after - 4, after - 1))
  end)
end)

local function kvm_rw()
  local f = io.open("/dev/kvm", "r+")
  if f then f:close() end
  return f ~= nil
end

describe("orrery doctor", function()
  local NAMES = { "qemu", "kvm", "guest", "ovmf", "runtime-dir", "vm-state", "cgroup", "vhost-vsock", "tap" }

  it("prints one line per check, with what to do about a problem", function()
    write_verdict(dir, "tcg")
    local out, err, code = run({ "doctor" }, { env = { XDG_CACHE_HOME = dir } })
    assert.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(#NAMES, #lines, out)
    for i, name in ipairs(NAMES) do
      local status, n = lines[i]:match("^(%S+)%s+(%S+)%s")
      assert.equal(name, n, lines[i])
      assert.truthy(status == "ok" or status == "warn" or status == "FAIL", lines[i])
      if status ~= "ok" then assert.truthy(lines[i]:find("; fix: ", 1, true), lines[i]) end
    end
    -- The cached verdict is read only where /dev/kvm can be used.
    if kvm_rw() then
      assert.truthy(out:find("written by the spec", 1, true), out)
    else
      assert.truthy(lines[2]:find("/dev/kvm", 1, true), lines[2])
    end
  end)

  it("--json gives the checks and the KVM verdict as data", function()
    write_verdict(dir, "tcg")
    local out, err, code = run({ "doctor", "--json" }, { env = { XDG_CACHE_HOME = dir } })
    assert.equal(0, code, err)
    local doc = cjson.decode(out)
    assert.is_true(doc.ok)
    for i, name in ipairs(NAMES) do
      assert.equal(name, doc.checks[i].name)
      assert.truthy(({ ok = true, warn = true, fail = true })[doc.checks[i].status])
      assert.is_string(doc.checks[i].detail)
    end
    if doc.checks[2].detail:find("/dev/kvm is usable", 1, true) then
      assert.equal("tcg", doc.kvm_verdict.verdict)
      assert.equal("written by the spec", doc.kvm_verdict.reason)
      assert.equal(dir .. "/orrery/kvm-verdict", doc.kvm_verdict.cache)
    end
  end)

  it("fails the qemu check (exit 1) when QEMU is not in PATH", function()
    write_verdict(dir, "tcg")
    local out, _, code = run({ "doctor" }, { env = { XDG_CACHE_HOME = dir, PATH = "/nonexistent" } })
    assert.equal(1, code)
    assert.matches("^FAIL%s+qemu%s+qemu%-system%-x86_64 is not in PATH; fix: ", out)
  end)

  it("--refresh probes again: on this host KVM does not boot the guest, so TCG", function()
    if not kvm_rw() then return pending("needs a read-write /dev/kvm") end
    -- The real probe (up to 15 s): boots the default guest under KVM.
    write_verdict(dir, "kvm")
    local out, err, code = run({ "doctor", "--json", "--refresh" },
                               { env = { XDG_CACHE_HOME = dir } })
    assert.equal(0, code, err)
    local doc = cjson.decode(out)
    assert.equal("tcg", doc.kvm_verdict.verdict)
    local file = slurp(dir .. "/orrery/kvm-verdict")
    assert.matches("^tcg\n", file)
    for _, key in ipairs{ "qemu_version", "qemu_path", "qemu_mtime", "kernel", "date", "reason" } do
      assert.matches("\n" .. key .. " [^\n]+", file)
    end
  end)

  it("the probe says kvm when the guest reaches its ready line", function()
    -- ORRERY_PROBE_ACCEL=tcg boots the probe under TCG: the success path
    -- on a host whose KVM cannot boot it.
    local out, err, code = run({ "doctor", "--json", "--refresh" },
                               { env = { XDG_CACHE_HOME = dir, ORRERY_PROBE_ACCEL = "tcg" } })
    assert.equal(0, code, err)
    local doc = cjson.decode(out)
    assert.equal("kvm", doc.kvm_verdict.verdict)
    assert.matches("the default guest was ready in [%d.]+ s under TCG", doc.kvm_verdict.reason)
  end)
end)

describe("accel = \"auto\"", function()
  local function create(id, backend, env)
    local r = spit(dir .. "/auto.lua", string.format([[
local orrery = require("orrery")
local b = orrery.builder{ owner = "auto" }
b:set_memory{ SizeInMB = 128 }
b:set_processor{ Count = 1 }
local vm <close> = assert(orrery.create(%q, b, { backend = %q }))
print(vm:properties().Accel)
]], id, backend))
    return run({ "run", r }, { env = env })
  end

  it("uses the cached verdict", function()
    write_verdict(dir, "tcg")
    local out, err, code = create("autocached", "qemu", { XDG_CACHE_HOME = dir })
    assert.equal(0, code, err)
    assert.equal("tcg\n", out)
    assert.equal("", err)
  end)

  it("without a verdict probes once, says so on stderr and caches it", function()
    local f = io.open("/dev/kvm", "r+")
    if not f then return pending("needs a read-write /dev/kvm") end
    f:close()
    local env = { XDG_CACHE_HOME = dir, ORRERY_PROBE_ACCEL = "tcg" }
    local out, err, code = create("autoprobe", "qemu", env)
    assert.equal(0, code, err)
    assert.truthy(err:find('accel "auto": checking once whether KVM boots the default guest', 1, true), err)
    assert.matches("^kvm\n", slurp(dir .. "/orrery/kvm-verdict"))
    assert.equal("kvm\n", out) -- the fake success above says KVM; QEMU starts paused
    -- A verdict from another kernel is stale: probed again.
    write_verdict(dir, "tcg", "some-other-kernel")
    out, err, code = create("autoprobe2", "qemu", env)
    assert.equal(0, code, err)
    assert.truthy(err:find("checking once", 1, true), err)
  end)

  it("never probes for plan VMs", function()
    local out, err, code = create("autoplan", "plan", { XDG_CACHE_HOME = dir })
    assert.equal(0, code, err)
    assert.equal("", err)
    assert.is_nil(io.open(dir .. "/orrery/kvm-verdict"))
    assert.equal("tcg\n", out)
  end)
end)
