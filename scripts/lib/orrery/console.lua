-- vm:console(n): a stream over what COM port n prints (0 is COM1), built on
-- the engine's console capture (the VM's _console_* primitives, C):
--
--   local con = vm:console(0)                 -- from the oldest line kept
--   local line = con:read_line{ timeout_ms = 5000 }
--   local ver = con:expect("Linux version (%S+)", { timeout_ms = 30000 })
--   con:write("root\n")
--
-- A stream starts at the oldest line the engine still keeps (the last 512
-- of the port), so a line printed before vm:console() was called is not
-- missed; vm:console(n, { from = "now" }) starts at what comes next. Each
-- stream has its own position. read_line returns the next complete line
-- (without its line end); expect(pattern) skips lines until one matches
-- the Lua pattern and returns its captures (the whole match if it has
-- none), and also looks at the text printed since the last line end (a
-- prompt): a match there consumes that line (not for a pattern that ends
-- in "$": that one matches whole lines only). Both wait like every other
-- call and fail `nil, "ETIMEDOUT: ...", "ETIMEDOUT"` at their deadline
-- (default 10 s; timeout_ms = 0 is the default too), or EVMGONE when the
-- VM stops first (the message ends with its last console lines).
return function(core)
  local VM = core.VM
  local DEFAULT_TIMEOUT_MS = 10000

  local Console = {}
  Console.__index = Console
  Console.__name = "orrery.Console"

  local function deadline_of(opts, what)
    if opts ~= nil and type(opts) ~= "table" then
      error(what .. ": options must be a table", 3)
    end
    for k in pairs(opts or {}) do
      if k ~= "timeout_ms" then
        error(string.format("%s: unknown option '%s' (expected timeout_ms)", what, tostring(k)), 3)
      end
    end
    local ms = opts and opts.timeout_ms or 0
    if math.type(ms) ~= "integer" or ms < 0 then
      error(what .. ": timeout_ms must be an integer >= 0", 3)
    end
    if ms == 0 then ms = DEFAULT_TIMEOUT_MS end
    return core.now() + ms, ms
  end

  local function left(deadline)
    local ms = math.ceil(deadline - core.now())
    return ms > 0 and ms or 0
  end

  -- The next complete line at the stream's position, or nil when none has
  -- come yet.
  local function take(self)
    while true do
      local line, first = self.vm:_console_line(self.port, self.pos)
      if line ~= nil then
        self.pos = self.pos + 1
        if self.pos - 1 ~= self.skip then return line end
      else
        local next = self.vm:_console_next(self.port)
        if self.pos >= next then return nil end
        self.pos = first -- fell out of the ring: go on from the oldest kept
      end
    end
  end

  -- Waits until the port prints more than it had; true or the failure.
  local function more(self, deadline, what)
    local ms = left(deadline)
    local next, partial = self.vm:_console_next(self.port)
    if ms == 0 then
      return nil, string.format("ETIMEDOUT: %s: COM%d of VM %s printed nothing that "
        .. "answers in the time", what, self.port + 1, self.vm:id()), "ETIMEDOUT"
    end
    local ok, err, code = self.vm:_console_wait(self.port, next, #partial, ms)
    if not ok and code == "ETIMEDOUT" then
      return nil, string.format("ETIMEDOUT: %s: COM%d of VM %s printed nothing that "
        .. "answers in the time", what, self.port + 1, self.vm:id()), code
    end
    return ok, err, code
  end

  function Console:read_line(opts)
    local deadline = deadline_of(opts, "read_line")
    while true do
      local line = take(self)
      if line ~= nil then return line end
      local ok, err, code = more(self, deadline, "read_line")
      if not ok then return nil, err, code end
    end
  end

  local function captures(s, pattern)
    local r = table.pack(string.find(s, pattern))
    if r[1] == nil then return nil end
    if r.n == 2 then return { n = 1, string.sub(s, r[1], r[2]) } end
    return table.pack(table.unpack(r, 3, r.n))
  end

  function Console:expect(pattern, opts)
    if type(pattern) ~= "string" then
      error("expect: pattern must be a string (a Lua pattern)", 2)
    end
    local deadline = deadline_of(opts, "expect '" .. pattern .. "'")
    local line_end = pattern:sub(-1) == "$" and pattern:sub(-2, -2) ~= "%"
    while true do
      local line = take(self)
      while line ~= nil do
        local c = captures(line, pattern)
        if c then return table.unpack(c, 1, c.n) end
        line = take(self)
      end
      -- A prompt has no line end yet. A pattern anchored at the end ("$")
      -- means a whole line: a line still being printed could match early.
      local next, partial = self.vm:_console_next(self.port)
      if not line_end and self.skip ~= next and partial ~= "" then
        local c = captures(partial, pattern)
        if c then
          self.skip = next -- the rest of that line is consumed with it
          return table.unpack(c, 1, c.n)
        end
      end
      local ok, err, code = more(self, deadline, "expect '" .. pattern .. "'")
      if not ok then return nil, err, code end
    end
  end

  function Console:write(s)
    if type(s) ~= "string" then error("write: expected a string", 2) end
    return self.vm:_console_write(self.port, s)
  end

  -- for line in con:lines{ timeout_ms } do ... end: until the deadline of
  -- each line (or the VM's end).
  function Console:lines(opts)
    return function()
      return (self:read_line(opts))
    end
  end

  function Console:__tostring()
    return string.format("orrery.Console: COM%d of VM %s", self.port + 1, self.vm:id())
  end

  function VM:console(port, opts)
    port = port or 0
    if math.type(port) ~= "integer" or port < 0 or port > 3 then
      error("console: port must be an integer 0..3 (0 is COM1), got " .. tostring(port), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then error("console: options must be a table", 2) end
    for k, v in pairs(opts or {}) do
      if k ~= "from" or (v ~= "start" and v ~= "now") then
        error("console: unknown option " .. tostring(k) .. " = " .. tostring(v)
          .. " (expected from = \"start\" or \"now\")", 2)
      end
    end
    if not self:_console_has(port) then
      return nil, string.format("ENOENT: console: VM %s has no COM%d the engine captures "
        .. "(COM1 always, COM2..4 when the document names them; none under plan)",
        self:id(), port + 1), "ENOENT"
    end
    local pos = 0
    if opts and opts.from == "now" then
      pos = self:_console_next(port)
    else
      local _, first = self:_console_line(port, 0)
      pos = first or 0
    end
    return setmetatable({ vm = self, port = port, pos = pos, skip = -1 }, Console)
  end
end
