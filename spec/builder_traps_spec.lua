-- Every trap hcsshim's builder leaves open (hcs-schema.md §c.1) and Orrery
-- refuses: each refusal is checked for its message and for leaving the
-- document exactly as it was (operations are all-or-nothing).
local orrery = require("orrery")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
local C1 = "0110f83b-de10-5172-a266-78bca56bf50a"
local G1 = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local G2 = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
local NIC1 = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"
local NIC2 = "3c5b9d2f-4e6a-4b7c-9d8e-0f1a2b3c4d5e"

-- Asserts fn raises a message containing `needle` (plain text) and that
-- b's document, as a table and as JSON text, is the same afterwards.
local function refuses(b, needle, fn)
  local doc, text = b:document(), b:json()
  assert.error_matches(fn, needle, 1, true)
  assert.same(doc, b:document())
  assert.equal(text, b:json())
end

local function disk(path, ro)
  return { Type = "VirtualDisk", Path = path, ReadOnly = ro }
end

local function rng(vf)
  return { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci", VirtualFunction = vf } } }
end

local TWO_NODES = {
  VirtualNodeCount = 2,
  Settings = {
    { CountOfProcessors = 2, CountOfMemoryBlocks = 512 },
    { VirtualNodeNumber = 1, PhysicalNodeNumber = 1, VirtualSocketNumber = 1,
      CountOfProcessors = 2, CountOfMemoryBlocks = 512 },
  },
}

local function numa(cpu0, mem0, cpu1, mem1)
  return { VirtualNodeCount = 2, Settings = {
    { CountOfProcessors = cpu0, CountOfMemoryBlocks = mem0 },
    { VirtualNodeNumber = 1, CountOfProcessors = cpu1, CountOfMemoryBlocks = mem1 },
  } }
end

describe("builder traps", function()
  local b
  before_each(function()
    b = orrery.builder("traps")
  end)

  it("raise with the caller's file:line in front of the message", function()
    local ok, err = pcall(function() b:add_scsi_controller(9) end)
    assert.is_false(ok)
    assert.matches("builder_traps_spec%.lua:%d+: add_scsi_controller: ", err)
  end)

  describe("SCSI", function()
    before_each(function()
      b:add_scsi_controller(0)
      b:add_scsi_disk(0, 1, disk("/srv/a.img"))
    end)

    it("refuses a LUN already used", function()
      refuses(b, "add_scsi_disk: controller 0 LUN 1 is already used by /srv/a.img", function()
        b:add_scsi_disk(0, 1, disk("/srv/b.img"))
      end)
    end)

    it("refuses a LUN out of range (-1, 64)", function()
      refuses(b, "add_scsi_disk: lun must be an integer in 0..63, got -1", function()
        b:add_scsi_disk(0, -1, disk("/srv/b.img"))
      end)
      refuses(b, "add_scsi_disk: lun must be an integer in 0..63, got 64", function()
        b:add_scsi_disk(0, 64, disk("/srv/b.img"))
      end)
    end)

    it("refuses a non-integer LUN", function()
      refuses(b, "add_scsi_disk: lun must be an integer, got a non-integer number", function()
        b:add_scsi_disk(0, 1.5, disk("/srv/b.img"))
      end)
      refuses(b, "add_scsi_disk: lun must be an integer, got string", function()
        b:add_scsi_disk(0, "2", disk("/srv/b.img"))
      end)
    end)

    it("refuses re-adding a controller (it would drop its attachments)", function()
      refuses(b, "add_scsi_controller: controller 0 (" .. C0 .. ") is already added; "
                 .. "adding it again would drop its attachments", function()
        b:add_scsi_controller(0)
      end)
    end)

    it("refuses a controller out of range (4, -1)", function()
      refuses(b, "add_scsi_controller: controller must be an integer in 0..3, got 4", function()
        b:add_scsi_controller(4)
      end)
      refuses(b, "add_scsi_controller: controller must be an integer in 0..3, got -1", function()
        b:add_scsi_controller(-1)
      end)
      refuses(b, "add_scsi_disk: controller must be an integer in 0..3, got 4", function()
        b:add_scsi_disk(4, 0, disk("/srv/b.img"))
      end)
    end)

    it("refuses a disk on a controller not added", function()
      refuses(b, "add_scsi_disk: controller 1 has not been added "
                 .. "(call add_scsi_controller(1) first)", function()
        b:add_scsi_disk(1, 0, disk("/srv/b.img"))
      end)
    end)

    it("refuses the same Path attached writable twice", function()
      b:add_scsi_controller(1)
      refuses(b, "Path /srv/a.img is already attached at controller 0 LUN 1; an image may be "
                 .. "attached twice only if every attachment is ReadOnly", function()
        b:add_scsi_disk(1, 0, disk("/srv/a.img"))
      end)
      -- Read-only here but writable at 0:1 is still refused.
      refuses(b, "Path /srv/a.img is already attached at controller 0 LUN 1", function()
        b:add_scsi_disk(1, 0, disk("/srv/a.img", true))
      end)
    end)

    it("accepts the same Path twice when every attachment is ReadOnly", function()
      b:add_scsi_controller(1)
      b:add_scsi_disk(0, 2, disk("/srv/base.img", true))
      b:add_scsi_disk(1, 0, disk("/srv/base.img", true))
      local scsi = b:document().VirtualMachine.Devices.Scsi
      assert.same(disk("/srv/base.img", true), scsi[C0].Attachments["2"])
      assert.same(disk("/srv/base.img", true), scsi[C1].Attachments["0"])
      assert.is_true(b:validate())
    end)
  end)

  describe("VPCI", function()
    before_each(function()
      b:add_vpci_device(G1, rng())
    end)

    it("refuses a VMBus GUID already used", function()
      refuses(b, "add_vpci_device: VMBus GUID " .. G1 .. " is already used by another "
                 .. "device; each device needs its own GUID", function()
        b:add_vpci_device(G1, { Functions = { { DeviceInstancePath = "qemu:virtio-net-pci" } } })
      end)
    end)

    it("refuses a VMBus GUID already used, spelled in upper case", function()
      -- GUIDs compare case-insensitively: this is the same VMBus channel.
      refuses(b, "is already used by another device", function()
        b:add_vpci_device(G1:upper(), { Functions = { { DeviceInstancePath = "qemu:virtio-net-pci" } } })
      end)
    end)

    it("refuses the same PCI function under two GUIDs", function()
      refuses(b, "add_vpci_device: VirtualMachine.Devices.VirtualPci." .. G2 .. ".Functions[1]: "
                 .. "DeviceInstancePath qemu:virtio-rng-pci (VirtualFunction 0) is already "
                 .. "assigned under " .. G1 .. "; a PCI function can be assigned once", function()
        b:add_vpci_device(G2, rng())
      end)
      -- VirtualFunction = 0 spelled out is the same function.
      refuses(b, "is already assigned under " .. G1, function()
        b:add_vpci_device(G2, rng(0))
      end)
    end)

    it("refuses the same PCI function twice within one device", function()
      refuses(b, "VirtualPci." .. G2 .. ".Functions[2]: DeviceInstancePath 0000:03:00.0 "
                 .. "(VirtualFunction 0) is already assigned under " .. G2, function()
        b:add_vpci_device(G2, { Functions = { { DeviceInstancePath = "0000:03:00.0" },
                                              { DeviceInstancePath = "0000:03:00.0" } } })
      end)
    end)

    it("accepts the same DeviceInstancePath with a different VirtualFunction", function()
      b:add_vpci_device(G2, rng(1))
      assert.same({ { DeviceInstancePath = "qemu:virtio-rng-pci", VirtualFunction = 1 } },
                  b:document().VirtualMachine.Devices.VirtualPci[G2].Functions)
    end)

    it("refuses a device with no functions (Functions = {})", function()
      refuses(b, "Functions", function()
        b:add_vpci_device(G2, { Functions = {} })
      end)
    end)

    it("refuses malformed GUIDs", function()
      refuses(b, 'add_vpci_device: vmbus_guid must be a GUID like '
                 .. '6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f, got "not-a-guid"', function()
        b:add_vpci_device("not-a-guid", rng(3))
      end)
      refuses(b, "add_vpci_device: vmbus_guid must be a GUID", function()
        b:add_vpci_device("{" .. G2 .. "}", rng(3))
      end)
      refuses(b, "add_vpci_device: vmbus_guid must be a GUID", function()
        b:add_vpci_device(G2:gsub("-", ""), rng(3))
      end)
      refuses(b, "add_vpci_device: vmbus_guid must be a GUID", function()
        b:add_vpci_device(G2:sub(1, 35) .. "g", rng(3))
      end)
      refuses(b, "add_network_adapter: nic id must be a GUID", function()
        b:add_network_adapter("nic0", { EndpointId = "user" })
      end)
      refuses(b, 'set_cpu_group: Id must be a GUID like 6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f, '
                 .. 'got "group-1"', function()
        b:set_cpu_group{ Id = "group-1" }
      end)
    end)
  end)

  describe("boot", function()
    it("refuses UEFI after kernel-direct boot", function()
      b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/vmlinuz" }
      refuses(b, "set_uefi_boot: VirtualMachine.Chipset: Uefi and LinuxKernelDirect are "
                 .. "mutually exclusive boot methods", function()
        b:set_uefi_boot{ DeviceType = "ScsiDrive", DevicePath = "\\EFI\\BOOT\\BOOTX64.EFI" }
      end)
    end)

    it("refuses kernel-direct boot after UEFI", function()
      b:set_uefi_boot{ DeviceType = "ScsiDrive", DevicePath = "\\EFI\\BOOT\\BOOTX64.EFI" }
      refuses(b, "set_linux_kernel_direct_boot: VirtualMachine.Chipset: Uefi and "
                 .. "LinuxKernelDirect are mutually exclusive boot methods", function()
        b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/vmlinuz" }
      end)
    end)

    it("refuses both boot methods in a document given to builder_from", function()
      local d = b:document()
      d.VirtualMachine.Chipset = { Uefi = { BootThis = { DeviceType = "ScsiDrive" } },
                                   LinuxKernelDirect = { KernelFilePath = "/boot/vmlinuz" } }
      assert.error_matches(function() orrery.builder_from(d) end,
        "builder_from: VirtualMachine.Chipset: Uefi and LinuxKernelDirect are mutually "
        .. "exclusive", 1, true)
    end)

    it("refuses a second UEFI boot entry and a second kernel", function()
      local c = orrery.builder("c")
      c:set_uefi_boot{ DeviceType = "ScsiDrive" }
      refuses(c, "set_uefi_boot: Chipset.Uefi is already set", function()
        c:set_uefi_boot{ DeviceType = "Network" }
      end)
      b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/vmlinuz" }
      refuses(b, "set_linux_kernel_direct_boot: Chipset.LinuxKernelDirect is already set", function()
        b:set_linux_kernel_direct_boot{ KernelFilePath = "/boot/other" }
      end)
    end)
  end)

  describe("NUMA", function()
    it("refuses nodes whose CountOfProcessors do not sum to Processor.Count", function()
      b:set_memory{ SizeInMB = 1024 }:set_processor{ Count = 4 }
      refuses(b, "set_numa: VirtualMachine.ComputeTopology.Numa: the nodes' CountOfProcessors "
                 .. "sum to 3 but Processor.Count is 4; they must be equal", function()
        b:set_numa(numa(1, 512, 2, 512))
      end)
    end)

    it("refuses nodes whose CountOfMemoryBlocks do not sum to Memory.SizeInMB", function()
      b:set_memory{ SizeInMB = 1024 }:set_processor{ Count = 4 }
      refuses(b, "set_numa: VirtualMachine.ComputeTopology.Numa: the nodes' CountOfMemoryBlocks "
                 .. "sum to 1012 MiB but Memory.SizeInMB is 1024; they must be equal", function()
        b:set_numa(numa(2, 500, 2, 512))
      end)
    end)

    it("refuses, at set_memory, a size the earlier NUMA nodes do not add up to", function()
      b:set_numa(TWO_NODES)
      refuses(b, "set_memory: VirtualMachine.ComputeTopology.Numa: the nodes' "
                 .. "CountOfMemoryBlocks sum to 1024 MiB but Memory.SizeInMB is 2048", function()
        b:set_memory{ SizeInMB = 2048 }
      end)
      assert.same({}, b:document().VirtualMachine.ComputeTopology.Memory)
      b:set_memory{ SizeInMB = 1024 } -- the right size still goes in
    end)

    it("refuses, at set_processor, a count the earlier NUMA nodes do not add up to", function()
      b:set_numa(TWO_NODES)
      refuses(b, "set_processor: VirtualMachine.ComputeTopology.Numa: the nodes' "
                 .. "CountOfProcessors sum to 4 but Processor.Count is 3", function()
        b:set_processor{ Count = 3 }
      end)
    end)

    it("validate() reports nil, msg, 'EINVAL' for NUMA without memory", function()
      b:set_numa(TWO_NODES)
      b:set_processor{ Count = 4 }
      local ok, msg, code = b:validate()
      assert.is_nil(ok)
      assert.equal("EINVAL", code)
      assert.truthy(msg:find("EINVAL: VirtualMachine.ComputeTopology.Numa needs "
        .. "ComputeTopology.Processor.Count and Memory.SizeInMB to be set", 1, true), msg)
      b:set_memory{ SizeInMB = 1024 }
      assert.is_true(b:validate())
    end)

    it("refuses VirtualNodeCount different from the number of Settings", function()
      refuses(b, "set_numa: VirtualMachine.ComputeTopology.Numa.Settings has 2 nodes but "
                 .. "VirtualNodeCount is 3; they must match", function()
        local n = numa(2, 512, 2, 512)
        n.VirtualNodeCount = 3
        b:set_numa(n)
      end)
    end)

    it("refuses a duplicate VirtualNodeNumber", function()
      refuses(b, "set_numa: VirtualMachine.ComputeTopology.Numa.Settings[2].VirtualNodeNumber 0 "
                 .. "is used by an earlier node; each node needs its own number", function()
        b:set_numa{ VirtualNodeCount = 2, Settings = {
          { CountOfProcessors = 2, CountOfMemoryBlocks = 512 },
          { CountOfProcessors = 2, CountOfMemoryBlocks = 512 } } }
      end)
    end)

    it("refuses a VirtualNodeNumber not below VirtualNodeCount", function()
      refuses(b, "Settings[2].VirtualNodeNumber must be below VirtualNodeCount 2, got 2", function()
        b:set_numa{ VirtualNodeCount = 2, Settings = {
          { CountOfProcessors = 2, CountOfMemoryBlocks = 512 },
          { VirtualNodeNumber = 2, CountOfProcessors = 2, CountOfMemoryBlocks = 512 } } }
      end)
    end)

    it("refuses a node count that does not divide the totals when no Settings are given", function()
      b:set_memory{ SizeInMB = 1024 }:set_processor{ Count = 4 }
      refuses(b, "set_numa: VirtualMachine.ComputeTopology.Numa: VirtualNodeCount 3 does not "
                 .. "divide Processor.Count 4", function()
        b:set_numa{ VirtualNodeCount = 3 }
      end)
    end)

    it("refuses a node with more CPUs than count_per_node.max", function()
      b:set_numa_processors{ count_per_node = { max = 2 }, node_per_socket = 1 }
      refuses(b, "Settings[1].CountOfProcessors 3 exceeds "
                 .. "NumaProcessorsSettings.count_per_node.max 2", function()
        b:set_numa(numa(3, 512, 1, 512))
      end)
    end)
  end)

  describe("setters that would drop an earlier setting", function()
    it("refuses set_memory twice on the same field", function()
      b:set_memory{ SizeInMB = 512, SlitType = "FirmwareFallbackMeasured" }
      refuses(b, "set_memory: ComputeTopology.Memory.SizeInMB is already set (to 512); a builder "
                 .. "sets each field once", function()
        b:set_memory{ SizeInMB = 1024 }
      end)
      -- a whole-group replacement, as hcsshim's SetMemory does, is refused too
      refuses(b, "set_memory: ComputeTopology.Memory.SizeInMB is already set", function()
        b:set_memory{ SizeInMB = 512, Backing = "Virtual" }
      end)
    end)

    it("refuses set_processor after set_processor on the same field", function()
      b:set_processor{ Count = 2, Limit = 50000 }
      refuses(b, "set_processor: ComputeTopology.Processor.Count is already set (to 2)", function()
        b:set_processor{ Count = 4 }
      end)
    end)

    it("refuses set_cpu_group twice", function()
      b:set_cpu_group{ Id = G1 }
      refuses(b, "set_cpu_group: ComputeTopology.Processor.CpuGroup is already set", function()
        b:set_cpu_group{ Id = G2 }
      end)
    end)

    it("keeps CpuGroup when set_processor comes after set_cpu_group", function()
      b:set_cpu_group{ Id = G1 }
      b:set_processor{ Count = 2, Limit = 50000 }
      assert.same({ Count = 2, Limit = 50000, CpuGroup = { Id = G1 } },
                  b:document().VirtualMachine.ComputeTopology.Processor)
      refuses(b, "set_processor: ComputeTopology.Processor.CpuGroup is already set", function()
        b:set_processor{ CpuGroup = { Id = G2 } }
      end)
    end)

    it("keeps NumaProcessorsSettings when set_processor comes after set_numa_processors", function()
      b:set_numa_processors{ count_per_node = { max = 2 }, node_per_socket = 1 }
      b:set_processor{ Count = 4 }
      assert.same({ Count = 4, NumaProcessorsSettings = { count_per_node = { max = 2 },
                                                          node_per_socket = 1 } },
                  b:document().VirtualMachine.ComputeTopology.Processor)
      refuses(b, "set_numa_processors: ComputeTopology.Processor.NumaProcessorsSettings is "
                 .. "already set", function()
        b:set_numa_processors{ node_per_socket = 2 }
      end)
    end)

    it("refuses set_numa and set_storage_qos twice", function()
      b:set_numa{ VirtualNodeCount = 1 }
      refuses(b, "set_numa: ComputeTopology.Numa is already set", function()
        b:set_numa{ VirtualNodeCount = 1 }
      end)
      b:set_storage_qos{ IopsMaximum = 10 }
      refuses(b, "set_storage_qos: VirtualMachine.StorageQoS is already set", function()
        b:set_storage_qos{ BandwidthMaximum = 10 }
      end)
    end)
  end)

  describe("fields", function()
    it("refuses an unknown field (a typo)", function()
      refuses(b, "set_memory: SizeInMb is not a field of VirtualMachineMemory (HCS names are "
                 .. "case-sensitive)", function()
        b:set_memory{ SizeInMb = 512 }
      end)
      b:add_scsi_controller(0)
      refuses(b, "add_scsi_disk: Readonly is not a field of Attachment", function()
        b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/srv/a.img", Readonly = true })
      end)
    end)

    it("refuses wrong types", function()
      refuses(b, 'set_memory: SizeInMB must be an integer in 1..1048576, got "512"', function()
        b:set_memory{ SizeInMB = "512" }
      end)
      b:add_scsi_controller(0)
      refuses(b, "add_scsi_disk: Path must be a string, got 5", function()
        b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = 5 })
      end)
      refuses(b, 'add_scsi_disk: ReadOnly must be a boolean, got "yes"', function()
        b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/srv/a.img", ReadOnly = "yes" })
      end)
      refuses(b, "set_memory: expected a table of settings, got no value", function()
        b:set_memory()
      end)
      refuses(b, "builder: options must be named fields", function()
        orrery.builder{ "x" }
      end)
      refuses(b, "set_memory: expected a table of settings, got number", function()
        b:set_memory(512)
      end)
    end)

    it("refuses values out of range, naming the field and the rule", function()
      refuses(b, "set_memory: SizeInMB must be an integer in 1..1048576, got -5", function()
        b:set_memory{ SizeInMB = -5 }
      end)
      refuses(b, "set_memory: SizeInMB must be an integer in 1..1048576, got 512.5", function()
        b:set_memory{ SizeInMB = 512.5 }
      end)
      refuses(b, 'set_memory: Backing must be one of "Physical", "Virtual", "Hybrid", got "Fast"',
              function() b:set_memory{ Backing = "Fast" } end)
      refuses(b, "set_processor: Count must be an integer in 1..288, got 0", function()
        b:set_processor{ Count = 0 }
      end)
    end)

    it("refuses a missing required field", function()
      b:add_scsi_controller(0)
      refuses(b, "add_scsi_disk: Path is required", function()
        b:add_scsi_disk(0, 0, { Type = "VirtualDisk" })
      end)
      refuses(b, "set_linux_kernel_direct_boot: KernelFilePath is required", function()
        b:set_linux_kernel_direct_boot{ InitRdPath = "/boot/initrd.img" }
      end)
    end)

    it("refuses relative host paths", function()
      b:add_scsi_controller(0)
      refuses(b, 'add_scsi_disk: Path must be an absolute path, got "disk.img"', function()
        b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "disk.img" })
      end)
      refuses(b, 'set_linux_kernel_direct_boot: KernelFilePath must be an absolute path, '
                 .. 'got "vmlinuz"', function()
        b:set_linux_kernel_direct_boot{ KernelFilePath = "vmlinuz" }
      end)
    end)
  end)

  describe("network adapters", function()
    it("refuses malformed MAC addresses", function()
      refuses(b, 'add_network_adapter: MacAddress must be a MAC address like 00-15-5D-52-C0-0A, '
                 .. 'got "00:15:5D:52:C0:0A"', function()
        b:add_network_adapter(NIC1, { EndpointId = "user", MacAddress = "00:15:5D:52:C0:0A" })
      end)
      refuses(b, "add_network_adapter: MacAddress must be a MAC address", function()
        b:add_network_adapter(NIC1, { EndpointId = "user", MacAddress = "00-15-5D-52-C0" })
      end)
      refuses(b, "add_network_adapter: MacAddress must be a MAC address", function()
        b:add_network_adapter(NIC1, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0G" })
      end)
    end)

    it("refuses a multicast MAC address", function()
      refuses(b, 'add_network_adapter: MacAddress must be a unicast MAC address (first octet '
                 .. 'even), got "01-00-5E-00-00-01"', function()
        b:add_network_adapter(NIC1, { EndpointId = "user", MacAddress = "01-00-5E-00-00-01" })
      end)
    end)

    it("refuses the same MAC on two NICs, whatever its case", function()
      b:add_network_adapter(NIC1, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" })
      refuses(b, "add_network_adapter: VirtualMachine.Devices.NetworkAdapters." .. NIC2
                 .. ".MacAddress 00-15-5d-52-c0-0a is already used by adapter " .. NIC1
                 .. "; MAC addresses must be unique", function()
        b:add_network_adapter(NIC2, { EndpointId = "user", MacAddress = "00-15-5d-52-c0-0a" })
      end)
    end)

    it("refuses a NIC id already used", function()
      b:add_network_adapter(NIC1, { EndpointId = "user" })
      refuses(b, "add_network_adapter: nic id " .. NIC1 .. " is already used by another adapter",
              function() b:add_network_adapter(NIC1, { EndpointId = "other" }) end)
    end)
  end)

  describe("serial console", function()
    it("refuses a relative listener path", function()
      refuses(b, 'set_serial_console: listener path must be an absolute path, got "com1.sock"',
              function() b:set_serial_console(0, "com1.sock") end)
    end)

    it("refuses a listener path longer than 107 bytes", function()
      refuses(b, "set_serial_console: listener path must fit a unix socket path (at most 107 "
                 .. "bytes)", function()
        b:set_serial_console(0, "/" .. string.rep("s", 107))
      end)
    end)

    it("refuses COM port 4 and -1", function()
      refuses(b, "set_serial_console: port must be an integer in 0..3 (0 is COM1), got 4",
              function() b:set_serial_console(4, "/tmp/com.sock") end)
      refuses(b, "set_serial_console: port must be an integer in 0..3 (0 is COM1), got -1",
              function() b:set_serial_console(-1, "/tmp/com.sock") end)
    end)

    it("refuses the same COM port twice", function()
      b:set_serial_console(0, "/tmp/com1.sock")
      refuses(b, "set_serial_console: COM1 is already set to /tmp/com1.sock; a builder sets "
                 .. "each port once", function()
        b:set_serial_console(0, "/tmp/other.sock")
      end)
    end)

    it("refuses one socket for two COM ports", function()
      b:set_serial_console(0, "/tmp/com1.sock")
      refuses(b, "set_serial_console: VirtualMachine.Devices.ComPorts.1.NamedPipe /tmp/com1.sock "
                 .. "is already used by COM port 0", function()
        b:set_serial_console(1, "/tmp/com1.sock")
      end)
    end)
  end)

  describe("VPMem, VSMB, Plan9", function()
    it("refuses a VPMem device without a controller", function()
      refuses(b, "add_vpmem_device: the VPMem controller has not been added (call "
                 .. "add_vpmem_controller first)", function()
        b:add_vpmem_device(0, { HostPath = "/srv/rootfs.vhd" })
      end)
    end)

    it("refuses a VPMem id at or above MaximumCount, and below 0", function()
      b:add_vpmem_controller(4, 4294967296)
      refuses(b, "add_vpmem_device: id must be an integer in 0..3 (below the controller's "
                 .. "MaximumCount), got 4", function()
        b:add_vpmem_device(4, { HostPath = "/srv/rootfs.vhd" })
      end)
      refuses(b, "add_vpmem_device: id must be an integer in 0..3 (below the controller's "
                 .. "MaximumCount), got -1", function()
        b:add_vpmem_device(-1, { HostPath = "/srv/rootfs.vhd" })
      end)
    end)

    it("refuses a VPMem id already used and a second controller", function()
      b:add_vpmem_controller(4, 4294967296)
      b:add_vpmem_device(0, { HostPath = "/srv/rootfs.vhd" })
      refuses(b, "add_vpmem_device: VirtualPMem.Devices.0 is already set", function()
        b:add_vpmem_device(0, { HostPath = "/srv/other.vhd" })
      end)
      refuses(b, "add_vpmem_controller: Devices.VirtualPMem is already set", function()
        b:add_vpmem_controller(8, 4294967296)
      end)
    end)

    it("refuses a VSMB share without add_vsmb", function()
      refuses(b, "add_vsmb_share: VSMB has not been added (call add_vsmb first)", function()
        b:add_vsmb_share{ Name = "layers", Path = "/srv/layers" }
      end)
    end)

    it("refuses a duplicate VSMB share Name", function()
      b:add_vsmb{}
      b:add_vsmb_share{ Name = "layers", Path = "/srv/layers" }
      refuses(b, 'add_vsmb_share: VirtualMachine.Devices.VirtualSmb.Shares[2].Name "layers" is '
                 .. 'already used by share [1]; it must be unique', function()
        b:add_vsmb_share{ Name = "layers", Path = "/srv/other" }
      end)
    end)

    it("refuses a duplicate Plan9 share Name", function()
      b:add_plan9_share{ Name = "src", AccessName = "src", Path = "/srv/src", Port = 564 }
      refuses(b, 'add_plan9_share: VirtualMachine.Devices.Plan9.Shares[2].Name "src" is already '
                 .. 'used by share [1]; it must be unique', function()
        b:add_plan9_share{ Name = "src", Path = "/srv/other" }
      end)
    end)

    it("refuses a Plan9 AccessName already used", function()
      b:add_plan9_share{ Name = "src", AccessName = "src", Path = "/srv/src" }
      refuses(b, 'add_plan9_share: VirtualMachine.Devices.Plan9.Shares[2].AccessName "src" is '
                 .. 'already used by share [1]', function()
        b:add_plan9_share{ Name = "other", AccessName = "src", Path = "/srv/other" }
      end)
    end)
  end)

  describe("builder_from", function()
    it("refuses an HCS field Orrery does not support (it runs virtual machines only)", function()
      local d = b:document()
      d.Container = {}
      assert.error_matches(function() orrery.builder_from(d) end,
        "builder_from: Container is an HCS field Orrery does not support", 1, true)
      local j = orrery.builder("o"):json():gsub('"VirtualMachine":',
        '"HostedSystem":{"SchemaVersion":{"Major":2}},"VirtualMachine":')
      assert.error_matches(function() orrery.builder_from(j) end,
        "builder_from: HostedSystem is an HCS field Orrery does not support", 1, true)
    end)

    it("refuses invalid JSON text, naming the line and column", function()
      assert.error_matches(function() orrery.builder_from('{"Owner": "o",\n "VirtualMachine": {]}') end,
        "^builder_from: JSON text line 2 column %d+: ")
      assert.error_matches(function() orrery.builder_from('{"Owner": "o", ') end,
        "^builder_from: JSON text line 1 column %d+: ")
      assert.error_matches(function()
        orrery.builder_from('{"VirtualMachine":{},"VirtualMachine":{}}')
      end, "^builder_from: JSON text line 1 column %d+: duplicate object key")
    end)

    it("refuses a table or text without VirtualMachine", function()
      assert.error_matches(function() orrery.builder_from{ Owner = "o" } end,
        "builder_from: VirtualMachine is required", 1, true)
      assert.error_matches(function() orrery.builder_from('{"Owner":"o"}') end,
        "builder_from: VirtualMachine is required", 1, true)
    end)

    it("refuses SCSI controllers not keyed by HCS's GUIDs", function()
      assert.error_matches(function()
        orrery.builder_from{ VirtualMachine = { Devices = { Scsi = {
          ["0"] = { Attachments = {} } } } } }
      end, 'builder_from: VirtualMachine.Devices.Scsi: key "0" must be one of the four HCS '
           .. 'SCSI controller GUIDs', 1, true)
    end)

    it("refuses a LUN key out of range", function()
      assert.error_matches(function()
        orrery.builder_from{ VirtualMachine = { Devices = { Scsi = {
          [C0] = { Attachments = { ["64"] = { Type = "VirtualDisk", Path = "/a.img" } } } } } } }
      end, 'key "64" must be a LUN "0".."63"', 1, true)
    end)

    it("refuses a VPMem device key that is not a number", function()
      assert.error_matches(function()
        orrery.builder_from{ VirtualMachine = { Devices = { VirtualPMem = {
          MaximumCount = 4, Devices = { ["1zz"] = { HostPath = "/srv/rootfs.vhd" } } } } } }
      end, 'key "1zz" must be a device number', 1, true)
    end)

    it("refuses a value that is not a document", function()
      assert.error_matches(function() orrery.builder_from(5) end,
        "table, JSON string or orrery.Builder expected, got number", 1, true)
    end)
  end)
end)
