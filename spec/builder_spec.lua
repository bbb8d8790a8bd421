-- The Lua builder API: every method, checked against the exact HCS document
-- it produces (keys and values as hcsshim's builder would write them).
local orrery = require("orrery")
local cjson = require("cjson")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
local C1 = "0110f83b-de10-5172-a266-78bca56bf50a"
local C2 = "b5d2d8d4-3a75-51bf-945b-3444dc6b8579"
local C3 = "305891a9-b251-5dfe-91a2-c25d9212275b"
local SD = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
local VPCI = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local NIC = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"
local GROUP = "8a3c5e7f-1b2d-4e6f-8a9b-0c1d2e3f4a5b"

-- hcsshim's builder.New(owner), hcs-schema.md §c.4 last paragraph.
local NEW_JSON = '{"Owner":"o","SchemaVersion":{"Major":2,"Minor":1},'
  .. '"VirtualMachine":{"StopOnReset":true,"Chipset":{},'
  .. '"ComputeTopology":{"Memory":{},"Processor":{}},'
  .. '"Devices":{"HvSocket":{"HvSocketConfig":{"DefaultBindSecurityDescriptor":'
  .. '"D:P(A;;FA;;;SY)(A;;FA;;;BA)"}}}},"ShouldTerminateOnLastHandleClosed":true}'

local function new_doc(owner)
  return {
    Owner = owner,
    SchemaVersion = { Major = 2, Minor = 1 },
    VirtualMachine = {
      StopOnReset = true,
      Chipset = {},
      ComputeTopology = { Memory = {}, Processor = {} },
      Devices = { HvSocket = { HvSocketConfig = { DefaultBindSecurityDescriptor = SD } } },
    },
    ShouldTerminateOnLastHandleClosed = true,
  }
end

local function disk(path, extra)
  local d = { Type = "VirtualDisk", Path = path }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

describe("orrery.builder", function()
  it("starts from hcsshim's New defaults", function()
    local b = orrery.builder{ owner = "o" }
    assert.same(new_doc("o"), b:document())
    assert.equal(NEW_JSON, b:json())
  end)

  it("takes the owner as a plain string too", function()
    local b = orrery.builder("o")
    assert.same(new_doc("o"), b:document())
    assert.equal(NEW_JSON, b:json())
  end)

  it("overrides ShouldTerminateOnLastHandleClosed and StopOnReset", function()
    local b = orrery.builder{ owner = "keep", ShouldTerminateOnLastHandleClosed = false,
                              StopOnReset = false }
    local want = new_doc("keep")
    -- StopOnReset false is Go's zero value, which hcsshim leaves out; a
    -- false ShouldTerminateOnLastHandleClosed stays (a missing one means
    -- true in Orrery).
    want.ShouldTerminateOnLastHandleClosed = false
    want.VirtualMachine.StopOnReset = nil
    assert.same(want, b:document())
  end)

  it("refuses an unknown option and a non-boolean option", function()
    assert.error_matches(function() orrery.builder{ owner = "o", StopOnRest = true } end,
      "builder: option StopOnRest is not known", 1, true)
    assert.error_matches(function() orrery.builder{ owner = "o", StopOnReset = "yes" } end,
      "builder: StopOnReset must be a boolean", 1, true)
    assert.error_matches(function() orrery.builder{ owner = 5 } end,
      "builder: owner must be a string", 1, true)
  end)

  it("is an orrery.Builder userdata with __name and __tostring", function()
    local b = orrery.builder("demo")
    assert.equal("userdata", type(b))
    assert.equal("orrery.Builder", getmetatable(b).__name)
    assert.matches("^orrery%.Builder: .*owner=demo", tostring(b))
  end)

  it("returns self from every mutating method, so calls chain", function()
    local b = orrery.builder("o")
    assert.equal(b, b:set_memory{ SizeInMB = 512 })
    assert.equal(b, b:set_processor{ Count = 1 }:set_storage_qos{ IopsMaximum = 1 })
    assert.equal(b, b:add_scsi_controller(0):add_scsi_disk(0, 0, disk("/a.img")))
    assert.equal(b, b:enable_graphics_console())
  end)

  it("refuses every call after close", function()
    local b = orrery.builder("o")
    b:close()
    b:close() -- idempotent
    assert.matches("%(closed%)", tostring(b))
    assert.error_matches(function() b:set_memory{ SizeInMB = 512 } end,
      "attempt to use a closed orrery.Builder", 1, true)
    assert.error_matches(function() b:document() end,
      "attempt to use a closed orrery.Builder", 1, true)
  end)

  it("closes at the end of a <close> scope", function()
    local kept
    do
      local b <close> = orrery.builder("o")
      kept = b
    end
    assert.matches("%(closed%)", tostring(kept))
  end)

  it("exposes HCS's four SCSI controller GUIDs indexed 0..3", function()
    assert.same({ [0] = C0, [1] = C1, [2] = C2, [3] = C3 }, orrery.scsi_controller_guids)
  end)
end)

describe("builder methods", function()
  local b, want
  before_each(function()
    b = orrery.builder("t")
    want = new_doc("t")
  end)

  it("set_memory writes ComputeTopology.Memory with HCS names", function()
    b:set_memory{ SizeInMB = 4096, Backing = "Physical", LowMmioGapInMB = 256,
                  HighMmioBaseInMB = 65536, HighMmioGapInMB = 131072,
                  SlitType = "FirmwareFallbackMeasured", AllowOvercommit = false,
                  EnableHotHint = true, EnableColdHint = false,
                  EnableColdDiscardHint = false, EnableDeferredCommit = true }
    -- false fields are Go's zero values: left out, as hcsshim does.
    want.VirtualMachine.ComputeTopology.Memory = {
      SizeInMB = 4096, Backing = "Physical", LowMmioGapInMB = 256,
      HighMmioBaseInMB = 65536, HighMmioGapInMB = 131072,
      SlitType = "FirmwareFallbackMeasured", EnableHotHint = true,
      EnableDeferredCommit = true }
    assert.same(want, b:document())
  end)

  it("set_memory stores an integral float as an integer", function()
    b:set_memory{ SizeInMB = 512.0 }
    local size = b:document().VirtualMachine.ComputeTopology.Memory.SizeInMB
    assert.equal(512, size)
    assert.equal("integer", math.type(size))
    assert.matches('"SizeInMB":512[,}]', b:json())
  end)

  it("set_memory in two calls with different fields keeps both (SlitType later)", function()
    b:set_memory{ SizeInMB = 1024 }
    b:set_memory{ SlitType = "FirmwareFallbackMeasured" }
    want.VirtualMachine.ComputeTopology.Memory = { SizeInMB = 1024,
                                                   SlitType = "FirmwareFallbackMeasured" }
    assert.same(want, b:document())
  end)

  it("set_processor writes ComputeTopology.Processor", function()
    b:set_processor{ Count = 4, Limit = 100000, Weight = 100, Reservation = 0 }
    want.VirtualMachine.ComputeTopology.Processor = { Count = 4, Limit = 100000,
                                                      Weight = 100 }
    assert.same(want, b:document())
  end)

  it("set_processor in two calls with different fields keeps both", function()
    b:set_processor{ Count = 2 }
    b:set_processor{ Limit = 50000, Weight = 200 }
    want.VirtualMachine.ComputeTopology.Processor = { Count = 2, Limit = 50000, Weight = 200 }
    assert.same(want, b:document())
  end)

  it("set_cpu_group writes Processor.CpuGroup.Id", function()
    b:set_cpu_group{ Id = GROUP }
    want.VirtualMachine.ComputeTopology.Processor = { CpuGroup = { Id = GROUP } }
    assert.same(want, b:document())
  end)

  it("set_numa writes ComputeTopology.Numa", function()
    b:set_memory{ SizeInMB = 4096 }
    b:set_processor{ Count = 4 }
    b:set_numa{
      VirtualNodeCount = 2,
      PreferredPhysicalNodes = { 0, 1 },
      MaxSizePerNode = 2048,
      Settings = {
        { CountOfProcessors = 2, CountOfMemoryBlocks = 2048, MemoryBackingType = "Physical" },
        { VirtualNodeNumber = 1, PhysicalNodeNumber = 1, VirtualSocketNumber = 1,
          CountOfProcessors = 2, CountOfMemoryBlocks = 2048, MemoryBackingType = "Physical" },
      },
    }
    local topo = want.VirtualMachine.ComputeTopology
    topo.Memory = { SizeInMB = 4096 }
    topo.Processor = { Count = 4 }
    topo.Numa = {
      VirtualNodeCount = 2,
      PreferredPhysicalNodes = { 0, 1 },
      MaxSizePerNode = 2048,
      Settings = {
        { CountOfProcessors = 2, CountOfMemoryBlocks = 2048, MemoryBackingType = "Physical" },
        { VirtualNodeNumber = 1, PhysicalNodeNumber = 1, VirtualSocketNumber = 1,
          CountOfProcessors = 2, CountOfMemoryBlocks = 2048, MemoryBackingType = "Physical" },
      },
    }
    assert.same(want, b:document())
    assert.is_true(b:validate())
  end)

  it("set_numa without Settings splits evenly when the totals divide", function()
    b:set_memory{ SizeInMB = 1024 }
    b:set_processor{ Count = 4 }
    b:set_numa{ VirtualNodeCount = 2 }
    want.VirtualMachine.ComputeTopology = { Memory = { SizeInMB = 1024 },
                                            Processor = { Count = 4 },
                                            Numa = { VirtualNodeCount = 2 } }
    assert.same(want, b:document())
    assert.is_true(b:validate())
  end)

  it("set_numa_processors writes snake_case NumaProcessorsSettings", function()
    b:set_numa_processors{ count_per_node = { max = 2 }, node_per_socket = 1 }
    want.VirtualMachine.ComputeTopology.Processor = {
      NumaProcessorsSettings = { count_per_node = { max = 2 }, node_per_socket = 1 } }
    assert.same(want, b:document())
    assert.truthy(b:json():find(
      '"NumaProcessorsSettings":{"count_per_node":{"max":2},"node_per_socket":1}', 1, true))
  end)

  it("set_uefi_boot writes Chipset.Uefi.BootThis", function()
    b:set_uefi_boot{ DeviceType = "VmbFs", DevicePath = "\\EFI\\Microsoft\\Boot\\bootmgfw.efi",
                     VmbFsRootPath = "C:\\UtilityVM\\Files", OptionalData = "x" }
    want.VirtualMachine.Chipset = { Uefi = { BootThis = {
      DeviceType = "VmbFs", DevicePath = "\\EFI\\Microsoft\\Boot\\bootmgfw.efi",
      VmbFsRootPath = "C:\\UtilityVM\\Files", OptionalData = "x" } } }
    assert.same(want, b:document())
    -- Go's field order: DeviceType, DevicePath, DiskNumber, OptionalData, VmbFsRootPath.
    assert.truthy(b:json():find('"BootThis":{"DeviceType":"VmbFs","DevicePath":'
      .. '"\\\\EFI\\\\Microsoft\\\\Boot\\\\bootmgfw.efi","OptionalData":"x",'
      .. '"VmbFsRootPath":"C:\\\\UtilityVM\\\\Files"}', 1, true))
  end)

  it("set_linux_kernel_direct_boot writes Chipset.LinuxKernelDirect", function()
    b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/vmlinuz",
                                    InitRdPath = "/boot/initrd.img",
                                    KernelCmdLine = "console=ttyS0" }
    want.VirtualMachine.Chipset = { LinuxKernelDirect = {
      KernelFilePath = "/boot/vmlinuz", InitRdPath = "/boot/initrd.img",
      KernelCmdLine = "console=ttyS0" } }
    assert.same(want, b:document())
  end)

  it("set_storage_qos writes VirtualMachine.StorageQoS", function()
    b:set_storage_qos{ IopsMaximum = 5000, BandwidthMaximum = 100000000 }
    want.VirtualMachine.StorageQoS = { IopsMaximum = 5000, BandwidthMaximum = 100000000 }
    assert.same(want, b:document())
  end)

  it("add_scsi_controller keys Devices.Scsi by HCS's controller GUID", function()
    b:add_scsi_controller(0)
    b:add_scsi_controller(3)
    -- An empty Attachments map is left out (omitempty).
    want.VirtualMachine.Devices.Scsi = { [C0] = {}, [C3] = {} }
    assert.same(want, b:document())
    assert.truthy(b:json():find('"Scsi":{"305891a9-b251-5dfe-91a2-c25d9212275b":'
      .. '{},"df6d0690-79e5-55b6-a5ec-c1e2f77f580a":{}}', 1, true))
  end)

  it("takes a SCSI controller GUID in any case and stores it in lower case", function()
    -- GUIDs compare case-insensitively, as in HCS: C0 in upper case is
    -- controller 0, and two spellings of it are one controller.
    local d = b:document()
    d.VirtualMachine.Devices.Scsi = { [C0:upper()] = { Attachments = {
      ["0"] = { Type = "VirtualDisk", Path = "/srv/a.img" } } } }
    local c = orrery.builder_from(d)
    assert.same({ [C0] = { Attachments = { ["0"] = { Type = "VirtualDisk",
      Path = "/srv/a.img" } } } }, c:document().VirtualMachine.Devices.Scsi)
    c:add_scsi_disk(0, 1, disk("/srv/b.img"))
    assert.equal("/srv/b.img", c:document().VirtualMachine.Devices.Scsi[C0].Attachments["1"].Path)
    d.VirtualMachine.Devices.Scsi[C0] = {}
    assert.error_matches(function() orrery.builder_from(d) end, "is the same GUID as another key")
    d.VirtualMachine.Devices.Scsi = { [VPCI] = {} }
    assert.error_matches(function() orrery.builder_from(d) end,
      "must be one of the four HCS SCSI controller GUIDs")
  end)

  it("add_scsi_disk keys Attachments by the LUN as a string", function()
    b:add_scsi_controller(0)
    b:add_scsi_controller(1)
    b:add_scsi_disk(0, 1, disk("/var/lib/x.img", { ReadOnly = true }))
    b:add_scsi_disk(0, 63, { Type = "PassThru", Path = "/dev/sdb",
                             CachingMode = "Uncached", IgnoreFlushes = true })
    b:add_scsi_disk(1, 0, { Type = "Iso", Path = "/srv/seed.iso" })
    want.VirtualMachine.Devices.Scsi = {
      [C0] = { Attachments = {
        ["1"] = { Type = "VirtualDisk", Path = "/var/lib/x.img", ReadOnly = true },
        ["63"] = { Type = "PassThru", Path = "/dev/sdb", CachingMode = "Uncached",
                   IgnoreFlushes = true },
      } },
      [C1] = { Attachments = { ["0"] = { Type = "Iso", Path = "/srv/seed.iso" } } },
    }
    assert.same(want, b:document())
  end)

  it("add_vpci_device keys VirtualPci by the caller's GUID", function()
    b:add_vpci_device(VPCI, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } },
                              PropagateNumaAffinity = true })
    b:add_vpci_device("11111111-2222-4333-8444-555555555555",
                      { Functions = { { DeviceInstancePath = "0000:03:00.0", VirtualFunction = 2 } } })
    want.VirtualMachine.Devices.VirtualPci = {
      [VPCI] = { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } },
                 PropagateNumaAffinity = true },
      ["11111111-2222-4333-8444-555555555555"] = {
        Functions = { { DeviceInstancePath = "0000:03:00.0", VirtualFunction = 2 } } },
    }
    assert.same(want, b:document())
    -- Without the flag, PropagateNumaAffinity is omitted, as hcsshim leaves it nil.
    assert.is_nil(b:json():find(
      '"11111111-2222-4333-8444-555555555555":{[^}]*PropagateNumaAffinity'))
  end)

  it("add_vpmem_controller writes VirtualPMem (its empty Devices map left out)", function()
    b:add_vpmem_controller(4, 4294967296)
    want.VirtualMachine.Devices.VirtualPMem = { MaximumCount = 4,
                                                MaximumSizeBytes = 4294967296 }
    assert.same(want, b:document())
    assert.truthy(b:json():find(
      '"VirtualPMem":{"MaximumCount":4,"MaximumSizeBytes":4294967296}', 1, true))
  end)

  it("add_vpmem_device keys VirtualPMem.Devices by the id as a string", function()
    b:add_vpmem_controller(4, 4294967296)
    b:add_vpmem_device(0, { HostPath = "/var/lib/rootfs.vhd", ReadOnly = true,
                            ImageFormat = "Vhd1" })
    b:add_vpmem_device(3, { HostPath = "/var/lib/layer.vhd" })
    want.VirtualMachine.Devices.VirtualPMem = {
      MaximumCount = 4, MaximumSizeBytes = 4294967296,
      Devices = {
        ["0"] = { HostPath = "/var/lib/rootfs.vhd", ReadOnly = true, ImageFormat = "Vhd1" },
        ["3"] = { HostPath = "/var/lib/layer.vhd" },
      },
    }
    assert.same(want, b:document())
  end)

  it("add_vsmb writes Devices.VirtualSmb", function()
    b:add_vsmb{ DirectFileMappingInMB = 1024 }
    want.VirtualMachine.Devices.VirtualSmb = { DirectFileMappingInMB = 1024 }
    assert.same(want, b:document())
  end)

  it("add_vsmb_share appends to VirtualSmb.Shares in call order", function()
    b:add_vsmb{ DirectFileMappingInMB = 1024 }
    b:add_vsmb_share{ Name = "layers", Path = "/srv/layers",
                      Options = { ReadOnly = true, CacheIo = true } }
    b:add_vsmb_share{ Name = "scratch", Path = "/srv/scratch", AllowedFiles = { "a", "b" } }
    want.VirtualMachine.Devices.VirtualSmb = {
      DirectFileMappingInMB = 1024,
      Shares = {
        { Name = "layers", Path = "/srv/layers", Options = { ReadOnly = true, CacheIo = true } },
        { Name = "scratch", Path = "/srv/scratch", AllowedFiles = { "a", "b" } },
      },
    }
    assert.same(want, b:document())
  end)

  it("add_plan9_share appends to Plan9.Shares in call order", function()
    b:add_plan9_share{ Name = "src", AccessName = "src", Path = "/srv/src", Port = 564,
                       ReadOnly = true }
    b:add_plan9_share{ Name = "out", Path = "/srv/out", Flags = 2, UseShareRootIdentity = true }
    -- ReadOnly and UseShareRootIdentity are hcsshim's Flags bits 0x1 and 0x10.
    want.VirtualMachine.Devices.Plan9 = { Shares = {
      { Name = "src", AccessName = "src", Path = "/srv/src", Port = 564, Flags = 1 },
      { Name = "out", Path = "/srv/out", Flags = 18 },
    } }
    assert.same(want, b:document())
  end)

  it("set_serial_console writes ComPorts keyed by the port number ('0' is COM1)", function()
    b:set_serial_console(0, "/run/orrery/demo/com1.sock")
    b:set_serial_console(1, "/run/orrery/demo/com2.sock")
    want.VirtualMachine.Devices.ComPorts = {
      ["0"] = { NamedPipe = "/run/orrery/demo/com1.sock" },
      ["1"] = { NamedPipe = "/run/orrery/demo/com2.sock" },
    }
    assert.same(want, b:document())
  end)

  it("set_serial_console accepts a 107-byte socket path", function()
    local path = "/" .. string.rep("s", 106)
    b:set_serial_console(3, path)
    want.VirtualMachine.Devices.ComPorts = { ["3"] = { NamedPipe = path } }
    assert.same(want, b:document())
  end)

  it("add_network_adapter keys NetworkAdapters by the caller's GUID", function()
    b:add_network_adapter(NIC, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A",
                                 IovSettings = { OffloadWeight = 100,
                                                 InterruptModeration = "Adaptive" } })
    want.VirtualMachine.Devices.NetworkAdapters = { [NIC] = {
      EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A",
      IovSettings = { OffloadWeight = 100, InterruptModeration = "Adaptive" } } }
    assert.same(want, b:document())
  end)

  it("enable_graphics_console adds Keyboard, EnhancedModeVideo and VideoMonitor", function()
    b:enable_graphics_console()
    b:enable_graphics_console() -- again: nothing is lost, so it is not an error
    local dev = want.VirtualMachine.Devices
    dev.Keyboard, dev.EnhancedModeVideo, dev.VideoMonitor = {}, {}, {}
    assert.same(want, b:document())
    assert.truthy(b:json():find(
      '"Devices":{"VideoMonitor":{},"Keyboard":{},"HvSocket":{"HvSocketConfig":'
      .. '{"DefaultBindSecurityDescriptor":"D:P(A;;FA;;;SY)(A;;FA;;;BA)"}},'
      .. '"EnhancedModeVideo":{}}', 1, true))
  end)
end)

describe("document, json, validate", function()
  it("document() returns a copy: changing it does not change the builder", function()
    local b = orrery.builder("o")
    b:set_memory{ SizeInMB = 512 }
    local d = b:document()
    d.Owner = "mallory"
    d.VirtualMachine.ComputeTopology.Memory.SizeInMB = 1
    d.VirtualMachine.Devices.Scsi = { [C0] = { Attachments = {} } }
    local again = b:document()
    assert.equal("o", again.Owner)
    assert.equal(512, again.VirtualMachine.ComputeTopology.Memory.SizeInMB)
    assert.is_nil(again.VirtualMachine.Devices.Scsi)
  end)

  it("json() is one line; json{ pretty = true } is indented and decodes the same", function()
    local b = orrery.builder("o")
    b:set_memory{ SizeInMB = 512 }:set_processor{ Count = 2 }
    local compact, pretty = b:json(), b:json{ pretty = true }
    assert.is_nil(compact:find("\n", 1, true))
    assert.truthy(pretty:find('\n  "SchemaVersion": {\n    "Major": 2,', 1, true))
    assert.same(cjson.decode(compact), cjson.decode(pretty))
    assert.same(b:document(), cjson.decode(compact))
  end)

  it("validate() returns true for a complete document", function()
    local b = orrery.builder("o")
    b:set_memory{ SizeInMB = 512 }:set_processor{ Count = 1 }
    b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/vmlinuz" }
    local ok, msg, code = b:validate()
    assert.is_true(ok)
    assert.is_nil(msg)
    assert.is_nil(code)
  end)
end)

describe("orrery.builder_from", function()
  local function sample()
    local b = orrery.builder("from")
    b:set_memory{ SizeInMB = 1024 }:set_processor{ Count = 2 }
    b:add_scsi_controller(0):add_scsi_disk(0, 0, disk("/srv/root.img", { ReadOnly = true }))
    b:set_serial_console(0, "/tmp/from-com1.sock")
    return b
  end

  it("copies a Lua table, JSON text or another builder into an equal document", function()
    local b = sample()
    local from_table = orrery.builder_from(b:document())
    local from_json = orrery.builder_from(b:json())
    local from_builder = orrery.builder_from(b)
    assert.same(b:document(), from_table:document())
    assert.same(b:document(), from_json:document())
    assert.same(b:document(), from_builder:document())
    assert.equal(b:json(), from_table:json())
    assert.equal(b:json(), from_json:json())
    assert.equal(b:json(), from_builder:json())
  end)

  it("gives an independent builder that keeps the write-once rules", function()
    local b = sample()
    local c = orrery.builder_from(b)
    c:add_scsi_disk(0, 1, disk("/srv/data.img"))
    assert.is_nil(b:document().VirtualMachine.Devices.Scsi[C0].Attachments["1"])
    assert.same(disk("/srv/data.img"),
                c:document().VirtualMachine.Devices.Scsi[C0].Attachments["1"])
    assert.error_matches(function() c:add_scsi_disk(0, 0, disk("/srv/other.img")) end,
      "add_scsi_disk: controller 0 LUN 0 is already used", 1, true)
    assert.error_matches(function() c:set_memory{ SizeInMB = 2048 } end,
      "set_memory: ComputeTopology.Memory.SizeInMB is already set", 1, true)
  end)

  it("keeps a document exactly as given, adding no defaults", function()
    local c = orrery.builder_from('{"VirtualMachine":{"ComputeTopology":{"Memory":{"SizeInMB":256}}}}')
    assert.same({ VirtualMachine = { ComputeTopology = { Memory = { SizeInMB = 256 } } } },
                c:document())
  end)
end)
