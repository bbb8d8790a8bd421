-- The orrery module: the C core (orrery.so, loaded as "orrery.core") plus
-- the parts of the library written in Lua. require("orrery") resolves here
-- when this directory's parent is on package.path: installed, that is
-- share/lua/5.4 (on lua5.4's default path); in a source tree scripts/lib
-- (busted's .busted and the orrery executable set that up).
local _, here = ...
local ok, core = pcall(require, "orrery.core")
if not ok then
  if not tostring(core):find("module 'orrery.core' not found", 1, true) then
    error(core, 0)
  end
  error("require(\"orrery\"): found the Lua library (" .. tostring(here)
    .. ") but not its C core, orrery.so, on package.cpath; install the "
    .. "lua-orrery package, or point LUA_CPATH (busted: --cpath) at the "
    .. "build directory's ?.so\n" .. core, 2)
end

-- orrery.Guest's waits built on exec (orrery/guest.lua); a core built
-- before orrery.Guest existed simply lacks them.
if core.Guest then require("orrery.guest")(core) end
-- orrery.template and create's template option (orrery/template.lua).
if core._template then require("orrery.template")(core) end
-- vm:modify carries out GuestRequests through the guest manager
-- (orrery/guest_request.lua).
if core.VM and core.Guest then require("orrery.guest_request")(core, core.VM) end
-- vm:console(n), the stream over a COM port (orrery/console.lua).
if core.VM then require("orrery.console")(core) end

return core
