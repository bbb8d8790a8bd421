-- Live migration between two engines on real QEMU (TCG) booting the default guest: the source is
-- this process, the destination a second `orrery run` process (orrery.receive). One source VM is
-- booted for the file; the failures come first (each must leave it running as it was), the
-- successful migration last (it ends the source). Checked from inside the guest, through qemu-ga.
local orrery = require("orrery")
local T = require("orrery.testing")

local ROOT = T.tmpdir()
assert(os.execute("mkdir -p " .. ROOT .. "/run " .. ROOT .. "/dest " .. ROOT .. "/sock"))
local SOCK = ROOT .. "/sock/m.sock"
local URI = "unix:" .. SOCK

-- A destination engine in its own process, below root (ROOT): body is the recipe after `local vm, err,
-- code = orrery.receive(...)` (printing its results); uri where it listens (URI); returns its pid.
local function destination(name, body, args, uri, root)
  root = root or ROOT
  local recipe = string.format([[
local orrery = require("orrery")
local vm, err, code = orrery.receive(%q, { listen = %q, timeout_ms = 120000,
  runtime_dir = %q })
print("RECEIVED", vm and vm:state() or code, err or "")
%s
]], name, uri or URI, root .. "/dest/" .. name, body)
  return T.orrery_run(root, name, recipe, nil, true, args)
end

-- Waits for a background process to end; its log.
local function finished(pid, name, ms, root)
  assert.is_true(T.eventually(function() return not T.alive(pid) end, ms or 120000, 100),
    name .. " did not end")
  return T.read((root or ROOT) .. "/" .. name .. ".log") or ""
end

-- A loopback tcp port nobody listens on now.
local function free_port()
  for _ = 1, 50 do
    local port = math.random(20000, 60000)
    if T.sh("ss -Htln 'sport = :" .. port .. "'") == "" then return port end
  end
  error("no free tcp port found")
end

local function listening()
  assert.is_true(T.eventually(function() return T.sh("test -S " .. SOCK .. " && echo y || true") == "y\n" end,
    30000, 50), "the destination does not listen on " .. SOCK)
end

describe("live migration between two engines (TCG)", function()
  local vm, g, disk, doc_before
  local pids = {}
  local events = {}

  local function run(cmd)
    local r = assert(g:exec(cmd))
    assert.are.equal(0, r.exit_code, cmd .. ": " .. r.stderr)
    return r.stdout
  end

  -- The source as it was: running, the document unchanged, the agent answering, the file there.
  local function source_unchanged()
    assert.are.equal("Running", vm:state())
    assert.are.same(doc_before, vm:document())
    assert.are.equal("before\n", g:read_file("/root/before.txt"))
    assert.are.equal("disk\n", g:read_file("/mnt/d/f.txt"))
    assert(g:write_file("/mnt/d/h.txt", "still writable\n"))
    assert.are.equal("still writable\n", run("cat /mnt/d/h.txt"))
    assert.are.equal("running", assert(vm:qmp("query-status")).status)
  end

  setup(function()
    local b = T.builder("migrate", { memory = 256 })
    b:set_linux_kernel_direct_boot(orrery.default_guest())
    local id = string.format("mig-src-%d", math.random(1e6))
    vm = assert(orrery.create(id, b, { accel = "tcg", runtime_dir = ROOT .. "/run/src" }))
    vm:on("migration", function(d) events[#events + 1] = d.Phase end)
    assert(vm:start())
    g = assert(vm:guest{ timeout_ms = 90000 })
    assert(g:write_file("/root/before.txt", "before\n"))
    -- A disk added at run time, formatted, mounted and written: it must survive the move.
    disk = T.image(ROOT, "64M")
    assert(vm:add_scsi_disk(0, 3, { Type = "VirtualDisk", Path = disk }))
    local dev = assert(g:wait_scsi_disk(0, 3, { timeout_ms = 20000 }))
    run("mkfs.ext2 -q " .. dev)
    assert(g:mount_scsi_disk(0, 3, "/mnt/d", { fstype = "ext2" }))
    assert(g:write_file("/mnt/d/f.txt", "disk\n"))
    doc_before = vm:document()
  end)

  teardown(function()
    for _, pid in ipairs(pids) do
      if T.alive(pid) then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    end
    if g then g:close() end
    if vm then
      vm:terminate()
      vm:close()
    end
    T.eventually(function() return T.qemu_pids(ROOT) == "" end, 10000, 100)
    os.execute("rm -rf " .. ROOT)
  end)

  it("refuses bad addresses at once, naming the rule", function()
    local ok, err, code = vm:migrate{ to = "unix:relative/path" }
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
    assert.matches("a unix socket path must be absolute", err)
    ok, err, code = vm:migrate{ to = "ftp:x" }
    assert.are.equal("EINVAL", code)
    assert.matches('must be "unix:/abs/path" or "tcp:HOST:PORT"', err)
    ok, err, code = vm:migrate{ to = "tcp:127.0.0.1:99999" }
    assert.are.equal("EINVAL", code)
    assert.matches("port must be an integer in 0..65535", err)
    -- Nobody listens: the connection fails, the source runs on.
    ok, err, code = vm:migrate{ to = "unix:" .. ROOT .. "/nobody.sock", timeout_ms = 5000 }
    assert.are.equal("EIO", code)
    assert.matches("cannot connect to unix:", err)
    assert.error_matches(function() vm:migrate{ to = URI, speed = 1 } end, "unknown option 'speed'")
    source_unchanged()
  end)

  it("fails cleanly on a peer that speaks another protocol version, or none, or goes silent", function()
    -- socat stands in for a destination, running a shell script per connection (socat would parse
    -- the quotes of a command given inline).
    local n = 0
    local function fake(reply)
      os.remove(SOCK)
      n = n + 1
      local script = T.spit(ROOT .. "/fake" .. n .. ".sh", "head -n 1 >/dev/null\n" .. reply .. "\n")
      local pid = tonumber(T.sh(string.format("socat UNIX-LISTEN:%s EXEC:'sh %s' >/dev/null 2>&1 & echo $!",
        SOCK, script)))
      pids[#pids + 1] = pid
      listening()
      return pid
    end
    -- Each fake reads until the source hangs up, so nothing outlives the test.
    fake([[echo '{"orrery-migrate":2,"type":"ready","token":"x"}'; cat >/dev/null]])
    local ok, err, code = vm:migrate{ to = URI, timeout_ms = 10000 }
    assert.is_nil(ok)
    assert.are.equal("ENOTSUP", code, err)
    assert.matches("the destination speaks migration protocol version 2, this engine 1", err)
    source_unchanged()
    -- It hangs up after the offer.
    fake("true")
    ok, err, code = vm:migrate{ to = URI, timeout_ms = 10000 }
    assert.are.equal("EIO", code)
    assert.matches("the destination's connection ended", err)
    source_unchanged()
    -- It never answers: the caller's deadline.
    fake("cat >/dev/null")
    local t0 = orrery.now()
    ok, err, code = vm:migrate{ to = URI, timeout_ms = 1500 }
    assert.are.equal("ETIMEDOUT", code)
    assert.matches("did not complete within 1500 ms %(the destination did not answer the offer%)", err)
    assert.is_true(orrery.now() - t0 < 5000)
    source_unchanged()
    for _, pid in ipairs(pids) do
      assert.is_true(T.eventually(function() return not T.alive(pid) end, 5000, 20), "socat " .. pid .. " stays")
    end
    os.remove(SOCK)
  end)

  it("is refused by a sandboxed destination whose policy forbids the document, source unchanged", function()
    -- The destination may write only below ROOT/dest and ROOT/sock: the source's writable disk is
    -- outside.
    local name = "refusing"
    local pid = destination(name, [[
local ok, e2, c2 = orrery.receive("x", { listen = "unix:/tmp/orrery-not-allowed.sock" })
print("OUTSIDE", c2, e2)
ok, e2, c2 = orrery.receive("y", { listen = "tcp:192.0.2.1:4444" })
print("REMOTE", c2, e2)
]], "--sandbox --allow-write=" .. ROOT .. "/dest --allow-write=" .. ROOT .. "/sock")
    pids[#pids + 1] = pid
    listening()
    local ok, err, code = vm:migrate{ to = URI, timeout_ms = 60000 }
    assert.is_nil(ok)
    assert.are.equal("EPERM", code, err)
    assert.matches("the destination refused the VM: sandbox: VirtualMachine.Devices.Scsi.[-%x]+.Attachments.3.Path: "
      .. ROOT:gsub("%p", "%%%0") .. "/img%d+.raw is outside the directories this recipe may write", err)
    local log = finished(pid, name)
    assert.matches("RECEIVED\tEPERM\tEPERM: receive: the offered VM was refused: sandbox: ", log)
    assert.matches("OUTSIDE\tEPERM\tEPERM: [^\n]*receive: listen", log)
    assert.matches("REMOTE\tEPERM\tEPERM: sandbox: receive: listen: 192.0.2.1 is not a loopback address", log)
    source_unchanged()
  end)

  it("survives a destination that dies while the stream flows", function()
    local name = "dying"
    local pid = destination(name, "")
    pids[#pids + 1] = pid
    listening()
    -- The destination engine is killed (its QEMU dies with it) once the stream flows.
    local off = vm:on("migration", function(d)
      if d.Phase == "streaming" then os.execute("kill -9 " .. pid) end
    end)
    local ok, err, code = vm:migrate{ to = URI, timeout_ms = 60000 }
    off()
    assert.is_nil(ok)
    assert.matches("^E", code)
    print("\n  (the destination died: " .. tostring(err) .. ")")
    finished(pid, name)
    assert.is_true(T.eventually(function() return vm:state() == "Running" end, 10000, 50))
    source_unchanged()
    os.remove(SOCK)
  end)

  it("cancels at its deadline while the stream flows, the source running as it was", function()
    -- The destination's QEMU is stopped (SIGSTOP) once the stream flows: the stream stalls, the
    -- source's deadline passes mid-stream, the migration is cancelled.
    local name = "stalled"
    local pid = destination(name, "")
    pids[#pids + 1] = pid
    listening()
    local stopped
    local off = vm:on("migration", function(d)
      if d.Phase == "streaming" then
        stopped = T.qemu_pids(ROOT .. "/dest/" .. name)
        if stopped ~= "" then os.execute("kill -STOP " .. stopped) end
      end
    end)
    events = {}
    local t0 = orrery.now()
    local ok, err, code = vm:migrate{ to = URI, timeout_ms = 20000 }
    off()
    assert.is_nil(ok)
    assert.is_truthy(stopped and stopped ~= "", "the destination's QEMU was not found to stop")
    assert.are.equal("ETIMEDOUT", code, err)
    assert.matches("did not complete within 20000 ms %(the stream did not complete%)", err)
    assert.is_true(orrery.now() - t0 < 30000)
    assert.are.same({ "offered", "accepted", "streaming", "timed out" }, events)
    -- The destination heard the source's abort and killed its (stopped) QEMU.
    local log = finished(pid, name)
    assert.matches("RECEIVED\tECANCELED\tECANCELED: receive: the source ended the migration: migrate: the "
      .. "migration did not complete within 20000 ms", log)
    assert.is_true(T.eventually(function() return vm:state() == "Running" end, 10000, 50))
    assert.are.equal("", T.qemu_pids(ROOT .. "/dest/" .. name))
    -- QEMU's own migration state says cancelled, not failed or stuck.
    assert.are.equal("cancelled", assert(vm:qmp("query-migrate")).status)
    source_unchanged()
    os.remove(SOCK)
  end)

  it("moves the running VM with its run-time disk and files to the other engine", function()
    local name = "receiver"
    local pid = destination(name, [[
local T = require("orrery.testing")
local g = assert(vm:guest{ timeout_ms = 30000 })
print("STATE", vm:state())
print("BEFORE", g:read_file("/root/before.txt"))
print("DISK", g:read_file("/mnt/d/f.txt"))
assert(g:write_file("/mnt/d/after.txt", "written at the destination\n"))
print("AFTER", assert(g:exec("sync; cat /mnt/d/after.txt")).stdout)
local att = vm:document().VirtualMachine.Devices.Scsi["df6d0690-79e5-55b6-a5ec-c1e2f77f580a"].Attachments["3"]
print("DOC", att and att.Path)
print("QEMU", T.block_by_qdev(vm, "disk-0-3") and "disk-0-3" or "none")
-- The layout came along: a disk can be added and removed here too.
assert(vm:add_scsi_disk(0, 4, { Type = "VirtualDisk", Path = T.image(]] .. string.format("%q", ROOT .. "/dest") .. [[, "8M") }))
print("HOTPLUG", assert(g:wait_scsi_disk(0, 4, { timeout_ms = 20000 })))
assert(vm:remove_scsi_disk(0, 4))
g:exec("umount /mnt/d")
g:close()
vm:terminate()
vm:close()
print("END")
]])
    pids[#pids + 1] = pid
    listening()
    events = {}
    -- The agent answers right before; the migration reports its times.
    assert.are.equal("before\n", g:read_file("/root/before.txt"))
    local res, err = vm:migrate{ to = URI, timeout_ms = 120000 }
    if not res then
      -- What the destination said, for the failure's message.
      T.eventually(function() return not T.alive(pid) end, 20000, 100)
      err = err .. "\n--- the destination's log:\n" .. (T.read(ROOT .. "/" .. name .. ".log") or "")
    end
    assert.is_truthy(res, err)
    assert.is_true(res.TotalTimeMs > 0 and res.DowntimeMs >= 0 and res.TransferredBytes > 0)
    assert.is_true(res.DowntimeMs < res.TotalTimeMs)
    -- The source is gone, for the reason that it moved.
    assert.are.equal("Stopped", vm:state())
    assert.are.equal("migrated", vm:properties().Exit.Reason)
    assert.are.same({ "offered", "accepted", "streaming", "completed", "handed over" }, events)
    local ok, _, code = vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = disk })
    assert.is_nil(ok)
    assert.are.equal("EVMGONE", code)
    local log = finished(pid, name)
    assert.matches("RECEIVED\tRunning", log)
    assert.matches("STATE\tRunning", log)
    assert.matches("BEFORE\tbefore\n", log)
    assert.matches("DISK\tdisk\n", log)
    assert.matches("AFTER\twritten at the destination\n", log)
    assert.matches("DOC\t" .. disk:gsub("%p", "%%%0"), log)
    assert.matches("QEMU\tdisk%-0%-3", log)
    assert.matches("HOTPLUG\t/dev/sd", log)
    assert.matches("END", log)
    assert.are.equal("", T.qemu_pids(ROOT))
  end)
end)

-- The second VM grows at run time before it moves: memory (virtio-mem, memory_max_mb), a VPMem
-- device and a mapped pipe, each added while it runs; the destination must be built with them.
describe("live migration over tcp (TCG)", function()
  local R = T.tmpdir()
  assert(os.execute("mkdir -p " .. R .. "/run " .. R .. "/dest " .. R .. "/p"))
  local PIPE = R .. "/p/demo.sock"
  local COM = R .. "/p/com2.sock" -- COM2's NamedPipe: a socket at a host path, like a pipe's
  local PMEM_TEXT = "on the pmem device\n"
  local vm, g, mem_kb, pmem_dev
  local pids = {}

  local function run(cmd)
    local r = assert(g:exec(cmd))
    assert.are.equal(0, r.exit_code, cmd .. ": " .. r.stderr)
    return r.stdout
  end
  local function mem_total_kb()
    return tonumber(run("grep MemTotal /proc/meminfo"):match("(%d+) kB"))
  end

  setup(function()
    local b = T.builder("migrate-tcp", { memory = 256 })
    b:set_linux_kernel_direct_boot(orrery.default_guest())
    b:add_vpmem_controller(4, 64 * 1024 * 1024)
    b:set_serial_console(1, COM)
    vm = assert(orrery.create(string.format("mig-tcp-%d", math.random(1e6)), b,
      { accel = "tcg", runtime_dir = R .. "/run/src", memory_max_mb = 512 }))
    assert(vm:start())
    g = assert(vm:guest{ timeout_ms = 90000 })
    assert(g:write_file("/root/before.txt", "before tcp\n"))
    -- Memory grown by 128 MiB (virtio-mem), the guest onlining it.
    local boot = mem_total_kb()
    assert(vm:update_memory(256 + 128))
    assert.is_true(T.eventually(function() return mem_total_kb() >= boot + 127 * 1024 end, 60000, 200),
      "MemTotal did not grow")
    mem_kb = mem_total_kb()
    -- A VPMem device added at run time.
    local img = R .. "/pmem0.raw"
    T.spit(img, PMEM_TEXT .. string.rep("\0", 4 * 1024 * 1024 - #PMEM_TEXT))
    assert(vm:add_vpmem_device(0, { HostPath = img, ReadOnly = true }))
    assert.is_true(T.eventually(function()
      pmem_dev = assert(g:exec("ls /sys/bus/nd/devices/*/block 2>/dev/null")).stdout:match("(pmem%d+)")
      return pmem_dev ~= nil
    end, 30000, 200), "no /dev/pmemN appeared")
    assert.are.equal(PMEM_TEXT, run("head -c " .. #PMEM_TEXT .. " /dev/" .. pmem_dev))
    -- A mapped pipe, bytes through it.
    assert(vm:add_pipe(PIPE))
    assert.is_true(T.eventually(function()
      return assert(g:exec("test -e /dev/virtio-ports/demo")).exit_code == 0
    end, 10000, 100), "the guest has no /dev/virtio-ports/demo")
    local s <close> = assert(vm:pipe(PIPE))
    run("printf 'at the source\\n' > /dev/virtio-ports/demo")
    assert.are.equal("at the source", s:read_line{ timeout_ms = 10000 })
  end)

  teardown(function()
    for _, pid in ipairs(pids) do
      if T.alive(pid) then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    end
    if g then g:close() end
    if vm then
      vm:terminate()
      vm:close()
    end
    T.eventually(function() return T.qemu_pids(R) == "" end, 10000, 100)
    os.execute("rm -rf " .. R)
  end)

  it("refuses a port another process listens on, naming it", function()
    local port = free_port()
    local holder = tonumber(T.sh(string.format(
      "socat TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr /dev/null >/dev/null 2>&1 & echo $!", port)))
    pids[#pids + 1] = holder
    assert.is_true(T.eventually(function() return T.sh("ss -Htln 'sport = :" .. port .. "'") ~= "" end,
      10000, 20))
    local rv, err, code = orrery.receive("busy", { listen = "tcp:127.0.0.1:" .. port, timeout_ms = 5000,
      runtime_dir = R .. "/dest/busy" })
    assert.is_nil(rv)
    assert.are.equal("EBUSY", code, err)
    assert.matches("receive: listen on tcp:127.0.0.1:" .. port .. ": the address is already in use %(another "
      .. "process listens there: choose another port%)", err)
    os.execute("kill " .. holder)
    assert.is_true(T.eventually(function() return not T.alive(holder) end, 5000, 20))
    -- Nobody listens: the source's connect fails at once, the source runs on.
    local ok, err2, code2 = vm:migrate{ to = "tcp:127.0.0.1:" .. port, timeout_ms = 5000 }
    assert.is_nil(ok)
    assert.are.equal("EIO", code2)
    assert.matches("cannot connect to tcp:127.0.0.1:" .. port .. ": connection refused", err2)
    assert.are.equal("Running", vm:state())
  end)

  it("moves the VM over tcp, refusing connections that lack the stream's token", function()
    local port = free_port()
    local uri = "tcp:127.0.0.1:" .. port
    local name = "tcp-receiver"
    local pid = destination(name, string.format([[
local pipe, com = %q, %q
local T = require("orrery.testing")
local g = assert(vm:guest{ timeout_ms = 30000 })
local function run(cmd)
  local r = assert(g:exec(cmd))
  assert(r.exit_code == 0, cmd .. ": " .. r.stderr)
  return r.stdout
end
print("STATE", vm:state())
print("BEFORE", g:read_file("/root/before.txt"))
print("MEMKB", run("grep MemTotal /proc/meminfo"):match("(%%d+) kB"))
print("SIZEMB", vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB)
print("VMEM", vm:qmp("qom-get", { path = "/machine/peripheral/vmem0", property = "size" }))
print("PMEM", run("head -c %d /dev/%s"))
print("PMEMDOC", vm:document().VirtualMachine.Devices.VirtualPMem.Devices["0"].HostPath)
print("PORT", run("ls /dev/virtio-ports/demo"))
print("PIPEPROP", vm:properties().MappedPipes[pipe].GuestPath)
-- The host side connects again, now to this engine's QEMU: bytes both ways.
local s = assert(vm:pipe(pipe))
run("printf 'at the destination\\n' > /dev/virtio-ports/demo")
print("FROMGUEST", s:read_line{ timeout_ms = 10000 })
local reader = orrery.spawn(function()
  return g:exec({ "sh", "-c", "head -n1 /dev/virtio-ports/demo" }, { timeout_ms = 20000 })
end)
orrery.sleep(300)
assert(s:write("to the destination\n"))
print("TOGUEST", reader:wait().stdout)
s:close()
-- COM2's socket is this QEMU's now: what the guest writes to ttyS1 comes out there.
local out = com .. ".out"
os.execute(string.format("socat -T 3 -u UNIX-CONNECT:%%s - > %%s 2>&1 &", com, out))
orrery.sleep(500)
run("printf 'com from the guest\\n' > /dev/ttyS1")
local got
for _ = 1, 50 do
  got = T.read(out)
  if got and got:find("com from the guest", 1, true) then break end
  orrery.sleep(100)
end
print("COM", got)
-- Removed here, the pipe's socket goes (this engine's QEMU bound another name).
assert(vm:remove_pipe(pipe))
print("SOCKET", io.open(pipe) and "still there" or "gone")
-- Memory still changes here: shrink back to the boot size.
assert(vm:update_memory(256))
g:close()
vm:terminate()
vm:close()
print("END")
]], PIPE, COM, #PMEM_TEXT, pmem_dev), nil, uri, R)
    pids[#pids + 1] = pid
    assert.is_true(T.eventually(function() return T.sh("ss -Htln 'sport = :" .. port .. "'") ~= "" end,
      30000, 50), "the destination does not listen on " .. uri)
    -- Between the destination's "ready" and the source's stream, strangers connect: one presents no
    -- token, one a wrong one, one is no stream at all. Each is answered why, and dropped; the source's
    -- own stream is taken after them.
    local strangers = {}
    local function stranger(line)
      return T.sh(string.format("printf '%%s\\n' %s | socat -t 10 - TCP:127.0.0.1:%d 2>&1", T.q(line), port))
    end
    local off = vm:on("migration", function(d)
      if d.Phase == "accepted" then
        strangers[1] = stranger('{"orrery-migrate":1,"type":"stream"}')
        strangers[2] = stranger('{"orrery-migrate":1,"type":"stream","token":"00000000000000000000000000000000"}')
        strangers[3] = stranger('{"orrery-migrate":1,"type":"offer"}')
      end
    end)
    local res, err = vm:migrate{ to = uri, timeout_ms = 120000 }
    off()
    if not res then
      T.eventually(function() return not T.alive(pid) end, 20000, 100)
      err = err .. "\n--- the destination's log:\n" .. (T.read(R .. "/" .. name .. ".log") or "")
    end
    assert.is_truthy(res, err)
    assert.is_true(res.TotalTimeMs > 0 and res.TransferredBytes > 0)
    assert.are.equal("Stopped", vm:state())
    assert.are.equal("migrated", vm:properties().Exit.Reason)
    for i, why in ipairs({ "it has no token", "the stream's token is wrong", "it has no token" }) do
      local r = require("cjson").decode(strangers[i])
      assert.are.equal("refused", r.type)
      assert.are.equal("EPERM", r.code)
      assert.is_truthy(r.message:find(why, 1, true), r.message)
    end
    local log = finished(pid, name, nil, R)
    assert.matches("RECEIVED\tRunning", log)
    assert.matches("STATE\tRunning", log)
    assert.matches("BEFORE\tbefore tcp\n", log)
    assert.matches("MEMKB\t" .. mem_kb .. "\n", log)
    assert.matches("SIZEMB\t384\n", log)
    assert.matches("VMEM\t134217728\n", log)
    assert.matches("PMEM\t" .. PMEM_TEXT, log)
    assert.matches("PMEMDOC\t" .. R:gsub("%p", "%%%0") .. "/pmem0.raw\n", log)
    assert.matches("PORT\t/dev/virtio%-ports/demo\n", log)
    assert.matches("PIPEPROP\t/dev/virtio%-ports/demo\n", log)
    assert.matches("FROMGUEST\tat the destination\n", log)
    assert.matches("TOGUEST\tto the destination\n", log)
    assert.matches("SOCKET\tgone\n", log)
    assert.matches("COM\tcom from the guest", log)
    assert.matches("END", log)
    assert.are.equal("", T.qemu_pids(R))
  end)
end)
