-- Helpers the benchmarks share: local B = dofile("bench/lib.lua") (run from the repository root).
local M = {}

-- The build directory ($BUILD or build/), put on package.cpath with scripts/lib on package.path.
function M.use_build()
  local build = os.getenv("BUILD") or "build"
  package.cpath = build .. "/?.so;" .. package.cpath
  package.path = "scripts/lib/?.lua;scripts/lib/?/init.lua;" .. package.path
  return build
end

-- The path of a bench helper program of the build, or an error saying how to build it.
function M.tool(build, name)
  local path = build .. "/bench/" .. name
  local f = io.open(path)
  if not f then error(path .. " is missing: configure with -DORR_BUILD_BENCH=ON and build", 0) end
  f:close()
  return path
end

-- A new private directory.
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d))
  return d
end

-- One shell word: s in single quotes.
function M.quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A shell command line of words, each quoted.
function M.command(words)
  local q = {}
  for i, w in ipairs(words) do q[i] = M.quote(w) end
  return table.concat(q, " ")
end

-- The median of a list of numbers (the list is left as it is).
function M.median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

-- The QEMU argv a plan-backend VM recorded (its last "argv" entry).
function M.plan_argv(vm)
  local argv
  for _, e in ipairs(vm:plan_log()) do
    if e.kind == "argv" then argv = e.value end
  end
  return argv
end

-- Runs a(i) and b(i) for i = 1..runs, alternating which goes first, calling each(i, ra, rb) after a run; returns both result lists.
function M.interleave(runs, a, b, each)
  local ra, rb = {}, {}
  for i = 1, runs do
    if i % 2 == 1 then
      ra[i] = a(i); rb[i] = b(i)
    else
      rb[i] = b(i); ra[i] = a(i)
    end
    if each then each(i, ra[i], rb[i]) end
  end
  return ra, rb
end

-- "x/y" as a ratio with its target: "1.07x (target <= 1.2)".
function M.ratio(x, y, target)
  return string.format("%.2fx (target <= %s)", x / y, target)
end

return M
