-- The guest manager end to end on a real QEMU (TCG) booting the embedded
-- default guest: every host-side change is checked from inside the guest,
-- through qemu-ga (vm:guest). One VM is booted for the whole file (the boot
-- is most of the time) and terminated at the end; the tests run in order.
--
-- COM1 is read on the host with socat (vendor/packages.txt): Lua has no
-- sockets, and the serial port's socket is QEMU's, one client at a time.
local orrery = require("orrery")

local T = require("orrery.testing")
local sh = T.sh

-- The same tests run on a booted VM and on a clone of the document's
-- template (orrery.template): a clone must be a VM like any other.
local function suite(mode)
  -- A private directory for images, the 9p share and the COM1 socket (short:
  -- unix socket paths live below it).
  -- A clone's boot-time document must be its template's, so in that mode the
  -- directory has a fixed name (the template is then cached across runs).
  local ROOT = mode == "clone" and T.stable_dir("e2e-clone") or T.tmpdir()
  assert(os.execute("mkdir -p " .. ROOT .. "/share " .. ROOT .. "/run"))
  local SHARE_TEXT = "read through 9p from " .. ROOT .. "\n"
  T.spit(ROOT .. "/share/host.txt", SHARE_TEXT)
  local COM1 = ROOT .. "/com1.sock"
  local MEMORY_MB = 512

  local function image(mib) return T.image(ROOT, mib .. "M") end

  -- Polls fn() every 50 ms until it is true (true) or timeout_ms passes (false).
  local function eventually(fn, timeout_ms) return T.eventually(fn, timeout_ms, 50) end

  describe("the guest manager on the default guest (TCG, " .. (mode == "clone" and "a clone of its template" or "booted") .. ")", function()
    local vm, g

    -- One command in the guest that must succeed; returns its stdout.
    local function run(cmd)
      local r = assert(g:exec(cmd))
      assert.are.equal(0, r.exit_code, (type(cmd) == "string" and cmd or
        table.concat(cmd, " ")) .. ": " .. r.stderr)
      return r.stdout
    end

    local function exists(path)
      return assert(g:exec{ "test", "-e", path }).exit_code == 0
    end

    setup(function()
      local b = T.builder("guest-e2e", { memory = MEMORY_MB })
      b:set_linux_kernel_direct_boot(orrery.default_guest())
      b:add_scsi_controller(1)
      b:add_plan9_share{ Name = "hostshare", Path = ROOT .. "/share", ReadOnly = true }
      b:set_serial_console(0, COM1)
      local id = string.format("guest-e2e-%d-%d", os.time(), math.random(1e6))
      local opts = { accel = "tcg", runtime_dir = ROOT .. "/run/vm" }
      if mode == "clone" then opts.template = assert(orrery.template(b, { accel = "tcg" })) end
      vm = assert(orrery.create(id, b, opts))
      assert(vm:start())
      g = assert(vm:guest{ timeout_ms = 60000 })
    end)

    teardown(function()
      if g then g:close() end
      if vm then
        vm:terminate()
        vm:close()
      end
      os.execute("rm -rf " .. ROOT)
    end)

    it("runs programs with stdin, env and exit status, and moves files both ways", function()
      assert.are.equal(g, vm:guest{ timeout_ms = 5000 }) -- one connection per VM
      assert.matches("^orrery.Guest: .*ready", tostring(g))
      local r = assert(g:exec{ "cat", "/proc/version" })
      assert.are.equal(0, r.exit_code)
      assert.matches("^Linux version", r.stdout)
      r = assert(g:exec({ "sh", "-c", "cat; echo \"$A\" >&2; exit 7" },
        { stdin = "in\0put", env = { A = "b" } }))
      assert.are.same({ exit_code = 7, stdout = "in\0put", stderr = "b\n" }, r)
      r = assert(g:exec{ "sh", "-c", "echo $0", stdin = "" })
      assert.are.equal("sh\n", r.stdout)
      assert.are.equal("x y\n", run("echo x y"))
      r = assert(g:exec("kill -9 $$"))
      assert.are.same({ exit_code = 137, signal = 9, stdout = "", stderr = "" }, r)

      local blob = {}
      for i = 0, 255 do blob[#blob + 1] = string.char(i) end
      blob = table.concat(blob):rep(5000) -- 1.2 MiB: more than one agent read
      assert.is_true(g:write_file("/tmp/blob", blob))
      assert.are.equal(blob, g:read_file("/tmp/blob"))
      assert.are.equal(tostring(#blob) .. "\n", run("wc -c < /tmp/blob"))

      local ok, err, code = g:read_file("/no/such/file")
      assert.is_nil(ok)
      assert.are.equal("EBACKEND", code)
      assert.matches("guest%-file%-open: .*No such file or directory", err)
      ok, err, code = g:exec{ "no-such-program" }
      assert.is_nil(ok)
      assert.are.equal("EBACKEND", code)
      ok, err, code = g:exec({ "sleep", "10" }, { timeout_ms = 200 })
      assert.is_nil(ok)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("did not exit within 200 ms", err)
      -- It was killed (the kill is itself an exec, so allow it a moment).
      assert.is_true(eventually(function()
        return run("ps | grep -c '[s]leep 10' || true") == "0\n"
      end, 3000))

      assert.error_matches(function() g:exec{} end, "argv must hold at least the program name")
      assert.error_matches(function() g:exec({ "true" }, { stdn = "" }) end,
        "unknown option 'stdn'")
      assert.error_matches(function() g:exec({ "true", stdin = "" }, { env = {} }) end,
        "options go either in argv or in the second argument")
      assert.error_matches(function() g:wait_scsi_disk(4, 0) end,
        "controller must be an integer in 0..3, got 4")

      local info = assert(g:os_info())
      -- The kernel that answers is the one the default guest's manifest names.
      local kdir = orrery.default_guest().KernelFilePath:match("^(.*)/[^/]+$")
      local mf = assert(io.open(kdir .. "/orrery-guest.json"))
      local manifest = mf:read("a")
      mf:close()
      assert.are.equal(manifest:match('"kernel_release": "([^"]+)"'), info["kernel-release"])
      assert.are.equal("x86_64", info.machine)
      local ifs = assert(g:interfaces())
      assert.are.equal("lo", ifs[1].name)
      assert.are.same({}, assert(g:command("guest-ping")))
      ok, err, code = g:command("guest-no-such-command")
      assert.are.equal("EBACKEND", code)
    end)

    it("serves several tasks at once through one connection", function()
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = orrery.spawn(function()
          local mine = assert(vm:guest{ timeout_ms = 5000 })
          local r = assert(mine:exec({ "sh", "-c", "sleep 0.1; cat" }, { stdin = "task " .. i }))
          return mine, r.stdout
        end)
      end
      orrery.wait_all(tasks)
      for i, t in ipairs(tasks) do
        local _, mine, out = t:result()
        assert.are.equal(g, mine)
        assert.are.equal("task " .. i, out)
      end
    end)

    it("sees SCSI disks hot-added at several LUNs on two controllers, sized right, and sees them go", function()
      local disks = { { 0, 1, 8 }, { 0, 17, 12 }, { 1, 0, 16 }, { 1, 63, 20 } }
      local seen = {}
      for _, d in ipairs(disks) do
        local c, lun, mib = d[1], d[2], d[3]
        assert(vm:add_scsi_disk(c, lun, { Type = "VirtualDisk", Path = image(mib) }))
        local dev = assert(g:wait_scsi_disk(c, lun, { timeout_ms = 10000 }))
        local name = dev:match("^/dev/(sd%a+)$")
        assert.is_truthy(name, dev)
        assert.is_nil(seen[name], "two LUNs got the same device " .. dev)
        seen[name] = d
        -- 512-byte sectors, and the SCSI address ends in :0:0:<lun>.
        assert.are.equal(tostring(mib * 2048) .. "\n", run{ "cat", "/sys/block/" .. name .. "/size" })
        assert.matches(":0:0:" .. lun .. "\n$", run{ "readlink", "/sys/block/" .. name .. "/device" })
      end
      -- Two disks on different controllers sit under different hosts.
      for name, d in pairs(seen) do
        assert(vm:remove_scsi_disk(d[1], d[2]))
        assert.is_true(eventually(function() return not exists("/sys/block/" .. name) end),
          name .. " is still in the guest after its removal")
      end
      assert.are.equal("", (run("ls /sys/block | grep '^sd' || true")))
    end)

    it("makes a ReadOnly attachment read-only in the guest", function()
      assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = image(8), ReadOnly = true }))
      local dev = assert(g:wait_scsi_disk(0, 5))
      assert.are.equal("1\n", run{ "cat", "/sys/block/" .. dev:sub(6) .. "/ro" })
      local r = assert(g:exec{ "dd", "if=/dev/zero", "of=" .. dev, "bs=512", "count=1" })
      assert.are_not.equal(0, r.exit_code)
      assert.matches("Read%-only", r.stderr)
      assert(vm:remove_scsi_disk(0, 5))
    end)

    it("formats, mounts, writes and reads a hot-added disk (mount_scsi_disk)", function()
      assert(vm:add_scsi_disk(1, 9, { Type = "VirtualDisk", Path = image(16) }))
      local dev = assert(g:wait_scsi_disk(1, 9))
      run{ "mkfs.ext2", "-q", dev }
      assert.are.equal(dev, assert(g:mount_scsi_disk(1, 9, "/mnt/d", { fstype = "ext2" })))
      assert(g:write_file("/mnt/d/f.txt", "kept\n"))
      run{ "umount", "/mnt/d" }
      assert.are.equal(dev, assert(g:mount_scsi_disk(1, 9, "/mnt/d")))
      assert.are.equal("kept\n", g:read_file("/mnt/d/f.txt"))
      run{ "umount", "/mnt/d" }
      assert(vm:remove_scsi_disk(1, 9))
      local ok, err, code = g:mount_scsi_disk(1, 9, "/mnt/d", { timeout_ms = 300 })
      assert.is_nil(ok)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("controller 1 LUN 9 .* did not appear in the guest within 300 ms", err)
    end)

    it("sees a hot-added PCI device with QEMU's ids, and its removal completes", function()
      local guid = "6F5C3A1E-1B2D-4C3E-9F4A-0A1B2C3D4E5F"
      assert(vm:add_vpci_device(guid, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }))
      local addr = assert(g:wait_pci_device(guid, { timeout_ms = 10000 }))
      assert.matches("^0000:%x%x:00%.0$", addr)
      -- Behind a PCIe root port QEMU makes virtio devices modern-only: the
      -- device id is 0x1040 + 4 (entropy), not the transitional 0x1005.
      assert.are.equal("0x1af4\n0x1044\n", run{ "cat", "/sys/bus/pci/devices/" .. addr .. "/vendor",
        "/sys/bus/pci/devices/" .. addr .. "/device" })
      assert.are.equal("virtio-pci", (run{ "readlink", "/sys/bus/pci/devices/" .. addr .. "/driver" })
        :match("([^/]+)\n$"))
      assert.is_true(vm:remove_vpci_device(guid, { timeout_ms = 10000 }))
      assert.is_false(exists("/sys/bus/pci/devices/" .. addr))
      local ok, _, code = g:wait_pci_device(guid, { timeout_ms = 100 })
      assert.is_nil(ok)
      assert.are.equal("ENOENT", code) -- QEMU has no such device any more
    end)

    it("sees a hot-added NIC with the MAC it was given", function()
      local nic = "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
      local mac = "00-15-5D-52-C0-0A"
      assert(vm:add_nic(nic, { EndpointId = "user", MacAddress = mac }))
      local name = assert(g:wait_nic(mac, { timeout_ms = 10000 }))
      assert.are.equal("00:15:5d:52:c0:0a\n", run{ "cat", "/sys/class/net/" .. name .. "/address" })
      local found
      for _, i in ipairs(assert(g:interfaces())) do
        if i.name == name then found = i["hardware-address"] end
      end
      assert.are.equal("00:15:5d:52:c0:0a", found)
      assert(vm:remove_nic(nic, { timeout_ms = 10000 }))
      assert.is_true(eventually(function() return not exists("/sys/class/net/" .. name) end))
    end)

    it("mounts the Plan9 share and reads the host's file", function()
      run("mkdir -p /mnt/share && mount -t 9p -o trans=virtio,version=9p2000.L hostshare /mnt/share")
      assert.are.equal(SHARE_TEXT, g:read_file("/mnt/share/host.txt"))
      local r = assert(g:exec("echo x > /mnt/share/new.txt"))
      assert.are_not.equal(0, r.exit_code) -- ReadOnly share
      run{ "umount", "/mnt/share" }
    end)

    it("writes COM1 output the host reads from the console socket", function()
      local out = ROOT .. "/com1.out"
      -- socat holds the socket for 10 s at most, writing what it reads.
      assert(os.execute(string.format(
        "timeout 10 socat -u UNIX-CONNECT:%s OPEN:%s,creat >/dev/null 2>&1 &", COM1, out)))
      local marker = "orrery-com1-" .. math.random(1e9)
      local function got()
        local f = io.open(out)
        local text = f and f:read("a") or ""
        if f then f:close() end
        return text:find(marker, 1, true) ~= nil
      end
      -- Until socat is connected the guest's bytes go nowhere: repeat them.
      assert.is_true(eventually(function()
        run("echo " .. marker .. " > /dev/ttyS0")
        return got()
      end, 8000))
    end)

    it("sees a memory size change through the balloon in /proc/meminfo", function()
      local function mem_total_kb()
        return tonumber(run("grep MemTotal /proc/meminfo"):match("(%d+) kB"))
      end
      local before = mem_total_kb()
      assert(vm:update_memory(MEMORY_MB - 256))
      -- virtio_balloon (without deflate-on-oom, QEMU's default) takes the
      -- pages it hands back out of the guest's managed memory: MemTotal drops.
      local after = eventually(function()
        local kb = mem_total_kb()
        return kb <= before - 256 * 1024 + 1024 and kb
      end, 60000) -- the guest hands pages back slowly on a loaded TCG host
      assert.is_truthy(after, "MemTotal did not drop by 256 MiB: " .. tostring(mem_total_kb()))
      assert.are.equal((MEMORY_MB - 256) * 1024 * 1024, vm:qmp("query-balloon").actual)
      assert(vm:update_memory(MEMORY_MB))
      assert.is_truthy(eventually(function() return mem_total_kb() >= before - 1024 end, 60000))
    end)

    it("refuses guests it cannot have, and fails calls once the VM is gone", function()
      local pb = orrery.builder{ owner = "p" }
      pb:set_memory{ SizeInMB = 64 }
      local plan = assert(orrery.create("guest-e2e-plan", pb, { backend = "plan", guest_agent = true }))
      local ok, err, code = plan:guest{ timeout_ms = 100 }
      assert.is_nil(ok)
      assert.are.equal("ENOTSUP", code)
      plan:close()

      assert(vm:terminate())
      ok, err, code = g:ping()
      assert.is_nil(ok)
      assert.are.equal("EVMGONE", code)
      assert.matches("the VM is gone", err)
      ok, err, code = vm:guest{ timeout_ms = 100 }
      assert.are.equal("EVMGONE", code)
      g:close()
      assert.matches("closed", tostring(g))
      assert.error_matches(function() g:ping() end, "closed orrery.Guest")
    end)
  end)
end

suite("boot")
suite("clone")
