-- Helpers the busted specs share (require("orrery.testing")): shell and
-- file one-liners, polling on the engine's loop, a private directory, and
-- the small VMs and QEMU lookups the real-QEMU specs build their tests on.
-- orrery itself is required only by the helpers that use it, so specs that
-- only run the orrery executable do not load the engine.
local M = {}

-- One shell word: s (any value, through tostring) in single quotes.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The stdout of a shell command.
function M.sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

-- True when a shell command exits 0.
function M.run(cmd)
  return os.execute(cmd) == true
end

-- A file's contents, or nil when it cannot be opened.
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- A file's contents; the file must exist.
function M.slurp(path)
  return assert(M.read(path), "cannot read " .. path)
end

-- Writes text to path; returns path.
function M.spit(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- A new private directory (short: unix socket paths live below it).
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(M.run("mkdir -p " .. M.q(d)))
  return d
end

-- The build directory under test (absolute), from ORRERY_BUILD_DIR or busted's cpath.
function M.build_dir()
  local dir = os.getenv("ORRERY_BUILD_DIR") or package.cpath:match("^([^;]*)/%?%.so") or "build"
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  return dir
end

-- The orrery executable under test: $ORRERY_BIN, else the build's.
function M.orrery_bin()
  return os.getenv("ORRERY_BIN") or (M.build_dir() .. "/orrery")
end

-- Runs the orrery executable under test with args (each one shell word);
-- returns stdout, stderr and the exit code. It must exit, not die of a signal.
function M.orrery_cmd(...)
  local args = {}
  for i, a in ipairs{ ... } do args[i] = M.q(a) end
  local errfile = os.tmpname()
  local p = assert(io.popen(M.orrery_bin() .. " " .. table.concat(args, " ") .. " 2>" .. M.q(errfile)))
  local out = p:read("a")
  local _, how, code = p:close()
  local err = M.read(errfile) or ""
  os.remove(errfile)
  assert(how == "exit", "orrery " .. table.concat(args, " ") .. " died of signal " .. tostring(code))
  return out, err, code
end

-- For a describe block: a function that writes a recipe text to a new
-- temporary file and returns its path. after_each is busted's (it is the
-- spec's, not a global): it removes those files after each test.
function M.temp_recipes(after_each)
  local made = {}
  after_each(function()
    for _, p in ipairs(made) do os.remove(p) end
    made = {}
  end)
  return function(text)
    local p = M.spit(os.tmpname(), text)
    made[#made + 1] = p
    return p
  end
end

-- A shipped recipe: $ORRERY_EXAMPLES/name (the installed examples), else scripts/recipes/name.
function M.recipe(name)
  return (os.getenv("ORRERY_EXAMPLES") or "scripts/recipes") .. "/" .. name
end

-- True while process pid exists.
function M.alive(pid)
  return M.run("kill -0 " .. pid .. " 2>/dev/null")
end

-- Polls fn() on the loop every step_ms (20) until it is true (returns true) or ms (10000) pass (false).
function M.eventually(fn, ms, step_ms)
  local orrery = require("orrery")
  local stop = orrery.now() + (ms or 10000)
  while not fn() do
    if orrery.now() > stop then return false end
    orrery.sleep(step_ms or 20)
  end
  return true
end

-- The Lua process's pid, read in-process (through a shell /proc/self is the shell).
local PID
function M.pid()
  if not PID then
    local f = assert(io.open("/proc/self/stat"))
    PID = f:read("l"):match("^(%d+)")
    f:close()
  end
  return PID
end

-- How many file descriptors the Lua process holds.
function M.fd_count()
  return tonumber(M.sh("ls /proc/" .. M.pid() .. "/fd | wc -l"))
end

-- The pids ("" for none) of QEMUs whose argv names a path below root ("[q]" keeps pgrep's shell out).
function M.qemu_pids(root)
  return (M.sh("pgrep -f -- '[q]emu-system-x86_64 .*" .. root .. "/' || true"):gsub("%s+$", ""))
end

-- A new sparse image file below root (img1.raw, img2.raw, ...) of size (a truncate size, "8M").
local nimg = 0
function M.image(root, size)
  nimg = nimg + 1
  local path = root .. "/img" .. nimg .. ".raw"
  assert(M.run("truncate -s " .. (size or "8M") .. " " .. M.q(path)))
  return path
end

-- A minimal VM: opts.memory MiB (64), opts.cpus (1), opts.StopOnReset, SCSI controller 0.
function M.builder(owner, opts)
  opts = opts or {}
  local b = require("orrery").builder{ owner = owner, StopOnReset = opts.StopOnReset }
  b:set_memory{ SizeInMB = opts.memory or 64 }
  b:set_processor{ Count = opts.cpus or 1 }
  b:add_scsi_controller(0)
  return b
end

-- orrery.create on TCG, in opts.runtime_dir or else runtime_dir.
function M.create(id, b, opts, runtime_dir)
  opts = opts or {}
  opts.accel = "tcg"
  opts.runtime_dir = opts.runtime_dir or runtime_dir
  return require("orrery").create(id, b, opts)
end

-- A directory whose name stays the same from run to run of this build tree (made if missing): for
-- paths a template's boot-time document names (a Plan9 share, a COM port's socket), so its template
-- is found in the cache again. One per build tree, so suites of several trees can run at once.
function M.stable_dir(name)
  local d = "/tmp/orrery-" .. name .. "-" .. require("orrery")._template.hash(M.build_dir()):sub(1, 12)
  assert(M.run("mkdir -p " .. M.q(d)))
  return d
end

-- A started VM with its guest agent answering, and its orrery.Guest: a clone of b's template
-- (orrery.template, cached across runs: no boot once the cache has it), or booted when
-- ORRERY_TESTING_TEMPLATES=0 (or opts.boot: specs that test booting itself). opts as create's.
function M.guest_vm(id, b, opts, runtime_dir)
  local orrery = require("orrery")
  opts = opts or {}
  local boot = opts.boot or os.getenv("ORRERY_TESTING_TEMPLATES") == "0"
  opts.boot = nil
  opts.accel = "tcg"
  opts.runtime_dir = opts.runtime_dir or runtime_dir
  if not boot then
    -- The create options that shape QEMU's argv are the template's.
    local topts = { accel = "tcg" }
    for _, k in ipairs({ "hotplug_ports", "memory_max_mb", "guest_agent", "qemu_binary" }) do
      topts[k] = opts[k]
    end
    opts.template = assert(orrery.template(b, topts))
  end
  local vm = assert(orrery.create(id, b, opts))
  local ok, err = vm:start()
  if not ok then vm:close(); error(err, 2) end
  local g, gerr = vm:guest{ timeout_ms = 120000 }
  if not g then vm:close(); error(gerr, 2) end
  return vm, g
end

-- The query-block entry whose qdev path contains qdev, or nil.
function M.block_by_qdev(vm, qdev)
  for _, blk in ipairs(assert(vm:qmp("query-block"))) do
    if blk.qdev and blk.qdev:find(qdev, 1, true) then return blk end
  end
end

-- The ids of every device added with one (-device or device_add), sorted and space-separated, from
-- QOM: unlike query-pci, it does not depend on the firmware having numbered the root ports' buses yet.
function M.pci_ids(vm)
  local ids = {}
  for _, p in ipairs(assert(vm:qmp("qom-list", { path = "/machine/peripheral" }))) do
    if p.type:find("^child<") then ids[#ids + 1] = p.name end
  end
  table.sort(ids)
  return table.concat(ids, " ")
end

-- ---- Engines in other processes (re-attach, crash specs) ----

-- Runs `orrery run` of the build on a recipe (written to dir/name.lua) with extra environment (a table),
-- its output (no progress lines) in dir/name.log. background: returns the pid at once; otherwise waits and returns the exit
-- status (128 + signal for a signal) and the output. args: options of `orrery run` ("--sandbox ...").
function M.orrery_run(dir, name, body, env, background, args)
  local recipe = M.spit(dir .. "/" .. name .. ".lua", body)
  local vars = { "ORRERY_PROGRESS=0" }
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. M.q(v) end
  local cmd = string.format("%s %s/orrery run %s%s >%s 2>&1", table.concat(vars, " "),
    require("orrery").build_dir, args and args .. " " or "", M.q(recipe), M.q(dir .. "/" .. name .. ".log"))
  if background then
    return assert(tonumber(M.sh(cmd .. " & echo $!")))
  end
  local rc = tonumber(M.sh(cmd .. "; echo $?"))
  return rc, M.read(dir .. "/" .. name .. ".log") or ""
end

-- A confined QEMU's image is a descriptor in an fdset ("/dev/fdset/N"): the file it is, read from the
-- QEMU process's own descriptor table (the fdset's first descriptor), or the name if it has none.
local function fdset_file(vm, name)
  local id = tonumber(name:match("^/dev/fdset/(%d+)$"))
  if not id then return name end
  for _, set in ipairs(assert(vm:qmp("query-fdsets"))) do
    if set["fdset-id"] == id and set.fds[1] then
      return M.sh("readlink /proc/" .. vm:properties().ProcessId .. "/fd/" .. set.fds[1].fd):gsub("%s+$", "")
    end
  end
  return name
end

-- The ids QEMU gives its devices, block nodes and netdevs under the engine's naming scheme, and which
-- image each SCSI disk has open: QEMU's own answers through vm:qmp. opts.fds (a QEMU that gets
-- descriptors): also the fdsets of the engine's range (1000 on) it holds. PMem devices with their memory
-- backends; mapped pipes by their guest port names, and how many pipe chardevs QEMU holds.
function M.qemu_view(vm, opts)
  local v = { devices = {}, nodes = {}, netdevs = {}, disks = {}, pmem_backends = {}, pipes = {} }
  for _, p in ipairs(assert(vm:qmp("qom-list", { path = "/machine/peripheral" }))) do
    if p.type:find("^child<") and (p.name:find("^disk%-") or p.name:find("^vpci%-")
        or p.name:find("^nic%-") or p.name:find("^p9%-") or p.name:find("^pmem%-")) then
      v.devices[#v.devices + 1] = p.name
    elseif p.type:find("^child<") and p.name:find("^pipe%-") then
      v.pipes[#v.pipes + 1] = assert(vm:qmp("qom-get", { path = "/machine/peripheral/" .. p.name, property = "name" }))
    end
  end
  for _, p in ipairs(assert(vm:qmp("qom-list", { path = "/objects" }))) do
    if p.name:find("^pmem%-%d+%-mem$") then v.pmem_backends[#v.pmem_backends + 1] = p.name end
  end
  v.pipe_chardevs = 0
  for _, ch in ipairs(assert(vm:qmp("query-chardev"))) do
    if ch.label:find("^pipechr%-") then v.pipe_chardevs = v.pipe_chardevs + 1 end
  end
  for _, n in ipairs(assert(vm:qmp("query-named-block-nodes", { flat = true }))) do
    local name = n["node-name"]
    if name:find("^file%-") or name:find("^fmt%-") or name:find("^qos%-") then v.nodes[#v.nodes + 1] = name end
  end
  local net = assert(vm:qmp("human-monitor-command", { ["command-line"] = "info network" }))
  for id in net:gmatch("(net%-[%x%-]+):") do v.netdevs[#v.netdevs + 1] = id end
  for _, b in ipairs(assert(vm:qmp("query-block"))) do
    local c, l = (b.qdev or ""):match("disk%-(%d)%-(%d+)")
    if c and b.inserted then v.disks[c .. ":" .. l] = fdset_file(vm, b.inserted.image.filename) end
  end
  if opts and opts.fds then
    v.fdsets = {}
    for _, set in ipairs(assert(vm:qmp("query-fdsets"))) do
      if set["fdset-id"] >= 1000 then v.fdsets[#v.fdsets + 1] = set["fdset-id"] end
    end
  end
  for _, t in pairs(v) do if type(t) == "table" and t[1] then table.sort(t) end end
  return v
end

-- The same view as the live document says it must be. opts.qos: disks have throttle nodes; opts.p9: the
-- boot-time index of each Plan9 share by name (its device is p9-<index>); opts.fds: each disk (a single
-- image, no chain) holds its fdset, 1000 + (controller * 64 + LUN) * 32 (engine/src/backends/qemu_xlate.h).
function M.doc_view(vm, opts)
  opts = opts or {}
  local qos = opts.qos
  local orrery = require("orrery")
  local v = { devices = {}, nodes = {}, netdevs = {}, disks = {}, pmem_backends = {}, pipes = {} }
  local devs = vm:document().VirtualMachine.Devices or {}
  for k in pairs((devs.VirtualPMem or {}).Devices or {}) do
    v.devices[#v.devices + 1] = "pmem-" .. k
    v.pmem_backends[#v.pmem_backends + 1] = "pmem-" .. k .. "-mem"
  end
  v.pipe_chardevs = 0
  for _, p in pairs(vm:properties().MappedPipes or {}) do
    v.pipes[#v.pipes + 1] = p.Name
    v.pipe_chardevs = v.pipe_chardevs + 1
  end
  for c = 0, 3 do
    local ctl = (devs.Scsi or {})[orrery.scsi_controller_guids[c]]
    for lun, att in pairs(ctl and ctl.Attachments or {}) do
      v.devices[#v.devices + 1] = "disk-" .. c .. "-" .. lun
      v.nodes[#v.nodes + 1] = "file-" .. c .. "-" .. lun
      v.nodes[#v.nodes + 1] = "fmt-" .. c .. "-" .. lun
      if qos then v.nodes[#v.nodes + 1] = "qos-" .. c .. "-" .. lun end
      v.disks[c .. ":" .. lun] = att.Path
      if opts.fds then
        v.fdsets = v.fdsets or {}
        v.fdsets[#v.fdsets + 1] = 1000 + (c * 64 + tonumber(lun)) * 32
      end
    end
  end
  if opts.fds then v.fdsets = v.fdsets or {} end
  for guid in pairs(devs.VirtualPci or {}) do v.devices[#v.devices + 1] = "vpci-" .. guid end
  for _, share in ipairs((devs.Plan9 or {}).Shares or {}) do
    v.devices[#v.devices + 1] = "p9-" .. assert((opts.p9 or {})[share.Name], "p9 index of " .. share.Name)
  end
  for guid in pairs(devs.NetworkAdapters or {}) do
    v.devices[#v.devices + 1] = "nic-" .. guid
    v.netdevs[#v.netdevs + 1] = "net-" .. guid
  end
  for _, t in pairs(v) do if type(t) == "table" and t[1] then table.sort(t) end end
  return v
end

-- True when no process holds a write lock on an image (QEMU locks what a device has open).
function M.unlocked(path)
  return M.run("qemu-io -f raw -c 'read 0 512' -c 'write 0 512' " .. M.q(path) .. " >/dev/null 2>&1")
end

return M
