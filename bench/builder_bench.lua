-- Builder throughput: four-disk documents built and serialised to JSON
-- through the Lua API, against a baseline that builds the same document as
-- a plain Lua table and cjson.encode-s it. Runs of both alternate (the host
-- is shared and noisy); each side's figure is the median of its runs.
--   lua5.4 bench/builder_bench.lua [docs-per-run] [runs]
local B = dofile("bench/lib.lua")
B.use_build()

local orrery = require("orrery")
local cjson = require("cjson")

local N = tonumber(arg[1]) or 10000
local RUNS = tonumber(arg[2]) or 9
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

-- CPU seconds for N documents.
local function time(fn)
  collectgarbage("collect")
  local bytes = 0
  local t0 = os.clock()
  for _ = 1, N do bytes = bytes + #fn() end
  return os.clock() - t0
end

print(string.format("orrery %s, %s, %d bytes of JSON per document; %d runs of %d documents each",
                    orrery.version, _VERSION, #with_orrery(), RUNS, N))
time(with_orrery) -- warm up both
time(with_tables)
local so, sb = B.interleave(RUNS, function() return time(with_orrery) end,
                            function() return time(with_tables) end)
local mo, mb = B.median(so), B.median(sb)
local function line(name, m)
  print(string.format("%-22s %10.0f docs/s %8.2f us/doc (median)", name, N / m, m / N * 1e6))
end
line("orrery builder + json", mo)
line("lua table + cjson", mb)
print(string.format("orrery: %.0f documents per second (target >= 100000)", N / mo))
print("ratio orrery/baseline, time per document: " .. B.ratio(mo, mb, 3))
