-- The orrery module: the C core (build/orrery.so, as "orrery.core") plus the
-- parts of the library written in Lua. require("orrery") resolves here when
-- scripts/lib is on package.path (busted's .busted and the orrery executable
-- set that up); the C core alone is also loadable as require("orrery").
local core = require("orrery.core")

return core
