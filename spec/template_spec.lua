-- Templates on a real QEMU (TCG): orrery.template boots the default guest
-- once (or finds it in the cache), and clones of it are machines of their
-- own: random generator, clock, runtime id, disks added after start.
local orrery = require("orrery")
local T = require("orrery.testing")

local ROOT = T.tmpdir()

local function builder(owner)
  local b = T.builder(owner or "tpl", { memory = 256 })
  b:set_linux_kernel_direct_boot(orrery.default_guest())
  return b
end

local function clone(t, id, b)
  local vm = assert(orrery.create(id, b or builder(id), { template = t, runtime_dir = ROOT .. "/" .. id }))
  assert.are.equal("Paused", vm:properties().State) -- like a restored VM
  assert(vm:start())
  return vm, assert(vm:guest{ timeout_ms = 30000 })
end

local function run(g, cmd)
  local r = assert(g:exec(cmd))
  assert.are.equal(0, r.exit_code, cmd .. ": " .. r.stderr)
  return r.stdout
end

describe("a template of the default guest", function()
  local t

  setup(function()
    t = assert(orrery.template(builder(), { accel = "tcg" }))
  end)

  teardown(function()
    T.run("rm -rf " .. T.q(ROOT))
  end)

  it("is an orrery.Template, found again in the cache without a boot", function()
    assert.matches("^orrery.Template: %x+ %(256 MiB, tcg%)$", tostring(t))
    assert.is_true(T.run("test -s " .. T.q(t.RamFile) .. " && test -s " .. T.q(t.StateFile)))
    local again = assert(orrery.template(builder("someone-else"), { accel = "tcg" }))
    assert.are.equal(t.Key, again.Key) -- the owner is not part of the machine
    assert.are.equal(t.Created, again.Created)
    local listed = false
    for _, x in ipairs(orrery.template_cache.list()) do listed = listed or x.Key == t.Key end
    assert.is_true(listed)
  end)

  it("clones that are machines of their own: urandom, generation id, runtime id, clock", function()
    local a <close>, ga = clone(t, "tpl-a")
    local b <close>, gb = clone(t, "tpl-b")
    local pa, pb = a:properties(), b:properties()
    assert.are.equal("clone", pa.Template.Role)
    assert.are_not.equal(pa.RuntimeId, pb.RuntimeId)
    assert.are_not.equal(pa.Template.GenerationId, pb.Template.GenerationId)
    -- The new VM generation id makes each guest kernel reseed its generator;
    -- without it both would read the template's next bytes.
    local cmd = "dd if=/dev/urandom bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n'"
    local ra, rb = run(ga, cmd), run(gb, cmd)
    assert.are.equal(64, #ra)
    assert.are_not.equal(ra, rb)
    -- start set the guest's clock to the host's (the template's stood still).
    for _, g in ipairs({ ga, gb }) do
      local guest_s = tonumber(run(g, "date +%s"))
      assert.is_true(math.abs(guest_s - os.time()) <= 2, "guest clock " .. guest_s .. " vs host " .. os.time())
    end
  end)

  it("hot-adds a disk after start and the guest sees it", function()
    local vm <close>, g = clone(t, "tpl-disk")
    assert(vm:add_scsi_disk(0, 3, { Type = "VirtualDisk", Path = T.image(ROOT, "16M") }))
    local dev = assert(g:wait_scsi_disk(0, 3, { timeout_ms = 20000 }))
    assert.matches("^/dev/sd%a$", dev)
    assert.are.equal(tostring(16 * 1024 * 1024 // 512), (run(g, "cat /sys/block/" .. dev:sub(6) .. "/size"):gsub("%s", "")))
  end)

  it("refuses a document whose boot-time part differs, naming the first differing field", function()
    local b = builder("tpl-bad")
    b:add_scsi_controller(1)
    local vm, err, code = orrery.create("tpl-bad", b, { template = t, runtime_dir = ROOT .. "/bad" })
    assert.is_nil(vm)
    assert.are.equal("EINVAL", code)
    assert.matches("differs from the template's at VirtualMachine%.Devices%.Scsi%.", err)
    local b2 = T.builder("tpl-mem", { memory = 512 })
    b2:set_linux_kernel_direct_boot(orrery.default_guest())
    vm, err, code = orrery.create("tpl-mem", b2, { template = t, runtime_dir = ROOT .. "/mem" })
    assert.is_nil(vm)
    assert.truthy(err:find("at VirtualMachine.ComputeTopology.Memory.SizeInMB (512 here, 256 in", 1, true), err)
    vm, err, code = orrery.create("tpl-opt", builder(), { template = t, hotplug_ports = 3 })
    assert.is_nil(vm)
    assert.are.equal("EINVAL", code)
    assert.matches("opts.hotplug_ports is 3 but the template was made with", err, 1, true)
    -- virtio-mem's maximum shapes QEMU's argv too: it is the template's.
    vm, err, code = orrery.create("tpl-opt", builder(), { template = t, memory_max_mb = 512 })
    assert.is_nil(vm)
    assert.are.equal("EINVAL", code)
    assert.matches("opts.memory_max_mb is 512 but the template was made with nil", err, 1, true)
    assert.has_error(function() orrery.create("x", builder(), { template = {} }) end,
      "create: opts.template must be an orrery.Template (from orrery.template), got a table")
    assert.are.equal("", T.qemu_pids(ROOT)) -- nothing was started
  end)

  it("is kept only where a sandboxed recipe may write", function()
    local dir = T.tmpdir()
    finally(function() T.run("rm -rf " .. T.q(dir)) end)
    -- The default cache and any other directory it may not write: refused
    -- before anything is made or booted.
    local rc, out = T.orrery_run(dir, "sandboxed", string.format([[
local b = orrery.builder{ owner = "sb" }
b:set_memory{ SizeInMB = 256 }
print(orrery.template(b, { accel = "tcg" }))
print(orrery.template(b, { accel = "tcg", dir = %q }))
]], ROOT .. "/outside"), nil, false, "--sandbox --allow-write=" .. T.q(dir))
    assert.are.equal(0, rc, out)
    local n = 0
    for _ in out:gmatch("nil\tEPERM: sandbox: template: [^\n]* is outside the directories this recipe may write") do
      n = n + 1
    end
    assert.are.equal(2, n, out)
    assert.is_false(T.run("test -e " .. T.q(ROOT .. "/outside")))
  end)
end)
