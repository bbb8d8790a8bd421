-- The guest waits that are just exec and parsing, added to orrery.Guest's
-- methods (the C half, bindings/l_guest.c, has ping/exec/files/facts):
--
--   g:wait_scsi_disk(controller, lun, {timeout_ms})       -> "/dev/sdX"
--   g:mount_scsi_disk(controller, lun, mountpoint, {fstype, options, timeout_ms})
--                                                         -> "/dev/sdX"
--   g:wait_pci_device(vmbus_guid, {timeout_ms})           -> "0000:BB:DD.F"
--   g:wait_nic(mac, {timeout_ms})                         -> "eth1"
--
-- Devices are found by address, never by guessing names: QEMU's own
-- query-pci says where the VM layer put a device (its qdev id is fixed by
-- the qemu backend: scsi<C>, vpci-<guid>), and the guest's /sys is searched
-- below that PCI address. Bus numbers agree on both sides because the
-- firmware numbers the bridges and Linux keeps its numbering.
--
-- Each wait is one exec of a small shell loop inside the guest that polls
-- /sys every 20 ms and prints what it found (one exec instead of one per
-- poll: under TCG a fork+exec in the guest costs more than the poll); the
-- exec's own deadline is the wait's (the loop is killed at it), so
-- a device that never shows up ends in ETIMEDOUT with a message that says
-- what was looked for and where. Operational failures return nil, message,
-- code like every waiting call; bad arguments raise.
return function(core)
  local Guest = core.Guest
  local DEFAULT_TIMEOUT_MS = 10000

  local function fail(code, fmt, ...)
    local msg = string.format(fmt, ...)
    return nil, code .. ": " .. msg, code
  end

  local function check_opts(op, opts, allowed)
    if opts == nil then return {} end
    if type(opts) ~= "table" then
      error(string.format("%s: options must be a table, got %s", op, type(opts)), 3)
    end
    for k, v in pairs(opts) do
      if not allowed[k] then
        local names = {}
        for name in pairs(allowed) do names[#names + 1] = name end
        table.sort(names)
        error(string.format("%s: unknown option '%s' (expected %s)", op,
          tostring(k), table.concat(names, ", ")), 3)
      end
      if k == "timeout_ms" and (math.type(v) ~= "integer" or v < 0) then
        error(string.format("%s: timeout_ms must be a non-negative integer, got %s",
          op, tostring(v)), 3)
      end
    end
    return opts
  end

  local function check_int(op, name, v, lo, hi)
    if math.type(v) ~= "integer" or v < lo or v > hi then
      error(string.format("%s: %s must be an integer in %d..%d, got %s", op,
        name, lo, hi, tostring(v)), 3)
    end
  end

  -- Finds the device with qdev id `id` (case-insensitively: VMBus GUIDs may
  -- come in either case) in QEMU's query-pci tree.
  local function find_pci(devices, id)
    for _, d in ipairs(devices or {}) do
      if d.qdev_id and d.qdev_id:lower() == id then return d end
      local below = d.pci_bridge and d.pci_bridge.devices
      local found = below and find_pci(below, id)
      if found then return found end
    end
  end

  -- The guest's sysfs name of QEMU's device `id`, or nil, message, code.
  local function pci_address(g, op, id, what)
    local vm = g:vm()
    local buses, err, code = vm:qmp("query-pci")
    if not buses then return nil, err, code end
    for _, bus in ipairs(buses) do
      local d = find_pci(bus.devices, id:lower())
      if d then
        return string.format("0000:%02x:%02x.%x", d.bus, d.slot, d["function"])
      end
    end
    return fail("ENOENT", "%s: the VM has no %s (no PCI device %s in QEMU's query-pci)",
      op, what, id)
  end

  -- Runs a shell loop in the guest until it prints a result; ETIMEDOUT with
  -- `what` if it does not within timeout_ms.
  local function wait_in_guest(g, op, script, args, timeout_ms, what)
    local argv = { "/bin/sh", "-c", script, "orrery-wait" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local r, err, code = g:exec(argv, { timeout_ms = timeout_ms })
    if not r then
      if code == "ETIMEDOUT" then
        return fail("ETIMEDOUT", "%s: %s did not appear in the guest within %d ms",
          op, what, timeout_ms)
      end
      return nil, err, code
    end
    if r.exit_code ~= 0 then
      return fail("EBACKEND", "%s: the guest's search for %s failed (exit %d): %s",
        op, what, r.exit_code, r.stderr)
    end
    return (r.stdout:gsub("%s+$", ""))
  end

  -- $1: the controller's PCI address, $2: the LUN. virtio-scsi puts LUN N
  -- of its one target at <pci>/virtioM/hostH/targetH:0:0/H:0:0:N/block/sdX.
  local SCSI_SCRIPT = [[
while :; do
  for b in /sys/bus/pci/devices/$1/virtio*/host*/target*/*:0:0:$2/block/*; do
    [ -e "$b" ] && { echo "${b##*/}"; exit 0; }
  done
  sleep 0.02
done
exit 1]]

  function Guest:wait_scsi_disk(controller, lun, opts)
    check_int("wait_scsi_disk", "controller", controller, 0, 3)
    check_int("wait_scsi_disk", "lun", lun, 0, 63)
    opts = check_opts("wait_scsi_disk", opts, { timeout_ms = true })
    local timeout_ms = opts.timeout_ms or DEFAULT_TIMEOUT_MS
    local addr, err, code = pci_address(self, "wait_scsi_disk", "scsi" .. controller,
      "SCSI controller " .. controller)
    if not addr then return nil, err, code end
    local name
    name, err, code = wait_in_guest(self, "wait_scsi_disk", SCSI_SCRIPT,
      { addr, tostring(lun) }, timeout_ms,
      string.format("a disk at controller %d LUN %d (under /sys/bus/pci/devices/%s)",
        controller, lun, addr))
    if not name then return nil, err, code end
    return "/dev/" .. name
  end

  function Guest:mount_scsi_disk(controller, lun, mountpoint, opts)
    check_int("mount_scsi_disk", "controller", controller, 0, 3)
    check_int("mount_scsi_disk", "lun", lun, 0, 63)
    if type(mountpoint) ~= "string" or mountpoint:sub(1, 1) ~= "/" then
      error("mount_scsi_disk: mountpoint must be an absolute guest path, got "
        .. tostring(mountpoint), 2)
    end
    opts = check_opts("mount_scsi_disk", opts,
      { fstype = true, options = true, timeout_ms = true })
    local dev, err, code = self:wait_scsi_disk(controller, lun,
      { timeout_ms = opts.timeout_ms })
    if not dev then return nil, err, code end
    -- Without -t busybox mount tries each filesystem the kernel knows.
    local argv = { "mount" }
    if opts.fstype then argv[#argv + 1] = "-t"; argv[#argv + 1] = opts.fstype end
    if opts.options then argv[#argv + 1] = "-o"; argv[#argv + 1] = opts.options end
    argv[#argv + 1] = dev
    argv[#argv + 1] = mountpoint
    local r
    r, err, code = self:exec({ "mkdir", "-p", mountpoint })
    if r and r.exit_code == 0 then r, err, code = self:exec(argv) end
    if not r then return nil, err, code end
    if r.exit_code ~= 0 then
      return fail("EBACKEND", "mount_scsi_disk: %s on %s: %s", dev, mountpoint,
        (r.stderr:gsub("%s+$", "")))
    end
    return dev
  end

  -- $1: the device's PCI address. ACPI hotplug makes the guest rescan the
  -- root port; the function is ready once sysfs has its vendor id.
  local PCI_SCRIPT = [[
while :; do
  [ -e /sys/bus/pci/devices/$1/vendor ] && { echo "$1"; exit 0; }
  sleep 0.02
done
exit 1]]

  local function guid_qdev(op, guid)
    if type(guid) ~= "string" or not guid:match(
        "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") then
      error(string.format("%s: vmbus_guid must be a GUID, got %s", op, tostring(guid)), 3)
    end
    return "vpci-" .. guid:lower()
  end

  function Guest:wait_pci_device(vmbus_guid, opts)
    local qdev = guid_qdev("wait_pci_device", vmbus_guid)
    opts = check_opts("wait_pci_device", opts, { timeout_ms = true })
    local timeout_ms = opts.timeout_ms or DEFAULT_TIMEOUT_MS
    local addr, err, code = pci_address(self, "wait_pci_device", qdev,
      "VPCI device " .. vmbus_guid)
    if not addr then return nil, err, code end
    return wait_in_guest(self, "wait_pci_device", PCI_SCRIPT, { addr },
      timeout_ms, string.format("PCI function %s (VPCI device %s)", addr, vmbus_guid))
  end

  -- $1: the MAC in sysfs spelling (lower case, colons).
  local NIC_SCRIPT = [[
while :; do
  for n in /sys/class/net/*; do
    [ "$(cat "$n/address" 2>/dev/null)" = "$1" ] && { echo "${n##*/}"; exit 0; }
  done
  sleep 0.02
done
exit 1]]

  function Guest:wait_nic(mac, opts)
    if type(mac) ~= "string" or not mac:match("^%x%x[-:]%x%x[-:]%x%x[-:]%x%x[-:]%x%x[-:]%x%x$") then
      error("wait_nic: mac must be six hex pairs joined by '-' or ':', got "
        .. tostring(mac), 2)
    end
    opts = check_opts("wait_nic", opts, { timeout_ms = true })
    local timeout_ms = opts.timeout_ms or DEFAULT_TIMEOUT_MS
    local want = mac:lower():gsub("-", ":")
    return wait_in_guest(self, "wait_nic", NIC_SCRIPT, { want }, timeout_ms,
      "a network interface with MAC " .. want)
  end
end
