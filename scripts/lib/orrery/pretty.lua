-- A readable rendering of Lua values for the REPL: tables nested and
-- indented, keys sorted (array items first, in order, without their keys),
-- short tables on one line, cycles marked instead of followed. Tables are
-- walked raw (next, rawget), so printing never runs __index or __pairs;
-- only __tostring of values that have one (as print does).
local M = {}

local WIDTH = 78     -- a table is put on one line when it fits in this
local MAX_DEPTH = 20 -- deeper tables print as {...}

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  keywords[w] = true
end

local escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"',
                  ["\\"] = "\\\\", ["\0"] = "\\0" }

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\%d", c:byte())
  end) .. '"'
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  -- userdata, functions, threads: what print shows (__tostring, __name)
  local ok, s = pcall(tostring, v)
  return ok and s or ("<" .. t .. ">")
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not keywords[k] then
    return k
  end
  return "[" .. scalar(k) .. "]"
end

-- Sorts keys: numbers ascending, then strings, then the rest by text.
local rank = { number = 1, string = 2, boolean = 3 }
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = rank[ta] or 4, rank[tb] or 4
  if ra ~= rb then return ra < rb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function entries(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, key_less)
  return n, keys
end

local render

local function render_table(t, indent, path, depth)
  if path[t] then return "<cycle: " .. scalar(t) .. ">" end
  if depth >= MAX_DEPTH then return "{...}" end
  local n, keys = entries(t)
  if n == 0 and #keys == 0 then return "{}" end
  path[t] = true
  local items = {}
  local inner = indent .. "  "
  for i = 1, n do
    items[#items + 1] = render(rawget(t, i), inner, path, depth + 1)
  end
  for _, k in ipairs(keys) do
    items[#items + 1] = key_text(k) .. " = " .. render(rawget(t, k), inner, path, depth + 1)
  end
  path[t] = nil
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if #one + #indent <= WIDTH and not one:find("\n", 1, true) then
    return one
  end
  return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. "\n" .. indent .. "}"
end

function render(v, indent, path, depth)
  if type(v) == "table" then return render_table(v, indent, path, depth) end
  return scalar(v)
end

-- The text of v: tables as described above, strings quoted, anything else
-- as tostring shows it.
function M.format(v)
  return render(v, "", {}, 0)
end

return M
