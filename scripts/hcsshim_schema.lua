-- Writes the compact description of hcsshim's HCS schema that
-- spec/hcs_schema_spec.lua compares Orrery's schema table against
-- (spec/fixtures/hcsshim_schema2.txt), from an hcsshim source tree:
--
--   lua5.4 scripts/hcsshim_schema.lua HCSSHIM_DIR COMMIT > spec/fixtures/hcsshim_schema2.txt
--
-- It reads the Go type declarations only (struct fields with their json
-- tags, named types and their constants, resource path constants) of
-- internal/hcs/schema2, internal/protocol/guestrequest,
-- internal/protocol/guestresource and internal/hcs/resourcepaths, and keeps
-- the types reachable from the ones Orrery models (ROOTS).
local dir, commit = arg[1], arg[2] or "unknown"
assert(dir, "usage: lua5.4 scripts/hcsshim_schema.lua HCSSHIM_DIR [COMMIT]")

local ROOTS = { "ComputeSystem", "ModifySettingRequest", "ModificationRequest",
                "ProcessorLimits", "LCOWMappedDirectory", "LCOWMappedVirtualDisk",
                "LCOWMappedVPMemDevice", "LCOWMappedVPCIDevice", "LCOWNetworkAdapter" }
-- Types kept as one opaque field: Orrery runs virtual machines only.
local LEAVES = { Container = true }
local PACKAGES = { "internal/hcs/schema2", "internal/protocol/guestrequest",
                   "internal/protocol/guestresource" }

local structs, order = {}, {} -- name -> { {json, gotype, omitempty}, ... }
local named = {}               -- name -> underlying Go type
local consts = {}              -- type name -> { values }
local paths = {}               -- { {name, value} } from resourcepaths

local function files(sub)
  local p = assert(io.popen("ls " .. dir .. "/" .. sub .. "/*.go"))
  local out = {}
  for f in p:lines() do
    if not f:match("_test%.go$") then out[#out + 1] = f end
  end
  p:close()
  return out
end

-- Strips comments (line comments only; the schema files use no block ones
-- inside declarations) and a package qualifier from a type.
local function clean(line) return (line:gsub("//.*$", "")) end
local function unqualify(t) return (t:gsub("[%w_]+%.(%u)", "%1")) end

local function parse(path)
  local f = assert(io.open(path))
  local cur
  local in_const
  for raw in f:lines() do
    local line = clean(raw)
    if cur then
      if line:match("^}") then
        cur = nil
      else
        local goname, gotype, tag = line:match("^%s+([%w_]+)%s+([^`]-)%s*`(.-)`")
        if not goname then
          goname, gotype = line:match("^%s+([%w_]+)%s+(%S+)%s*$")
        end
        if goname then
          local json = tag and tag:match('json:"([^"]*)"')
          local name, opts = goname, ""
          if json then
            name, opts = json:match("^([^,]*)(.*)$")
            if name == "" then name = goname end
          end
          if name ~= "-" then
            cur[#cur + 1] = { json = name, go = unqualify(gotype),
                              omitempty = opts:find("omitempty", 1, true) ~= nil }
          end
        end
      end
    elseif in_const then
      if line:match("^%)") then
        in_const = false
      else
        local t, v = line:match("^%s+[%w_]+%s+([%w_%.]+)%s*=%s*(.-)%s*$")
        if t then
          t = unqualify(t)
          consts[t] = consts[t] or {}
          table.insert(consts[t], (v:gsub('^"(.*)"$', "%1")))
        end
      end
    else
      local sname = line:match("^type%s+([%w_]+)%s+struct%s*{%s*$")
      if sname then
        cur = {}
        structs[sname] = cur
        order[#order + 1] = sname
      elseif line:match("^type%s+[%w_]+%s+struct%s*{%s*}") then
        local empty = line:match("^type%s+([%w_]+)")
        structs[empty] = {}
        order[#order + 1] = empty
      else
        local tname, under = line:match("^type%s+([%w_]+)%s+([%w_%.%[%]*]+)%s*$")
        if tname then named[tname] = unqualify(under) end
        if line:match("^const%s*%(") then in_const = true end
      end
    end
  end
  f:close()
end

for _, pkg in ipairs(PACKAGES) do
  for _, f in ipairs(files(pkg)) do parse(f) end
end
do
  local f = assert(io.open(dir .. "/internal/hcs/resourcepaths/virtualmachine.go"))
  for line in f:lines() do
    local name, value = line:match("^%s+([%w_]+)%s+string%s*=%s*\"(.-)\"")
    if name then paths[#paths + 1] = { name, value } end
  end
  f:close()
end

-- The types reachable from the roots, in the order first reached.
local keep, seen = {}, {}
local function reach(t)
  local base = t:gsub("^[%*%[%]]+", ""):gsub("^map%[string%]", ""):gsub("^[%*%[%]]+", "")
  if seen[base] or LEAVES[base] then return end
  seen[base] = true
  if structs[base] then
    keep[#keep + 1] = base
    for _, fld in ipairs(structs[base]) do reach(fld.go) end
  elseif named[base] then
    reach(named[base])
  end
end
for _, r in ipairs(ROOTS) do reach(r) end

print("# hcsshim's HCS schema as encoding/json marshals it, for spec/hcs_schema_spec.lua.")
print("# Extracted by scripts/hcsshim_schema.lua from microsoft/hcsshim " .. commit .. ".")
print("# struct NAME, then one line per field in declaration order:")
print("#   JSON-NAME GO-TYPE omitempty|-")
print("# named NAME UNDERLYING [= CONSTANT VALUES...]; path NAME FORMAT")
for _, name in ipairs(keep) do
  print("struct " .. name)
  for _, fld in ipairs(structs[name]) do
    print(string.format("  %s %s %s", fld.json, fld.go, fld.omitempty and "omitempty" or "-"))
  end
end
local names = {}
for n in pairs(named) do if seen[n] then names[#names + 1] = n end end
table.sort(names)
for _, n in ipairs(names) do
  local line = "named " .. n .. " " .. named[n]
  if consts[n] then line = line .. " = " .. table.concat(consts[n], " ") end
  print(line)
end
for _, p in ipairs(paths) do print("path " .. p[1] .. " " .. p[2]) end
