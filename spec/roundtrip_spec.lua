-- JSON round trip of a rich document, and the shape of b:json(): HCS/Go key
-- order, sorted map keys, lists that stay lists when Lua gives {}.
local orrery = require("orrery")
local cjson = require("cjson")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
local C1 = "0110f83b-de10-5172-a266-78bca56bf50a"
local VPCI = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local NIC = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"

-- Object keys of JSON text in the order they appear: a small reader that
-- keeps what cjson throws away. Objects come back as { keys = {...},
-- values = { [key] = v } }, lists as { list = {...} }.
local function ordered(text)
  local pos = 1
  local value
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = text:sub(pos, pos)
      if c == '"' then pos = pos + 1 return table.concat(out) end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        if e == "u" then
          out[#out + 1] = utf8.char(tonumber(text:sub(pos + 2, pos + 5), 16))
          pos = pos + 6
        else
          out[#out + 1] = ({ n = "\n", t = "\t", r = "\r", b = "\b", f = "\f" })[e] or e
          pos = pos + 2
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
  end
  function value()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      local obj = { keys = {}, values = {} }
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "}" then pos = pos + 1 return obj end
      while true do
        ws()
        local k = str()
        ws()
        assert(text:sub(pos, pos) == ":", "':' expected at " .. pos)
        pos = pos + 1
        obj.keys[#obj.keys + 1] = k
        obj.values[k] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return obj end
        assert(d == ",", "',' expected at " .. pos)
      end
    elseif c == "[" then
      local arr = { list = {} }
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1 return arr end
      while true do
        arr.list[#arr.list + 1] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return arr end
        assert(d == ",", "',' expected at " .. pos)
      end
    elseif c == '"' then
      return str()
    else
      local lit = text:match("^[%w%.%-+]+", pos)
      pos = pos + #lit
      if lit == "true" then return true elseif lit == "false" then return false
      elseif lit == "null" then return nil end
      return math.tointeger(tonumber(lit)) or tonumber(lit)
    end
  end
  local v = value()
  ws()
  assert(pos == #text + 1, "trailing text at " .. pos)
  return v
end

local function keys_at(tree, ...)
  for _, k in ipairs{ ... } do tree = tree.values[k] end
  return tree.keys
end

local function sorted(list)
  local copy = { table.unpack(list) }
  table.sort(copy)
  return copy
end

-- The full example: every group of the document, as in hcs-schema.md §c.4
-- plus the devices the qemu backend runs.
-- hcsshim's §c.4 UVM shape: size_mb of physical memory over two NUMA
-- nodes of two processors each, direct boot, SCSI controllers 0 and 1.
local function uvm(owner, size_mb, boot)
  local b = orrery.builder(owner)
  b:set_memory{ SizeInMB = size_mb, Backing = "Physical", LowMmioGapInMB = 256,
                HighMmioBaseInMB = 65536, HighMmioGapInMB = 131072 }
  b:set_memory{ SlitType = "FirmwareFallbackMeasured" }
  b:set_processor{ Count = 4, Limit = 100000, Weight = 100 }
  b:set_numa_processors{ count_per_node = { max = 2 }, node_per_socket = 1 }
  b:set_numa{ VirtualNodeCount = 2, Settings = {
    { CountOfProcessors = 2, CountOfMemoryBlocks = size_mb // 2, MemoryBackingType = "Physical" },
    { VirtualNodeNumber = 1, PhysicalNodeNumber = 1, VirtualSocketNumber = 1,
      CountOfProcessors = 2, CountOfMemoryBlocks = size_mb // 2, MemoryBackingType = "Physical" } } }
  b:set_linux_kernel_direct_boot(boot)
  b:add_scsi_controller(0)
  b:add_scsi_controller(1)
  return b
end

local function rich()
  local b = uvm({ owner = "roundtrip" }, 1024,
                { KernelFilePath = "/var/lib/orrery/guest/vmlinuz",
                  InitRdPath = "/var/lib/orrery/guest/initrd.img",
                  KernelCmdLine = "console=ttyS0,115200 quiet" })
  b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/srv/rootfs.img", ReadOnly = true })
  b:add_scsi_disk(0, 2, { Type = "VirtualDisk", Path = "/srv/data2.img" })
  b:add_scsi_disk(0, 10, { Type = "VirtualDisk", Path = "/srv/data10.img",
                           CachingMode = "Uncached" })
  b:add_scsi_disk(1, 0, { Type = "VirtualDisk", Path = "/srv/sandbox.img" })
  b:add_vpci_device(VPCI, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } },
                            PropagateNumaAffinity = true })
  b:add_network_adapter(NIC, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" })
  b:add_plan9_share{ Name = "src", AccessName = "src", Path = "/srv/src", Port = 564,
                     ReadOnly = true, AllowedFiles = {} }
  b:set_serial_console(0, "/tmp/orrery-roundtrip-com1.sock")
  b:set_storage_qos{ IopsMaximum = 5000, BandwidthMaximum = 100000000 }
  b:add_vpmem_controller(4, 4294967296)
  b:add_vpmem_device(0, { HostPath = "/srv/layer0.vhd", ReadOnly = true, ImageFormat = "Vhd1" })
  b:enable_graphics_console()
  return b
end

describe("JSON round trip", function()
  it("cjson.decode(b:json()) deep-equals b:document()", function()
    local b = rich()
    assert.is_true(b:validate())
    assert.same(b:document(), cjson.decode(b:json()))
    assert.same(b:document(), cjson.decode(b:json{ pretty = true }))
  end)

  it("builder_from(b:json()) and builder_from(b:document()) give the same document", function()
    local b = rich()
    local from_json = orrery.builder_from(b:json())
    local from_doc = orrery.builder_from(b:document())
    assert.same(b:document(), from_json:document())
    assert.same(b:document(), from_doc:document())
    assert.equal(b:json(), from_json:json())
    assert.equal(b:json(), from_doc:json())
    -- and once more around: a fixed point
    assert.equal(b:json(), orrery.builder_from(from_json:json()):json())
  end)

  it("reads pretty-printed JSON too", function()
    local b = rich()
    assert.equal(b:json(), orrery.builder_from(b:json{ pretty = true }):json())
  end)

  it("keeps every document the builder accepts valid (VPMem ids 64..127)", function()
    local b = orrery.builder("o")
    b:add_vpmem_controller(128, 4294967296)
    b:add_vpmem_device(70, { HostPath = "/srv/layer70.vhd" })
    b:add_vpmem_device(127, { HostPath = "/srv/layer127.vhd" })
    assert.same({ ["70"] = { HostPath = "/srv/layer70.vhd" },
                  ["127"] = { HostPath = "/srv/layer127.vhd" } },
                b:document().VirtualMachine.Devices.VirtualPMem.Devices)
    assert.same({ true }, { b:validate() })
    assert.equal(b:json(), orrery.builder_from(b:json()):json())
  end)
end)

describe("b:json() key order", function()
  local tree
  before_each(function()
    tree = ordered(rich():json())
  end)

  it("puts Owner, SchemaVersion, VirtualMachine, ShouldTerminateOnLastHandleClosed in Go order", function()
    assert.same({ "Owner", "SchemaVersion", "VirtualMachine",
                  "ShouldTerminateOnLastHandleClosed" }, tree.keys)
    local text = rich():json()
    local o = text:find('"Owner"', 1, true)
    local s = text:find('"SchemaVersion"', 1, true)
    local v = text:find('"VirtualMachine"', 1, true)
    local t = text:find('"ShouldTerminateOnLastHandleClosed"', 1, true)
    assert.is_true(o < s and s < v and v < t)
    assert.same({ "Major", "Minor" }, keys_at(tree, "SchemaVersion"))
  end)

  it("orders VirtualMachine, Chipset and ComputeTopology fields as Go declares them", function()
    assert.same({ "StopOnReset", "Chipset", "ComputeTopology", "Devices", "StorageQoS" },
                keys_at(tree, "VirtualMachine"))
    assert.same({ "LinuxKernelDirect" }, keys_at(tree, "VirtualMachine", "Chipset"))
    assert.same({ "KernelFilePath", "InitRdPath", "KernelCmdLine" },
                keys_at(tree, "VirtualMachine", "Chipset", "LinuxKernelDirect"))
    assert.same({ "Memory", "Processor", "Numa" },
                keys_at(tree, "VirtualMachine", "ComputeTopology"))
    assert.same({ "SizeInMB", "Backing", "LowMmioGapInMB", "HighMmioBaseInMB",
                  "HighMmioGapInMB", "SlitType" },
                keys_at(tree, "VirtualMachine", "ComputeTopology", "Memory"))
    assert.same({ "Count", "Limit", "Weight", "NumaProcessorsSettings" },
                keys_at(tree, "VirtualMachine", "ComputeTopology", "Processor"))
    assert.same({ "count_per_node", "node_per_socket" },
                keys_at(tree, "VirtualMachine", "ComputeTopology", "Processor",
                        "NumaProcessorsSettings"))
    assert.same({ "VirtualNodeCount", "Settings" },
                keys_at(tree, "VirtualMachine", "ComputeTopology", "Numa"))
    local node1 = tree.values.VirtualMachine.values.ComputeTopology.values.Numa.values
      .Settings.list[2]
    assert.same({ "VirtualNodeNumber", "PhysicalNodeNumber", "VirtualSocketNumber",
                  "CountOfProcessors", "CountOfMemoryBlocks", "MemoryBackingType" }, node1.keys)
    assert.same({ "IopsMaximum", "BandwidthMaximum" },
                keys_at(tree, "VirtualMachine", "StorageQoS"))
  end)

  it("orders Devices fields as Go declares them", function()
    assert.same({ "ComPorts", "Scsi", "VirtualPMem", "NetworkAdapters", "VideoMonitor",
                  "Keyboard", "HvSocket", "EnhancedModeVideo", "Plan9", "VirtualPci" },
                keys_at(tree, "VirtualMachine", "Devices"))
    assert.same({ "Devices", "MaximumCount", "MaximumSizeBytes" },
                keys_at(tree, "VirtualMachine", "Devices", "VirtualPMem"))
    assert.same({ "EndpointId", "MacAddress" },
                keys_at(tree, "VirtualMachine", "Devices", "NetworkAdapters", NIC))
    assert.same({ "Functions", "PropagateNumaAffinity" },
                keys_at(tree, "VirtualMachine", "Devices", "VirtualPci", VPCI))
    local share = tree.values.VirtualMachine.values.Devices.values.Plan9.values.Shares.list[1]
    -- ReadOnly is hcsshim's Flags bit 0x1; the empty AllowedFiles is left out.
    assert.same({ "Name", "AccessName", "Path", "Port", "Flags" }, share.keys)
  end)

  it("sorts map keys as Go does (strings: '10' before '2')", function()
    local scsi = keys_at(tree, "VirtualMachine", "Devices", "Scsi")
    assert.same({ C1, C0 }, scsi)
    assert.same(sorted(scsi), scsi)
    assert.same({ "0", "10", "2" }, keys_at(tree, "VirtualMachine", "Devices", "Scsi", C0,
                                            "Attachments"))
    assert.same({ "Type", "Path", "CachingMode" },
                keys_at(tree, "VirtualMachine", "Devices", "Scsi", C0, "Attachments", "10"))
    assert.same({ "Type", "Path", "ReadOnly" },
                keys_at(tree, "VirtualMachine", "Devices", "Scsi", C0, "Attachments", "0"))
  end)

  it("sorts map keys whatever order they were added in", function()
    local b = orrery.builder("o")
    for _, c in ipairs{ 3, 1, 2, 0 } do b:add_scsi_controller(c) end
    for _, g in ipairs{ "ffffffff-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000",
                        "7fffffff-0000-4000-8000-000000000000" } do
      b:add_vpci_device(g, { Functions = { { DeviceInstancePath = g } } })
    end
    local t = ordered(b:json())
    local scsi = keys_at(t, "VirtualMachine", "Devices", "Scsi")
    assert.equal(4, #scsi)
    assert.same(sorted(scsi), scsi)
    assert.same({ "00000000-0000-4000-8000-000000000000", "7fffffff-0000-4000-8000-000000000000",
                  "ffffffff-0000-4000-8000-000000000000" },
                keys_at(t, "VirtualMachine", "Devices", "VirtualPci"))
  end)

  it("reproduces hcsshim's §c.4 Linux UVM document key for key", function()
    local b = uvm("containerd-shim-runhcs-v1.exe", 4096,
                  { KernelFilePath = "/boot/vmlinux", InitRdPath = "/boot/initrd.img",
                    KernelCmdLine = "console=ttyS0,115200 pci=off" })
    b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/boot/rootfs.vhd", ReadOnly = true })
    b:add_scsi_disk(1, 0, { Type = "VirtualDisk", Path = "/state/sandbox.vhdx" })
    b:add_vpci_device(VPCI, { Functions = { { DeviceInstancePath = "PCI\\VEN_10DE" } },
                              PropagateNumaAffinity = true })
    b:set_serial_console(0, "/run/uvm-console.sock")
    b:set_storage_qos{ IopsMaximum = 5000, BandwidthMaximum = 100000000 }
    local want = table.concat{
      '{"Owner":"containerd-shim-runhcs-v1.exe","SchemaVersion":{"Major":2,"Minor":1},',
      '"VirtualMachine":{"StopOnReset":true,',
      '"Chipset":{"LinuxKernelDirect":{"KernelFilePath":"/boot/vmlinux",',
      '"InitRdPath":"/boot/initrd.img","KernelCmdLine":"console=ttyS0,115200 pci=off"}},',
      '"ComputeTopology":{"Memory":{"SizeInMB":4096,"Backing":"Physical",',
      '"LowMmioGapInMB":256,"HighMmioBaseInMB":65536,"HighMmioGapInMB":131072,',
      '"SlitType":"FirmwareFallbackMeasured"},',
      '"Processor":{"Count":4,"Limit":100000,"Weight":100,',
      '"NumaProcessorsSettings":{"count_per_node":{"max":2},"node_per_socket":1}},',
      '"Numa":{"VirtualNodeCount":2,"Settings":[',
      '{"CountOfProcessors":2,"CountOfMemoryBlocks":2048,"MemoryBackingType":"Physical"},',
      '{"VirtualNodeNumber":1,"PhysicalNodeNumber":1,"VirtualSocketNumber":1,',
      '"CountOfProcessors":2,"CountOfMemoryBlocks":2048,"MemoryBackingType":"Physical"}]}},',
      '"Devices":{"ComPorts":{"0":{"NamedPipe":"/run/uvm-console.sock"}},',
      '"Scsi":{"0110f83b-de10-5172-a266-78bca56bf50a":{"Attachments":{"0":',
      '{"Type":"VirtualDisk","Path":"/state/sandbox.vhdx"}}},',
      '"df6d0690-79e5-55b6-a5ec-c1e2f77f580a":{"Attachments":{"0":',
      '{"Type":"VirtualDisk","Path":"/boot/rootfs.vhd","ReadOnly":true}}}},',
      '"HvSocket":{"HvSocketConfig":{"DefaultBindSecurityDescriptor":',
      '"D:P(A;;FA;;;SY)(A;;FA;;;BA)"}},',
      '"VirtualPci":{"6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f":{"Functions":',
      '[{"DeviceInstancePath":"PCI\\\\VEN_10DE"}],"PropagateNumaAffinity":true}}},',
      '"StorageQoS":{"IopsMaximum":5000,"BandwidthMaximum":100000000}},',
      '"ShouldTerminateOnLastHandleClosed":true}',
    }
    assert.equal(want, b:json())
  end)
end)

describe("empty Lua tables", function()
  local function devices(extra)
    local d = orrery.builder("o"):document()
    for k, v in pairs(extra) do d.VirtualMachine.Devices[k] = v end
    return d
  end

  -- Lua cannot tell {} for a list from {} for a map; either way an empty
  -- one is Go's zero value, which omitempty leaves out of the JSON and the
  -- document alike.
  it("are left out where HCS has a list (Plan9 Shares, AllowedFiles)", function()
    local b = orrery.builder_from(devices{ Plan9 = { Shares = {} } })
    assert.truthy(b:json():find('"Plan9":{}', 1, true))
    b:add_plan9_share{ Name = "src", Path = "/srv/src", AllowedFiles = {} }
    assert.truthy(b:json():find(
      '"Plan9":{"Shares":[{"Name":"src","Path":"/srv/src"}]}', 1, true))
    assert.equal(b:json(), orrery.builder_from(b:document()):json())
    assert.equal(b:json(), orrery.builder_from(b:json()):json())
  end)

  it("are left out for NUMA Settings and PreferredPhysicalNodes", function()
    local b = orrery.builder("o")
    b:set_memory{ SizeInMB = 1024 }:set_processor{ Count = 2 }
    b:set_numa{ VirtualNodeCount = 2, PreferredPhysicalNodes = {}, Settings = {} }
    assert.truthy(b:json():find('"Numa":{"VirtualNodeCount":2}', 1, true))
    assert.equal(b:json(), orrery.builder_from(b:document()):json())
  end)

  it("are left out where HCS has a map (ComPorts, NetworkAdapters, Attachments)", function()
    local b = orrery.builder_from(devices{ ComPorts = {}, NetworkAdapters = {},
                                           Scsi = { [C0] = { Attachments = {} } } })
    local text = b:json()
    assert.is_nil(text:find('"ComPorts"', 1, true))
    assert.is_nil(text:find('"NetworkAdapters"', 1, true))
    assert.truthy(text:find('"Scsi":{"' .. C0 .. '":{}}', 1, true))
    b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/srv/a.img" })
    assert.equal(b:json(), orrery.builder_from(b:document()):json())
  end)

  it("are refused for VPCI Functions, which needs at least one function", function()
    local b = orrery.builder("o")
    assert.has_error(function() b:add_vpci_device(VPCI, { Functions = {} }) end)
    assert.has_error(function()
      orrery.builder_from(devices{ VirtualPci = { [VPCI] = { Functions = {} } } })
    end)
  end)
end)
