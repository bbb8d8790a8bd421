-- Orrery's schema table (orrery.schema()) held against hcsshim's own Go
-- structs, field by field: spec/fixtures/hcsshim_schema2.txt is a compact
-- description of internal/hcs/schema2, internal/protocol/guestrequest,
-- internal/protocol/guestresource and internal/hcs/resourcepaths, written by
-- scripts/hcsshim_schema.lua from hcsshim's source (re-run it on a newer
-- hcsshim and this spec names every difference).
local orrery = require("orrery")

local FIXTURE = "spec/fixtures/hcsshim_schema2.txt"

-- { structs = { Name = { {json, go, omitempty}, ... } }, named = { Name =
-- {under, consts} }, paths = { {name, format} } }
local function load_go()
  local go = { structs = {}, named = {}, paths = {} }
  local cur
  for line in io.lines(FIXTURE) do
    if line:match("^#") or line == "" then
      -- comment
    elseif line:match("^struct ") then
      cur = {}
      go.structs[line:match("^struct (%S+)")] = cur
    elseif line:match("^  ") then
      local json, gotype, omit = line:match("^  (%S+) (%S+) (%S+)$")
      cur[#cur + 1] = { json = json, go = gotype, omitempty = omit == "omitempty" }
    elseif line:match("^named ") then
      local name, under, rest = line:match("^named (%S+) (%S+)%s*=?%s*(.*)$")
      local consts = {}
      for c in rest:gmatch("%S+") do consts[#consts + 1] = c end
      go.named[name] = { under = under, consts = consts }
    elseif line:match("^path ") then
      local name, format = line:match("^path (%S+) (%S+)$")
      go.paths[#go.paths + 1] = { name = name, format = format }
    else
      error(FIXTURE .. ": cannot read line: " .. line)
    end
  end
  return go
end

local GO = load_go()
local SCHEMA = orrery.schema()

-- Go's integer types and their ranges (Lua's integers stop at 2^63-1).
local RANGES = {
  int8 = { -128, 127 }, int16 = { -32768, 32767 }, int32 = { -2147483648, 2147483647 },
  int64 = { math.mininteger, math.maxinteger }, int = { math.mininteger, math.maxinteger },
  uint8 = { 0, 255 }, uint16 = { 0, 65535 }, uint32 = { 0, 4294967295 },
  uint64 = { 0, math.maxinteger },
}

-- Where Orrery differs from hcsshim on purpose, and why. Nothing else may.
local EXCEPTIONS = {
  ["ComputeSystem.HostedSystem"] = "unsupported: Orrery runs virtual machines only",
  ["ComputeSystem.Container"] = "unsupported: Orrery runs virtual machines only",
  ["ComputeSystem.ShouldTerminateOnLastHandleClosed"] =
    "kept when false: a missing one means true in Orrery, so false must survive a round trip",
  ["ModifySettingRequest.GuestRequest"] =
    "Go's interface{} holds a guestrequest.ModificationRequest: Orrery checks that shape",
}

local function kind_of_go(gotype)
  local base = gotype:gsub("^%*", "")
  if base == "interface{}" then return "any" end
  if base == "[]byte" then return "bytes" end
  if base:match("^%[%]") then return "array", base:sub(3) end
  if base:match("^map%[string%]") then return "map", base:sub(12) end
  if GO.structs[base] then return "object", base end
  if GO.named[base] then return kind_of_go(GO.named[base].under), base end
  if base == "string" then return "string" end
  if base == "bool" then return "bool" end
  if base == "float64" then return "number" end
  if RANGES[base] then return "int", base end
  error("unknown Go type " .. gotype)
end

-- Every difference between a Go type and an Orrery type, as text.
local compare

local function compare_struct(name, t, where, out, seen)
  local s = assert(GO.structs[name], "no Go struct " .. name)
  if seen[t] then return end
  seen[t] = true
  if t.name ~= name then
    out[#out + 1] = where .. ": Orrery calls the type " .. t.name .. ", Go " .. name
  end
  local mine = {}
  for _, f in ipairs(t.fields) do
    if not f.alias then mine[#mine + 1] = f end
  end
  local names_go, names_mine = {}, {}
  for _, f in ipairs(s) do names_go[#names_go + 1] = f.json end
  for _, f in ipairs(mine) do names_mine[#names_mine + 1] = f.name end
  if table.concat(names_go, " ") ~= table.concat(names_mine, " ") then
    out[#out + 1] = string.format("%s: fields differ\n  Go:     %s\n  Orrery: %s", where,
                                  table.concat(names_go, " "), table.concat(names_mine, " "))
    return
  end
  for i, g in ipairs(s) do
    local f = mine[i]
    local at = name .. "." .. g.json
    local why = EXCEPTIONS[at]
    if not g.omitempty then
      out[#out + 1] = at .. ": Go's field is not omitempty; Orrery's writer assumes it is"
    end
    if f.type.kind == "unsupported" then
      if not why then out[#out + 1] = at .. ": Orrery does not support it" end
    elseif why then
      -- as documented in EXCEPTIONS; the rest of the type still matches
      if f.type.kind == "object" and GO.structs[f.type.name] then
        compare_struct(f.type.name, f.type, at, out, seen)
      end
    else
      local ptr = g.go:sub(1, 1) == "*"
      local kind = kind_of_go(g.go)
      if kind == "object" then
        if f.value == ptr then
          out[#out + 1] = at .. (ptr and ": Go holds a pointer, Orrery a value"
                                     or ": Go holds the struct by value, Orrery does not")
        end
      elseif kind ~= "array" and kind ~= "map" and f.pointer ~= ptr then
        out[#out + 1] = at .. (ptr and ": a Go pointer (zero kept), not so in Orrery"
                                   or ": not a Go pointer, but Orrery keeps its zero value")
      end
      if f.required and f.type.kind == "int" and f.type.min < 1 then
        out[#out + 1] = at .. ": required, yet 0 (which Go leaves out) is in range"
      end
      compare(g.go, f.type, at, out, seen)
    end
  end
end

function compare(gotype, t, where, out, seen)
  local kind, name = kind_of_go(gotype)
  if kind == "bytes" then
    if t.kind ~= "string" or t.name ~= "[]byte" then
      out[#out + 1] = where .. ": a Go []byte (base64 text), Orrery has " .. t.kind .. " " .. t.name
    end
  elseif kind ~= t.kind then
    out[#out + 1] = string.format("%s: Go %s is a %s, Orrery's %s a %s", where, gotype, kind,
                                  t.name, t.kind)
  elseif kind == "int" then
    local r = RANGES[GO.named[name] and GO.named[name].under or name]
    if t.min < r[1] or t.max > r[2] then
      out[#out + 1] = string.format("%s: Orrery takes %d..%d, beyond Go's %s", where, t.min,
                                    t.max, name)
    end
  elseif kind == "string" and name and GO.named[name] and t.values then
    local have = {}
    for _, v in ipairs(t.values) do have[v] = true end
    for _, c in ipairs(GO.named[name].consts) do
      if not have[c] then
        out[#out + 1] = where .. ": hcsshim's value " .. c .. " of " .. name .. " is refused"
      end
    end
  elseif kind == "array" or kind == "map" then
    compare(name, t.elem, where .. "[]", out, seen)
  elseif kind == "object" then
    compare_struct(name, t, where, out, seen)
  end
end

local function differences(go_name, root)
  local out = {}
  compare_struct(go_name, root, go_name, out, {})
  return table.concat(out, "\n")
end

describe("Orrery's schema against hcsshim's Go structs", function()
  it("reads the description of hcsshim's schema", function()
    assert.is_table(GO.structs.ComputeSystem)
    assert.is_table(GO.structs.VirtualMachine)
    assert.equal("ResourcePartitionId", GO.structs.VirtualMachine[13].json)
    assert.is_true(#GO.paths > 10)
  end)

  it("has every ComputeSystem field, in Go's order, with Go's types, pointers and ranges", function()
    assert.equal("", differences("ComputeSystem", SCHEMA.ComputeSystem))
  end)

  it("has ModifySettingRequest and its GuestRequest as hcsshim's guestrequest package", function()
    assert.equal("", differences("ModifySettingRequest", SCHEMA.ModifySettingRequest))
    local g = SCHEMA.ModifySettingRequest.fields[4]
    assert.equal("GuestRequest", g.name)
    assert.equal("", differences("ModificationRequest", g.type))
  end)

  it("has ProcessorLimits and the Plan9 share a Remove names", function()
    assert.equal("", differences("ProcessorLimits", SCHEMA.ProcessorLimits))
    assert.equal("", differences("Plan9Share", SCHEMA.Plan9ShareRemove))
  end)

  it("checks each GuestRequest's Settings as hcsshim's guestresource type", function()
    local GUEST = { MappedDirectory = "LCOWMappedDirectory", MappedVirtualDisk = "LCOWMappedVirtualDisk",
                    VPMemDevice = "LCOWMappedVPMemDevice", VPCIDevice = "LCOWMappedVPCIDevice",
                    Network = "LCOWNetworkAdapter" }
    for rtype, go_name in pairs(GUEST) do
      assert.is_table(SCHEMA[rtype], rtype)
      assert.equal("", differences(go_name, SCHEMA[rtype]))
    end
  end)

  it("takes Plan9's ReadOnly and UseShareRootIdentity as input only (hcsshim's Flags bits)", function()
    local aliases = {}
    for _, f in ipairs(SCHEMA.Plan9ShareRemove.fields) do
      if f.alias then aliases[#aliases + 1] = f.name end
    end
    assert.same({ "ReadOnly", "UseShareRootIdentity" }, aliases)
    assert.same({ "0x00000000", "0x00000001", "0x00000004", "0x00000008", "0x00000010",
                  "0x00000080", "0x00000100" }, GO.named.Plan9ShareFlags.consts)
  end)

  it("finds a difference when there is one (the comparison can fail)", function()
    local t = orrery.schema().ProcessorLimits
    t.fields[1], t.fields[2] = t.fields[2], t.fields[1]
    assert.matches("fields differ", differences("ProcessorLimits", t))
    t = orrery.schema().ProcessorLimits
    t.fields[4].type.max = 1 << 40
    assert.matches("beyond Go's uint32", differences("ProcessorLimits", t))
    t = orrery.schema().ComputeSystem
    local memory = t.fields[6].type.fields[4].type.fields[1].type
    assert.equal("VirtualMachineMemory", memory.name)
    memory.fields[2].pointer = false
    assert.matches("Backing: a Go pointer", differences("ComputeSystem", t))
  end)
end)

describe("hcsshim's resource paths", function()
  local C0 = orrery.scsi_controller_guids[0]
  local G = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
  -- The ones the VM manager changes at run time; hcsshim's others are
  -- answered ENOTSUP by name.
  local HANDLED = { SCSIResourceFormat = true, VirtualPCIResourceFormat = true,
                    NetworkResourceFormat = true, Plan9ShareResourcePath = true,
                    MemoryResourcePath = true, CPULimitsResourcePath = true,
                    VPMemControllerResourceFormat = true, MappedPipeResourceFormat = true }
  local vm
  setup(function()
    local b = orrery.builder("paths")
    b:set_memory{ SizeInMB = 256 }
    b:set_processor{ Count = 1 }
    b:add_scsi_controller(0)
    vm = assert(orrery.create("hcs-paths", b, { backend = "plan" }))
    assert(vm:start())
  end)
  teardown(function() vm:close() end)

  it("are the paths the VM manager takes, spelled the same", function()
    local seen = 0
    for _, p in ipairs(GO.paths) do
      if p.format:match("^VirtualMachine/") then
        local path = p.format:gsub("Scsi/%%s", "Scsi/" .. C0):gsub("%%s", G):gsub("%%d", "1")
        local ok, msg, code = vm:modify{ ResourcePath = path, RequestType = "Remove" }
        local refused = code == "ENOTSUP" and msg:find("not one the VM manager changes", 1, true)
        if HANDLED[p.name] then
          seen = seen + 1
          assert.is_falsy(refused, p.name .. " " .. path .. ": " .. tostring(msg))
        else
          assert.is_nil(ok, p.name)
          assert.truthy(refused, p.name .. " " .. path .. ": " .. tostring(msg))
        end
      end
    end
    assert.equal(8, seen)
  end)
end)
