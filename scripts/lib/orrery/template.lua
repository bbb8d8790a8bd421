-- VM templates: boot a document once, clone it many times.
--
--   local t = assert(orrery.template(b, { ready = function(vm) ... end }))
--   local vm = assert(orrery.create("c1", b, { template = t }))  -- Paused
--   assert(vm:start())                 -- runs; its clock is set to the host's
--   local g = assert(vm:guest())       -- answers at once
--
-- orrery.template boots the builder's document with its RAM in a file
-- (shared: the guest's memory lands in it), waits until the guest agent
-- answers (and opts.ready(vm) returns true), pauses and saves the device
-- state without that RAM (x-ignore-shared). A clone maps the RAM file
-- private (copy-on-write: N clones share the pages none of them wrote)
-- and loads the device state; its VM generation id is new, so the guest
-- kernel reseeds its random generator.
--
-- Templates are cached in $XDG_CACHE_HOME/orrery/templates (else
-- ~/.cache/...), one directory per key: the document's boot-time part,
-- the kernel and initrd files (path, size, mtime, inode), the QEMU binary
-- and its version, the accelerator and the create options that change
-- QEMU's argv. A key whose parts differ is built again; the cache is kept
-- under ORRERY_TEMPLATE_CACHE_MB (4096) by removing the least recently
-- used. `orrery template ls|rm` lists and removes them.
return function(core)
  local H = core._template
  local create = core.create

  local Template = { __name = "orrery.Template" }
  Template.__index = Template
  function Template.__tostring(t)
    return string.format("orrery.Template: %s (%d MiB, %s)", t.Key, t.SizeInMB, t.Accel)
  end

  local clones = setmetatable({}, { __mode = "k" }) -- vm -> template
  local DEFAULT_CACHE_MB = 4096
  local FILE = "template.json"

  local function fail(code, fmt, ...)
    return nil, code .. ": " .. string.format(fmt, ...), code
  end

  local function cache_root()
    local base = os.getenv("XDG_CACHE_HOME")
    if not base or base == "" then
      local home = os.getenv("HOME")
      if not home or home == "" then return nil end
      base = home .. "/.cache"
    end
    return base .. "/orrery/templates"
  end

  local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
  end

  local function write_file(path, text)
    local f, err = io.open(path, "wb")
    if not f then return nil, err end
    f:write(text)
    f:close()
    return true
  end

  -- The document as a table, whatever create was given.
  local function document_of(b)
    if type(b) == "string" then return H.decode(b) end
    if type(b) == "table" then return b end
    return b:document()
  end

  -- The boot-time part: all of the document but who owns it and what
  -- closing its handle does, which change nothing in the machine.
  local MANAGEMENT = { Owner = true, ShouldTerminateOnLastHandleClosed = true }
  local function boot_part(doc)
    local t = {}
    for k, v in pairs(doc) do
      if not MANAGEMENT[k] then t[k] = v end
    end
    return t
  end

  local function show(v)
    if type(v) == "table" then return H.encode(v) end
    if type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
  end

  -- The first field (in sorted key order, depth first) where a and b
  -- differ: its path and both values; nil when equal.
  local function first_diff(a, b, path)
    if type(a) ~= "table" or type(b) ~= "table" then
      if a == b then return nil end
      return path, a, b
    end
    local keys, seen = {}, {}
    for k in pairs(a) do keys[#keys + 1] = k; seen[k] = true end
    for k in pairs(b) do if not seen[k] then keys[#keys + 1] = k end end
    table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
    for _, k in ipairs(keys) do
      local p, x, y = first_diff(a[k], b[k], path and (path .. "." .. tostring(k)) or tostring(k))
      if p then return p, x, y end
    end
    return nil
  end

  local function find_program(name)
    if name:find("/", 1, true) then return name end
    for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
      local st = H.stat(dir .. "/" .. name)
      if st and not st.dir then return dir .. "/" .. name end
    end
    return name
  end

  local versions = {}
  local function qemu_version(bin)
    if versions[bin] == nil then versions[bin] = H.qemu_version(bin) or "unknown" end
    return versions[bin]
  end

  local function file_id(path)
    if type(path) ~= "string" or path == "" then return nil end
    local st = H.stat(path)
    if not st then return { path = path, missing = true } end
    return { path = path, size = st.size, mtime_ns = st.mtime_ns, ino = st.ino }
  end

  -- Everything the template depends on, as data; its hash names it.
  local function key_parts(doc, o)
    local lkd = (((doc.VirtualMachine or {}).Chipset or {}).LinuxKernelDirect) or {}
    local qemu = find_program(o.qemu_binary or "qemu-system-x86_64")
    return {
      Document = boot_part(doc),
      Kernel = file_id(lkd.KernelFilePath),
      InitRd = file_id(lkd.InitRdPath),
      Qemu = { path = qemu, version = qemu_version(qemu), file = file_id(qemu) },
      Firmware = file_id("/usr/share/seabios/bios-256k.bin"),
      Accel = o.accel,
      HotplugPorts = o.hotplug_ports or 0,
      MemoryMaxMb = o.memory_max_mb, -- (absent when not given: older keys stay valid)
      GuestAgent = o.guest_agent == nil and -1 or (o.guest_agent and 1 or 0),
    }
  end

  local function load(dir)
    local text = read_file(dir .. "/" .. FILE)
    if not text then return nil end
    local meta = H.decode(text)
    if type(meta) ~= "table" or type(meta.Parts) ~= "table" then return nil end
    local t = setmetatable({}, Template)
    for k, v in pairs(meta) do t[k] = v end
    t.Dir = dir
    t.RamFile = dir .. "/ram"
    t.StateFile = dir .. "/state"
    t.Document = meta.Parts.Document
    return t
  end

  local function save_meta(t)
    local meta = {}
    for k, v in pairs(t) do
      if k ~= "Dir" and k ~= "RamFile" and k ~= "StateFile" and k ~= "Document" then meta[k] = v end
    end
    return write_file(t.Dir .. "/" .. FILE, H.encode(meta))
  end

  local function remove_dir(dir)
    for _, name in ipairs(H.list(dir) or {}) do
      local ok, err, code = H.remove(dir .. "/" .. name)
      if not ok then return nil, err, code end
    end
    return H.remove(dir)
  end

  local function disk_of(dir)
    local n = 0
    for _, name in ipairs(H.list(dir) or {}) do
      local st = H.stat(dir .. "/" .. name)
      if st then n = n + st.disk end
    end
    return n
  end

  -- Every template of a cache directory, most recently used first.
  local function list(root)
    local out = {}
    for _, name in ipairs(H.list(root) or {}) do
      if name:match("^%x+$") then
        local t = load(root .. "/" .. name)
        if t then
          t.DiskBytes = disk_of(t.Dir)
          out[#out + 1] = t
        end
      end
    end
    table.sort(out, function(a, b) return (a.LastUsed or 0) > (b.LastUsed or 0) end)
    return out
  end

  -- Keeps the cache under its bound: the least recently used go first,
  -- never keep (the template just built).
  local function prune(root, keep)
    local limit = (tonumber(os.getenv("ORRERY_TEMPLATE_CACHE_MB")) or DEFAULT_CACHE_MB) * 1048576
    local all, total = list(root), 0
    for _, t in ipairs(all) do total = total + t.DiskBytes end
    for i = #all, 1, -1 do
      if total <= limit then break end
      local t = all[i]
      if t.Key ~= keep then
        if remove_dir(t.Dir) then total = total - t.DiskBytes end
      end
    end
  end

  local OPTS = { ready = true, timeout_ms = true, accel = true, hotplug_ports = true, memory_max_mb = true,
                 guest_agent = true, qemu_binary = true, dir = true, rebuild = true }

  -- Boots the template into dir (a new directory) and saves it there.
  local function build(doc, b, o, dir, parts, key)
    -- The RAM file exists before QEMU opens it: a confined engine hands
    -- QEMU an open descriptor of it (QEMU sizes an empty file itself).
    local made, merr = write_file(dir .. "/ram", "")
    if not made then return fail("EIO", "template: cannot create %s/ram: %s", dir, tostring(merr)) end
    local id = "template-" .. key:sub(1, 8) .. "-" .. tostring(math.floor(core.now() * 1000) % 100000000)
    local vm, err, code = create(id, b, {
      accel = o.accel, hotplug_ports = o.hotplug_ports, memory_max_mb = o.memory_max_mb,
      guest_agent = o.guest_agent,
      qemu_binary = o.qemu_binary, template_ram = dir .. "/ram", template_boot = true,
    })
    if not vm then return nil, err, code end
    local function bail(e, c)
      vm:close()
      return nil, e, c
    end
    local t0 = core.now()
    local ok
    ok, err, code = vm:start()
    if not ok then return bail(err, code) end
    local timeout = o.timeout_ms or 300000
    local g
    if o.guest_agent ~= false then
      g, err, code = vm:guest{ timeout_ms = timeout }
      if not g then return bail("template: the guest agent did not answer: " .. tostring(err), code) end
    end
    if o.ready then
      local good, r1, r2 = pcall(o.ready, vm)
      if not good then vm:close(); error(r1, 0) end
      if not r1 then return bail("EINVAL: template: opts.ready returned " .. tostring(r1)
        .. (r2 and (": " .. tostring(r2)) or ""), "EINVAL") end
    end
    local boot_ms = core.now() - t0
    if g then g:close() end
    ok, err, code = vm:pause()
    if not ok then return bail(err, code) end
    ok, err, code = vm:save{ SaveStateFilePath = dir .. "/state" }
    if not ok then return bail(err, code) end
    local props = vm:properties()
    vm:terminate()
    vm:close()
    local mem = ((doc.VirtualMachine or {}).ComputeTopology or {}).Memory or {}
    parts.Accel = props.Accel
    local t = setmetatable({
      Key = key, Parts = parts, Accel = props.Accel, SizeInMB = mem.SizeInMB or 0,
      HotplugPorts = o.hotplug_ports, MemoryMaxMb = o.memory_max_mb, GuestAgent = o.guest_agent,
      QemuBinary = o.qemu_binary,
      BootMs = math.floor(boot_ms), Created = os.time(), LastUsed = os.time(),
      Dir = dir, RamFile = dir .. "/ram", StateFile = dir .. "/state", Document = parts.Document,
    }, Template)
    ok, err = save_meta(t)
    if not ok then return fail("EIO", "template: cannot write %s: %s", dir .. "/" .. FILE, tostring(err)) end
    return t
  end

  function core.template(b, opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("template: options must be a table, got " .. type(opts), 2) end
    for k in pairs(opts) do
      if not OPTS[k] then
        error("template: unknown option '" .. tostring(k) .. "' (expected ready, timeout_ms, accel, "
          .. "hotplug_ports, memory_max_mb, guest_agent, qemu_binary, dir or rebuild)", 2)
      end
    end
    if opts.ready ~= nil and type(opts.ready) ~= "function" then
      error("template: opts.ready must be a function, got " .. type(opts.ready), 2)
    end
    local doc = document_of(b)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.accel = o.accel or "auto"
    if o.accel == "auto" then o.accel = H.accel_verdict() or "auto" end
    local root = opts.dir or cache_root()
    if not root then return fail("EINVAL", "template: no cache directory (set XDG_CACHE_HOME or HOME, or opts.dir)") end
    local ok, err, code = H.private_dir(root)
    if not ok then return nil, err, code end
    local parts = key_parts(doc, o)
    local key = H.hash(H.encode(parts))
    local dir = root .. "/" .. key
    local t = not opts.rebuild and o.accel ~= "auto" and load(dir)
    if t and first_diff(t.Parts, parts) == nil and H.stat(t.RamFile) and H.stat(t.StateFile) then
      t.LastUsed = os.time()
      save_meta(t)
      return t
    end
    -- Built in a directory of its own, then moved into place: a clone
    -- still running on an old template keeps its files (they are only
    -- unlinked), and a half-built template is never found.
    local tmp = string.format("%s/%s.new-%d", root, key, math.floor(core.now() * 1000) % 1000000000)
    ok, err, code = H.private_dir(tmp)
    if not ok then return nil, err, code end
    t, err, code = build(doc, b, o, tmp, parts, key)
    if not t then
      remove_dir(tmp)
      return nil, err, code
    end
    -- "auto" is only known once the VM ran: the key says what it was.
    if parts.Accel ~= o.accel then
      key = H.hash(H.encode(parts))
      dir = root .. "/" .. key
      t.Key = key
    end
    if H.stat(dir) then remove_dir(dir) end
    ok, err, code = H.rename(tmp, dir)
    if not ok then
      remove_dir(tmp)
      local other = load(dir) -- another engine built it meanwhile
      if other and first_diff(other.Parts, parts) == nil then return other end
      return nil, err, code
    end
    t.Dir, t.RamFile, t.StateFile = dir, dir .. "/ram", dir .. "/state"
    save_meta(t)
    prune(root, key)
    return t
  end

  -- Where a clone's start went (ms): cont, the agent's first answer, the
  -- clock set; by VM, for bench/template_bench.lua's breakdown.
  local start_ms = setmetatable({}, { __mode = "k" })
  core._template_start_ms = start_ms

  -- The start of a clone also sets the guest's clock to the host's: it
  -- stood still while the template lay on disk.
  local function wrap_start(vm)
    local methods = getmetatable(vm).__index
    if methods._template_start then return end
    local start = methods.start
    methods._template_start = start
    methods.start = function(self, ...)
      local t0 = core.now()
      local ok, err, code = start(self, ...)
      local t = clones[self]
      if not ok or not t or t.GuestAgent == false then return ok, err, code end
      clones[self] = nil -- once
      local t1 = core.now()
      local g
      g, err, code = self:guest{ timeout_ms = 10000 }
      local t2 = core.now()
      if g then
        ok, err, code = g:command("guest-set-time", { time = H.wallclock_ns() })
      end
      start_ms[self] = { cont = t1 - t0, agent = t2 - t1, clock = core.now() - t2 }
      if not g or not ok then
        return fail(code or "EBACKEND", "start: the clone runs, but its clock was not set: %s", tostring(err))
      end
      return true
    end
  end

  local TEMPLATE_OWNED = { restore = true, template_ram = true, template_boot = true }

  function core.create(id, b, opts)
    if type(opts) ~= "table" or opts.template == nil then return create(id, b, opts) end
    local t = opts.template
    if getmetatable(t) ~= Template then
      error("create: opts.template must be an orrery.Template (from orrery.template), got "
        .. (type(t) == "table" and "a table" or type(t)), 2)
    end
    local o = {}
    for k, v in pairs(opts) do
      if TEMPLATE_OWNED[k] then
        return fail("EINVAL", "create: opts.%s cannot be given with opts.template (the template sets it)", k)
      end
      if k ~= "template" then o[k] = v end
    end
    -- Every option that changes QEMU's argv is the template's: a clone's
    -- QEMU must be the template's to load its state.
    for _, k in ipairs({ "accel", "hotplug_ports", "memory_max_mb", "guest_agent", "qemu_binary" }) do
      local mine = k == "accel" and t.Accel or t[k == "hotplug_ports" and "HotplugPorts"
        or k == "memory_max_mb" and "MemoryMaxMb" or k == "guest_agent" and "GuestAgent" or "QemuBinary"]
      if o[k] ~= nil and not (k == "accel" and o[k] == "auto") and o[k] ~= mine then
        return fail("EINVAL", "create: opts.%s is %s but the template was made with %s", k, show(o[k]), show(mine))
      end
      o[k] = mine
    end
    if o.backend ~= nil and o.backend ~= "qemu" then
      return fail("EINVAL", "create: opts.template needs the qemu backend, got %s", show(o.backend))
    end
    local path, mine, theirs = first_diff(boot_part(document_of(b)), t.Document)
    if path then
      return fail("EINVAL", "create: opts.template: the document differs from the template's at %s "
        .. "(%s here, %s in the template %s): a clone boots nothing, so its boot-time document "
        .. "must be the template's; add disks and NICs after start", path, show(mine), show(theirs), t.Key)
    end
    o.restore = t.StateFile
    o.template_ram = t.RamFile
    local vm, err, code = create(id, b, o)
    if not vm then return nil, err, code end
    clones[vm] = t
    wrap_start(vm)
    return vm
  end

  local function human(bytes)
    if bytes >= 1073741824 then return string.format("%.1fG", bytes / 1073741824) end
    return string.format("%.0fM", bytes / 1048576)
  end

  -- `orrery template ls [--json]`, `orrery template rm KEY... | --all`
  -- (bindings/cli_template.c checked the words); true on success.
  local function cli(args)
    local root = cache_root()
    if not root then
      io.stderr:write("orrery template: no cache directory (set XDG_CACHE_HOME or HOME)\n")
      return false
    end
    local all = list(root)
    if args[1] == "ls" then
      if args[2] == "--json" then
        local out = {}
        for i, t in ipairs(all) do
          out[i] = { Key = t.Key, Directory = t.Dir, SizeInMB = t.SizeInMB, Accel = t.Accel,
                     DiskBytes = t.DiskBytes, Created = t.Created, LastUsed = t.LastUsed,
                     BootMs = t.BootMs, Kernel = (t.Parts.Kernel or {}).path, Qemu = t.Parts.Qemu.version }
        end
        print(#out == 0 and "[]" or H.encode(out))
        return true
      end
      print(string.format("%-16s %6s %-5s %6s  %-19s %s", "KEY", "MEMORY", "ACCEL", "DISK", "LAST USED", "KERNEL"))
      for _, t in ipairs(all) do
        print(string.format("%-16s %5dM %-5s %6s  %-19s %s", t.Key, t.SizeInMB, t.Accel, human(t.DiskBytes),
          os.date("%Y-%m-%d %H:%M:%S", t.LastUsed or 0), (t.Parts.Kernel or {}).path or "-"))
      end
      return true
    end
    local ok_all = true
    for i = 2, #args do
      local hits = {}
      for _, t in ipairs(all) do
        if args[i] == "--all" or t.Key:sub(1, #args[i]) == args[i] then hits[#hits + 1] = t end
      end
      if #hits == 0 then
        io.stderr:write("orrery template rm: no template " .. args[i] .. " in " .. root .. "\n")
        ok_all = false
      elseif #hits > 1 and args[i] ~= "--all" then
        io.stderr:write("orrery template rm: " .. args[i] .. " names " .. #hits .. " templates; give more of the key\n")
        ok_all = false
      else
        for _, t in ipairs(hits) do
          local ok, err = remove_dir(t.Dir)
          if ok then print("removed " .. t.Key) else io.stderr:write("orrery template rm: " .. err .. "\n"); ok_all = false end
        end
      end
    end
    return ok_all
  end

  core.Template = Template
  -- The cache, for `orrery template ls|rm` and specs.
  core.template_cache = {
    root = cache_root,
    list = function(root) return list(root or cache_root()) end,
    remove = function(t) return remove_dir(t.Dir) end,
    cli = cli,
  }
end
