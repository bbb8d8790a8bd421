-- GuestRequests carried out through the guest manager (issue 13 §6).
--
-- hcsshim sends a ModifySettingRequest's GuestRequest with Plan9, SCSI and
-- VPMem changes (the host half adds the device, the guest half mounts it at
-- a path) and alone from its guest manager. The C VM manager checks its
-- shape and refuses it (ENOTSUP): it does not act inside a guest. This
-- wrapper of vm:modify does both halves, the guest's through vm:guest():
--
--   MappedVirtualDisk  Add: the SCSI disk (ResourcePath), then mounted at
--                      MountPath (Filesystem, ReadOnly, Options); Remove:
--                      unmounted, then the disk removed
--   MappedDirectory    Add: the 9p share ShareName (the mount tag) mounted
--                      at MountPath; Remove: unmounted
--   VPMemDevice        Add: the device, then /dev/pmemN mounted at
--                      MountPath read-only; Remove: ENOTSUP (QEMU 7.2
--                      cannot unplug PMem, so the guest half is not undone)
--   anything else      ENOTSUP naming it (Network, VPCIDevice, ...)
--
-- All or nothing: a guest half that fails after its host half undoes the
-- host half (an Add removes the device again); a host half that fails after
-- an unmount mounts it again.
return function(core, VM)
  local modify = VM.modify

  local function fail(code, fmt, ...)
    local msg = code .. ": modify: request.GuestRequest" .. string.format(fmt, ...)
    return nil, msg, code
  end

  local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

  -- One shell command in the guest that must succeed.
  local function guest_sh(vm, cmd, timeout_ms)
    local g, err, code = vm:guest{ timeout_ms = timeout_ms }
    if not g then return nil, err, code end
    local r
    r, err, code = g:exec({ "sh", "-c", cmd }, { timeout_ms = timeout_ms })
    if not r then return nil, err, code end
    if r.exit_code ~= 0 then
      return nil, "EBACKEND: in the guest: " .. cmd .. ": " .. (r.stderr ~= "" and r.stderr or
        ("exit " .. r.exit_code)):gsub("%s+$", ""), "EBACKEND"
    end
    return r.stdout
  end

  -- The guest's /dev/pmemN of VPMem device n (qdev pmem-<n>): found below
  -- its PCI address, as the guest waits find disks.
  local function pmem_dev(vm, n, timeout_ms)
    local addr
    for _, bus in ipairs(assert(vm:qmp("query-pci"))) do
      local function walk(devs)
        for _, d in ipairs(devs or {}) do
          if d.qdev_id == "pmem-" .. n then
            addr = string.format("0000:%02x:%02x.%x", d.bus, d.slot, d["function"])
          end
          if d.pci_bridge then walk(d.pci_bridge.devices) end
        end
      end
      walk(bus.devices)
    end
    if not addr then return nil, "ENOENT: no PCI function for VPMem device " .. n, "ENOENT" end
    local script = "i=0; while [ $i -lt 500 ]; do for b in /sys/bus/pci/devices/" .. addr ..
      "/virtio*/ndbus*/region*/namespace*/block/pmem*; do [ -e \"$b\" ] && " ..
      "{ echo /dev/${b##*/}; exit 0; }; done; i=$((i+1)); sleep 0.02; done; exit 1"
    local out, err, code = guest_sh(vm, script, timeout_ms)
    if not out then return nil, err, code end
    return (out:gsub("%s+$", ""))
  end

  -- mount inside the guest; returns true or the fail tuple.
  local function mount(vm, gr, s, timeout_ms)
    local rt = gr.ResourceType
    local path = s.MountPath
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
      return fail("EINVAL", ".Settings.MountPath must be an absolute guest path, got %s",
        tostring(path))
    end
    local cmd
    if rt == "MappedDirectory" then
      if type(s.ShareName) ~= "string" or s.ShareName == "" then
        return fail("EINVAL", ".Settings.ShareName (the share's mount tag) is required")
      end
      cmd = "mkdir -p " .. q(path) .. " && mount -t 9p -o trans=virtio,version=9p2000.L" ..
        (s.ReadOnly and ",ro" or "") .. " " .. q(s.ShareName) .. " " .. q(path)
    elseif rt == "MappedVirtualDisk" then
      local g, err, code = vm:guest{ timeout_ms = timeout_ms }
      if not g then return nil, err, code end
      local dev
      dev, err, code = g:wait_scsi_disk(s.Controller or 0, s.Lun or 0, { timeout_ms = timeout_ms })
      if not dev then return nil, err, code end
      local opts = { s.ReadOnly and "ro" or nil }
      for _, o in ipairs(s.Options or {}) do opts[#opts + 1] = o end
      -- ext4 unless told (as hcsshim's guest does): busybox mount probes
      -- only filesystems already loaded, and ext4 also mounts ext2/3.
      cmd = "mkdir -p " .. q(path) .. " && mount -t " ..
        q(s.Filesystem and s.Filesystem ~= "" and s.Filesystem or "ext4") ..
        (#opts > 0 and (" -o " .. q(table.concat(opts, ","))) or "") .. " " .. dev .. " " .. q(path)
    elseif rt == "VPMemDevice" then
      local dev, err, code = pmem_dev(vm, s.DeviceNumber or 0, timeout_ms)
      if not dev then return nil, err, code end
      cmd = "mkdir -p " .. q(path) .. " && mount -t ext4 -o ro " .. dev .. " " .. q(path)
    end
    local ok, err, code = guest_sh(vm, cmd, timeout_ms)
    if not ok then return nil, err, code end
    return true
  end

  local function umount(vm, s, timeout_ms)
    return guest_sh(vm, "umount " .. q(s.MountPath), timeout_ms)
  end

  local carried = { MappedDirectory = true, MappedVirtualDisk = true, VPMemDevice = true }

  -- vm:modify(request, opts): as the C call, plus the GuestRequest half.
  function VM.modify(vm, req, opts)
    if type(req) ~= "table" or req.GuestRequest == nil then
      return modify(vm, req, opts)
    end
    local gr = req.GuestRequest
    -- The C half checks every field of the request and its GuestRequest's
    -- shape, changing nothing: ENOTSUP means "valid, not carried out".
    local ok, err, code = modify(vm, { GuestRequest = gr }, opts)
    if ok or code ~= "ENOTSUP" then return ok, err, code end
    local rt, what = gr.ResourceType, gr.RequestType
    if not carried[rt] or (what ~= "Add" and what ~= "Remove") then
      return fail("ENOTSUP", " (%s %s): the default guest's manager carries out "
        .. "MappedDirectory, MappedVirtualDisk and VPMemDevice Add/Remove only; "
        .. "nothing was changed", tostring(what), tostring(rt))
    end
    -- No guest to act in (the plan backend, a VM without the agent port):
    -- the C half's ENOTSUP stands, with the reason.
    local g, gerr = vm:guest{ timeout_ms = type(opts) == "table" and opts.timeout_ms or nil }
    if not g then
      return nil, err .. " (" .. tostring(gerr) .. ")", code
    end
    local s = gr.Settings or {}
    local timeout_ms = type(opts) == "table" and opts.timeout_ms or nil
    local host = req.ResourcePath and {
      ResourcePath = req.ResourcePath, RequestType = req.RequestType, Settings = req.Settings }
    if what == "Add" then
      if host then
        ok, err, code = modify(vm, host, opts)
        if not ok then return nil, err, code end
      end
      ok, err, code = mount(vm, gr, s, timeout_ms)
      if not ok then
        if host and host.RequestType == "Add" and rt ~= "VPMemDevice" then
          -- Undo the host half: the request is all or nothing.
          modify(vm, { ResourcePath = host.ResourcePath, RequestType = "Remove",
            Settings = rt == "MappedDirectory" and host.Settings or nil }, opts)
        elseif host and rt == "VPMemDevice" then
          err = err .. " (the PMem device stays added: QEMU 7.2 cannot unplug it)"
        end
        return nil, err, code
      end
      return true
    end
    -- Remove: the guest lets go first, then the host half.
    if rt == "VPMemDevice" and host then
      return fail("ENOTSUP", " (Remove VPMemDevice): QEMU 7.2 cannot unplug a PMem "
        .. "device, so it stays mounted; nothing was changed")
    end
    ok, err, code = umount(vm, s, timeout_ms)
    if not ok then return nil, err, code end
    if host then
      ok, err, code = modify(vm, host, opts)
      if not ok then
        mount(vm, gr, s, timeout_ms) -- back as it was
        return nil, err, code
      end
    end
    return true
  end
end
