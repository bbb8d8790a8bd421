-- b:json() is byte for byte what hcsshim's marshaller (encoding/json over
-- the schema2 structs) writes for the same document. The expected texts
-- below were worked out by hand from Go's rules: fields in struct order,
-- map keys sorted, omitempty leaving out false, 0, "" and empty lists and
-- maps but not a pointer's zero value, a struct held by value always
-- written, <, > and & escaped as \u003c, \u003e, \u0026, control bytes as
-- \b \f \n \r \t or \u00xx, U+2028 and U+2029 escaped, float64 in its
-- shortest form. The document and round trips follow the same rules.
local orrery = require("orrery")
local cjson = require("cjson")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
local G = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local N = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"
local SD = '"HvSocket":{"HvSocketConfig":{"DefaultBindSecurityDescriptor":'
  .. '"D:P(A;;FA;;;SY)(A;;FA;;;BA)"}}'

-- The same document whichever way it is read back.
local function round_trips(b)
  local text = b:json()
  assert.same(b:document(), cjson.decode(text))
  assert.equal(text, orrery.builder_from(text):json())
  assert.equal(text, orrery.builder_from(b:document()):json())
  assert.same(b:document(), orrery.builder_from(text):document())
  assert.equal(b:json{ pretty = true }, orrery.builder_from(text):json{ pretty = true })
end

describe("b:json() as hcsshim's marshaller writes it", function()
  it("writes a four-disk document", function()
    local b = orrery.builder{ owner = "bench" }
    b:set_memory{ SizeInMB = 1024 }
    b:set_processor{ Count = 2 }
    b:add_scsi_controller(0)
    for lun = 0, 3 do
      b:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = "/srv/d" .. lun .. ".img" })
    end
    assert.equal(table.concat{
      '{"Owner":"bench","SchemaVersion":{"Major":2,"Minor":1},',
      '"VirtualMachine":{"StopOnReset":true,"Chipset":{},',
      '"ComputeTopology":{"Memory":{"SizeInMB":1024},"Processor":{"Count":2}},',
      '"Devices":{"Scsi":{"', C0, '":{"Attachments":{',
      '"0":{"Type":"VirtualDisk","Path":"/srv/d0.img"},',
      '"1":{"Type":"VirtualDisk","Path":"/srv/d1.img"},',
      '"2":{"Type":"VirtualDisk","Path":"/srv/d2.img"},',
      '"3":{"Type":"VirtualDisk","Path":"/srv/d3.img"}}}},', SD, '}},',
      '"ShouldTerminateOnLastHandleClosed":true}' }, b:json())
    round_trips(b)
  end)

  it("leaves out zero values, keeps a pointer's zero and a struct held by value", function()
    local b = orrery.builder{ owner = "fixture", StopOnReset = false }
    b:set_memory{ SizeInMB = 512, AllowOvercommit = false, Backing = "Virtual", LowMmioGapInMB = 0 }
    b:set_processor{ Count = 1, Limit = 0, Weight = 0 }
    b:set_numa_processors{ node_per_socket = 1 }
    b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/vmlinuz", KernelCmdLine = "" }
    b:add_scsi_controller(1)
    b:add_vpci_device(G, { Functions = { { DeviceInstancePath = "PCI\\VEN_1234&DEV_5678",
                                           VirtualFunction = 0 } },
                           PropagateNumaAffinity = false })
    b:add_network_adapter(N, { EndpointId = "e<1>", MacAddress = "00-15-5D-52-C0-0A",
                               IovSettings = { OffloadWeight = 0, QueuePairsRequested = 0 } })
    b:add_plan9_share{ Name = "src", Path = "/srv/src", Port = 564, ReadOnly = true,
                       AllowedFiles = {} }
    b:add_vpmem_controller(4, 4294967296)
    b:set_serial_console(0, "/tmp/c&1.sock")
    b:set_storage_qos{ IopsMaximum = 0 }
    b:enable_graphics_console()
    assert.equal(table.concat{
      '{"Owner":"fixture","SchemaVersion":{"Major":2,"Minor":1},',
      '"VirtualMachine":{"Chipset":{"LinuxKernelDirect":{"KernelFilePath":"/boot/vmlinuz"}},',
      '"ComputeTopology":{"Memory":{"SizeInMB":512,"Backing":"Virtual"},',
      '"Processor":{"Count":1,"NumaProcessorsSettings":{"count_per_node":{},',
      '"node_per_socket":1}}},',
      [["Devices":{"ComPorts":{"0":{"NamedPipe":"/tmp/c\u00261.sock"}},]],
      '"Scsi":{"0110f83b-de10-5172-a266-78bca56bf50a":{}},',
      '"VirtualPMem":{"MaximumCount":4,"MaximumSizeBytes":4294967296},',
      '"NetworkAdapters":{"', N, [[":{"EndpointId":"e\u003c1\u003e",]],
      '"MacAddress":"00-15-5D-52-C0-0A","IovSettings":{"OffloadWeight":0,',
      '"QueuePairsRequested":0}}},',
      '"VideoMonitor":{},"Keyboard":{},', SD, ',"EnhancedModeVideo":{},',
      '"Plan9":{"Shares":[{"Name":"src","Path":"/srv/src","Port":564,"Flags":1}]},',
      '"VirtualPci":{"', G, [[":{"Functions":[{"DeviceInstancePath":"PCI\\VEN_1234\u0026DEV_5678"}],]],
      '"PropagateNumaAffinity":false}}},',
      '"StorageQoS":{}},"ShouldTerminateOnLastHandleClosed":true}' }, b:json())
    round_trips(b)
  end)

  it("escapes strings as Go does", function()
    local b = orrery.builder("o")
    b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/vmlinuz",
      KernelCmdLine = "a\b\f\n\r\t\1\31\127<>&é\u{2028}\u{2029}\"\\/" }
    local want = '"KernelCmdLine":"a' .. [[\b\f\n\r\t\u0001\u001f]] .. "\127"
      .. [[\u003c\u003e\u0026]] .. "é" .. [[\u2028\u2029\"\\/"]]
    assert.truthy(b:json():find(want, 1, true), b:json())
    round_trips(b)
  end)

  it("writes MigrationOptions: float64 in Go's shortest form, []byte as base64", function()
    local function json_of(scale)
      return orrery.builder_from{ VirtualMachine = {
        ResourcePartitionId = "87654321-4321-8765-4321-876543218765",
        MigrationOptions = {
          Origin = "Source", MemoryTransport = "TCP",
          MemoryTransferThrottleParams = { SkipThrottling = false, ThrottlingScale = scale,
                                           MinimumThrottlePercentage = 0,
                                           TargetBlackoutTransferTime = 500 },
          CompressionSettings = { ThrottleWorkerCount = 0 },
          ChecksumVerification = false,
          CompatibilityData = { Data = "AQID" } } } }:json()
    end
    assert.equal(table.concat{
      '{"VirtualMachine":{"ResourcePartitionId":"87654321-4321-8765-4321-876543218765",',
      '"MigrationOptions":{"Origin":"Source","MemoryTransport":"TCP",',
      '"MemoryTransferThrottleParams":{"SkipThrottling":false,"ThrottlingScale":0.5,',
      '"MinimumThrottlePercentage":0,"TargetBlackoutTransferTime":500},',
      '"CompressionSettings":{"ThrottleWorkerCount":0},',
      '"CompatibilityData":{"Data":"AQID"}}}}' }, json_of(0.5))
    for scale, text in pairs{ [100] = "100", [0.1] = "0.1", [1e21] = "1e+21", [1e20] = "100000000000000000000",
                              [1.5e-7] = "1.5e-7", [1e-6] = "0.000001", [2.5] = "2.5" } do
      assert.truthy(json_of(scale):find('"ThrottlingScale":' .. text .. ",", 1, true), text)
    end
    assert.error_matches(function()
      orrery.builder_from{ VirtualMachine = { MigrationOptions = { CompatibilityData = { Data = "AQI" } } } }
    end, "VirtualMachine.MigrationOptions.CompatibilityData.Data must be standard base64 with padding",
    1, true)
    assert.error_matches(function()
      orrery.builder_from{ VirtualMachine = { MigrationOptions = { CompatibilityData = { Data = "AQJ=" } } } }
    end, "must be standard base64", 1, true)
  end)

  it("indents as Go's MarshalIndent(doc, \"\", \"  \") does", function()
    assert.equal([[
{
  "Owner": "p",
  "SchemaVersion": {
    "Major": 2,
    "Minor": 1
  },
  "VirtualMachine": {
    "StopOnReset": true,
    "Chipset": {},
    "ComputeTopology": {
      "Memory": {},
      "Processor": {}
    },
    "Devices": {
      "HvSocket": {
        "HvSocketConfig": {
          "DefaultBindSecurityDescriptor": "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
        }
      }
    }
  },
  "ShouldTerminateOnLastHandleClosed": true
}]], orrery.builder("p"):json{ pretty = true })
  end)

  it("escapes map keys as Go does and sorts them by their bytes", function()
    local b = orrery.builder_from{ VirtualMachine = { Devices = { FlexibleIov = {
      ["b&c"] = { EmulatorId = "2" }, ["a<b>"] = { EmulatorId = "1", Configuration = {} } } } } }
    assert.equal('{"VirtualMachine":{"Devices":{"FlexibleIov":{'
      .. [["a\u003cb\u003e":{"EmulatorId":"1"},"b\u0026c":{"EmulatorId":"2"}}}}}]], b:json())
    round_trips(b)
  end)

  it("writes VirtualSmbShareOptions in Go's field order, with hcsshim's three new fields", function()
    local b = orrery.builder("o")
    b:add_vsmb{ DirectFileMappingInMB = 1024 }
    b:add_vsmb_share{ Name = "s", Path = "/srv/s", Options = {
      SingleFileMapping = true, NonCacheIo = true, VmSharedMemory = true, NoDirnotify = true,
      ReadOnly = true, PseudoOplocks = false } }
    assert.truthy(b:json():find('"Options":{"ReadOnly":true,"NoDirnotify":true,'
      .. '"VmSharedMemory":true,"NonCacheIo":true,"SingleFileMapping":true}', 1, true))
    round_trips(b)
  end)
end)

describe("the document follows the same rules", function()
  it("leaves zero values out of b:document() too", function()
    local b = orrery.builder("o")
    b:add_scsi_controller(0)
    b:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = "/srv/a.img", ReadOnly = false,
                            CachingMode = nil, IgnoreFlushes = false })
    assert.same({ [C0] = { Attachments = { ["1"] = { Type = "VirtualDisk", Path = "/srv/a.img" } } } },
                b:document().VirtualMachine.Devices.Scsi)
    local from = orrery.builder_from{ VirtualMachine = { StopOnReset = false,
      ComputeTopology = { Memory = { SizeInMB = 256, AllowOvercommit = false },
                          Processor = { Count = 1, Limit = 0 },
                          Numa = { VirtualNodeCount = 1, Settings = {}, PreferredPhysicalNodes = {} } },
      Devices = { ComPorts = {}, Plan9 = { Shares = {} }, Scsi = { [C0] = { Attachments = {} } } } } }
    assert.same({ VirtualMachine = {
                    ComputeTopology = { Memory = { SizeInMB = 256 }, Processor = { Count = 1 },
                                        Numa = { VirtualNodeCount = 1 } },
                    Devices = { Plan9 = {}, Scsi = { [C0] = {} } } } },
                from:document())
    assert.equal('{"VirtualMachine":{"ComputeTopology":{"Memory":{"SizeInMB":256},'
                 .. '"Processor":{"Count":1},"Numa":{"VirtualNodeCount":1}},'
                 .. '"Devices":{"Scsi":{"' .. C0 .. '":{}},"Plan9":{}}}}', from:json())
  end)

  it("keeps ShouldTerminateOnLastHandleClosed = false (a missing one means true here)", function()
    local b = orrery.builder{ owner = "o", ShouldTerminateOnLastHandleClosed = false }
    assert.is_false(b:document().ShouldTerminateOnLastHandleClosed)
    assert.truthy(b:json():find('"ShouldTerminateOnLastHandleClosed":false}$'))
    round_trips(b)
  end)

  it("still refuses setting a field twice when the first value was a zero Go leaves out", function()
    local b = orrery.builder("o")
    b:set_memory{ SizeInMB = 512, AllowOvercommit = false }
    assert.is_nil(b:document().VirtualMachine.ComputeTopology.Memory.AllowOvercommit)
    local before = b:document()
    assert.error_matches(function() b:set_memory{ AllowOvercommit = true } end,
      "set_memory: ComputeTopology.Memory.AllowOvercommit is already set (to false)", 1, true)
    assert.same(before, b:document())
    b:set_processor{ Reservation = 0 }
    assert.error_matches(function() b:set_processor{ Reservation = 5000, Count = 2 } end,
      "set_processor: ComputeTopology.Processor.Reservation is already set (to 0)", 1, true)
    -- The refused call took back nothing but its own fields: Count is still free.
    b:set_processor{ Count = 2 }
  end)

  it("takes back a zero value it noted when a rule refuses the call", function()
    local b = orrery.builder("o")
    b:set_memory{ SizeInMB = 1024 }
    b:set_numa{ VirtualNodeCount = 2, Settings = {
      { CountOfProcessors = 1, CountOfMemoryBlocks = 512 },
      { VirtualNodeNumber = 1, CountOfProcessors = 1, CountOfMemoryBlocks = 512 } } }
    assert.error_matches(function() b:set_processor{ Count = 3, Limit = 0 } end,
      "CountOfProcessors sum to 2 but Processor.Count is 3", 1, true)
    -- Neither Count nor the zero Limit of the refused call stayed set.
    b:set_processor{ Count = 2, Limit = 50000 }
    assert.same({ Count = 2, Limit = 50000 }, b:document().VirtualMachine.ComputeTopology.Processor)
  end)

  it("refuses a required field given empty, which Go would leave out", function()
    local b = orrery.builder("o")
    assert.error_matches(function() b:add_plan9_share{ Name = "", Path = "/srv/s" } end,
      "add_plan9_share: Name must not be empty", 1, true)
    assert.error_matches(function()
      b:add_network_adapter(N, { EndpointId = "" })
    end, "add_network_adapter: EndpointId must not be empty", 1, true)
  end)
end)

describe("schema fields hcsshim has and had not", function()
  it("folds Plan9 ReadOnly and UseShareRootIdentity into hcsshim's Flags bits", function()
    local b = orrery.builder("o")
    b:add_plan9_share{ Name = "a", Path = "/srv/a", ReadOnly = true, Flags = 4 }
    b:add_plan9_share{ Name = "b", Path = "/srv/b", UseShareRootIdentity = true, ReadOnly = false }
    b:add_plan9_share{ Name = "c", Path = "/srv/c", Flags = 0x11, ReadOnly = true }
    local shares = b:document().VirtualMachine.Devices.Plan9.Shares
    assert.same({ Name = "a", Path = "/srv/a", Flags = 5 }, shares[1])
    assert.same({ Name = "b", Path = "/srv/b", Flags = 16 }, shares[2])
    assert.same({ Name = "c", Path = "/srv/c", Flags = 17 }, shares[3])
    assert.error_matches(function()
      b:add_plan9_share{ Name = "d", Path = "/srv/d", Flags = 5, ReadOnly = false }
    end, "add_plan9_share: ReadOnly is false but Flags has its bit 0x1 (ReadOnly) set", 1, true)
    round_trips(b)
  end)

  it("refuses int32 fields above 2^31-1", function()
    local b = orrery.builder("o")
    assert.error_matches(function()
      b:add_plan9_share{ Name = "a", Path = "/srv/a", Flags = 2147483648 }
    end, "add_plan9_share: Flags must be an integer in 0..2147483647, got 2147483648", 1, true)
    assert.error_matches(function()
      orrery.builder_from{ SchemaVersion = { Major = 2147483648 }, VirtualMachine = {} }
    end, "builder_from: SchemaVersion.Major must be an integer in 0..2147483647", 1, true)
    assert.error_matches(function() b:set_storage_qos{ IopsMaximum = 2147483648 } end,
      "set_storage_qos: IopsMaximum must be an integer in 0..2147483647", 1, true)
  end)

  it("takes RDP AccessSids (a list), GuestStateFileType BlockStorage, ResourcePartitionId", function()
    local b = orrery.builder_from{ VirtualMachine = {
      GuestState = { GuestStateFileType = "BlockStorage" },
      ResourcePartitionId = "87654321-4321-8765-4321-876543218765",
      Devices = { VideoMonitor = { ConnectionOptions = { AccessSids = { "S-1-5-32-544" },
                                                         NamedPipe = "\\\\.\\pipe\\rdp" } } } } }
    assert.truthy(b:json():find('"ConnectionOptions":{"AccessSids":["S-1-5-32-544"],', 1, true))
    round_trips(b)
    assert.error_matches(function()
      orrery.builder_from{ VirtualMachine = { Devices = { EnhancedModeVideo = {
        ConnectionOptions = { AccessName = "x" } } } } }
    end, "AccessName is not a field of RdpConnectionOptions", 1, true)
  end)

  it("refuses fields hcsshim does not have (UseHostTimeZone, SupportCloudFiles)", function()
    assert.error_matches(function()
      orrery.builder_from{ VirtualMachine = { GuestConnection = { UseHostTimeZone = true } } }
    end, "UseHostTimeZone is not a field of GuestConnection", 1, true)
    local b = orrery.builder("o")
    b:add_vsmb{}
    assert.error_matches(function()
      b:add_vsmb_share{ Name = "s", Path = "/s", Options = { SupportCloudFiles = true } }
    end, "SupportCloudFiles is not a field of VirtualSmbShareOptions", 1, true)
  end)
end)
