-- Builder throughput: 10,000 four-disk documents built and serialised to
-- JSON, median of 5 runs, against a baseline that builds the same document
-- as a plain Lua table and cjson.encode-s it.
--   lua5.4 bench/builder_bench.lua [docs-per-run] [runs]
package.cpath = "build/?.so;" .. package.cpath
package.path = "scripts/lib/?.lua;scripts/lib/?/init.lua;" .. package.path

local orrery = require("orrery")
local cjson = require("cjson")

local N = tonumber(arg[1]) or 10000
local RUNS = tonumber(arg[2]) or 5
local C0 = orrery.scsi_controller_guids[0]
local PATHS = { "/srv/bench/disk0.img", "/srv/bench/disk1.img",
                "/srv/bench/disk2.img", "/srv/bench/disk3.img" }

local function with_orrery()
  local b = orrery.builder{ owner = "bench" }
  b:set_memory{ SizeInMB = 1024 }
  b:set_processor{ Count = 2 }
  b:add_scsi_controller(0)
  for lun = 0, 3 do
    b:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = PATHS[lun + 1] })
  end
  local json = b:json()
  b:close()
  return json
end

local function with_tables()
  local attachments = {}
  for lun = 0, 3 do
    attachments[tostring(lun)] = { Type = "VirtualDisk", Path = PATHS[lun + 1] }
  end
  local doc = {
    Owner = "bench",
    SchemaVersion = { Major = 2, Minor = 1 },
    VirtualMachine = {
      StopOnReset = true,
      Chipset = {},
      ComputeTopology = { Memory = { SizeInMB = 1024 }, Processor = { Count = 2 } },
      Devices = {
        Scsi = { [C0] = { Attachments = attachments } },
        HvSocket = { HvSocketConfig = {
          DefaultBindSecurityDescriptor = "D:P(A;;FA;;;SY)(A;;FA;;;BA)" } },
      },
    },
    ShouldTerminateOnLastHandleClosed = true,
  }
  return cjson.encode(doc)
end

-- Both sides must produce the same document, or the comparison means nothing.
local a, t = cjson.decode(with_orrery()), cjson.decode(with_tables())
local function same(x, y)
  if type(x) ~= "table" or type(y) ~= "table" then return x == y end
  for k, v in pairs(x) do if not same(v, y[k]) then return false end end
  for k in pairs(y) do if x[k] == nil then return false end end
  return true
end
assert(same(a, t), "the baseline does not build the same document")

local function time(fn)
  collectgarbage("collect")
  local bytes = 0
  local t0 = os.clock()
  for _ = 1, N do bytes = bytes + #fn() end
  return os.clock() - t0, bytes
end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function measure(name, fn)
  time(fn) -- warm up
  local secs = {}
  for i = 1, RUNS do secs[i] = time(fn) end
  local m = median(secs)
  print(string.format("%-22s %10.0f docs/s %8.2f us/doc  (median of %d runs of %d)",
                      name, N / m, m / N * 1e6, RUNS, N))
  return m
end

print(string.format("orrery %s, %s, %d bytes of JSON per document",
                    orrery.version, _VERSION, #with_orrery()))
local mo = measure("orrery builder + json", with_orrery)
local mb = measure("lua table + cjson", with_tables)
print(string.format("ratio orrery/baseline: %.2fx the time per document", mo / mb))
