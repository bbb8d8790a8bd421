-- Tasks: orrery.spawn, sleep, wait_all, run and now, and the rule for
-- waiting calls: they yield inside a task, drive the loop at top level (as
-- here: busted runs specs at top level), and are refused inside callbacks.
-- Every spec waits for the tasks it spawns, so none outlives it.
local orrery = require("orrery")

describe("orrery tasks", function()
  it("finishes sleeping tasks in the order of their deadlines", function()
    local order = {}
    local slow = orrery.spawn(function()
      orrery.sleep(50)
      order[#order + 1] = "slow"
      return "s"
    end)
    local fast = orrery.spawn(function()
      orrery.sleep(10)
      order[#order + 1] = "fast"
      return "f"
    end)
    assert.same({ "s", "f" }, orrery.wait_all{ slow, fast })
    assert.same({ "fast", "slow" }, order)
  end)

  it("starts a task on a later loop turn, not inside spawn", function()
    local ran = false
    local t = orrery.spawn(function() ran = true end)
    assert.is_false(ran)
    assert.is_false(t:done())
    assert.matches("^orrery%.Task: 0x%x+ %(running%)$", tostring(t))
    t:wait()
    assert.is_true(ran)
    assert.is_true(t:done())
  end)

  it("passes arguments and returns every value", function()
    local t = orrery.spawn(function(a, b)
      orrery.sleep(1)
      return a + b, nil, "z"
    end, 2, 3)
    assert.same({ n = 3, 5, nil, "z" }, table.pack(t:wait()))
    assert.same({ n = 4, true, 5, nil, "z" }, table.pack(t:result()))
    assert.matches("^orrery%.Task: 0x%x+ %(done%)$", tostring(t))
  end)

  it("wait_all returns the first value of each task, in list order", function()
    local tasks = {}
    for i = 1, 5 do
      tasks[i] = orrery.spawn(function()
        orrery.sleep(6 - i) -- the last one finishes first
        return i * 10, "ignored"
      end)
    end
    assert.same({ 10, 20, 30, 40, 50 }, orrery.wait_all(tasks))
    assert.same({}, orrery.wait_all{})
  end)

  it("wait_all raises listing each failed task's message", function()
    local good = orrery.spawn(function() return 1 end)
    local bad1 = orrery.spawn(function()
      orrery.sleep(5)
      error("first failure")
    end)
    local bad2 = orrery.spawn(function() error("second failure") end)
    local ok, err = pcall(orrery.wait_all, { good, bad1, bad2 })
    assert.is_false(ok)
    assert.matches("wait_all: 2 of 3 tasks failed:", err, 1, true)
    assert.matches("tasks%[2%]: [^\n]*tasks_spec%.lua:%d+: first failure", err)
    assert.matches("tasks%[3%]: [^\n]*tasks_spec%.lua:%d+: second failure", err)
    assert.not_matches("tasks%[1%]", err)
    -- wait_all read those errors, so nothing is left unseen.
    assert.is_true(orrery.run())
  end)

  it("wait_all checks its argument before waiting", function()
    assert.error_matches(function() orrery.wait_all{ 1 } end,
                         "wait_all: tasks%[1%] must be an orrery%.Task, got number")
  end)

  it("task:wait raises the task's error with the task's traceback", function()
    local t = orrery.spawn(function()
      orrery.sleep(1)
      error("boom")
    end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.matches("^[^\n]*tasks_spec%.lua:%d+: boom\nstack traceback:", err)
    assert.matches("^orrery%.Task: 0x%x+ %(failed%)$", tostring(t))
    local rok, rerr, tb = t:result()
    assert.is_false(rok)
    assert.matches("tasks_spec%.lua:%d+: boom$", rerr)
    assert.equal(err, tb)
  end)

  it("keeps a non-string error object as it is", function()
    local t = orrery.spawn(function() error({ code = 42 }) end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.same({ code = 42 }, err)
  end)

  it("closes a failed task's to-be-closed variables", function()
    local closed_with
    local t = orrery.spawn(function()
      local guard <close> = setmetatable({}, {
        __close = function(_, e) closed_with = e end,
      })
      orrery.sleep(1)
      error("fail after a wait")
    end)
    assert.has_error(function() t:wait() end)
    assert.matches("fail after a wait", closed_with)
  end)

  it("lets pcall inside a task catch an error across a waiting call", function()
    local t = orrery.spawn(function()
      local ok, err = pcall(function()
        orrery.sleep(1)
        error("caught")
      end)
      return ok, err
    end)
    local ok, err = t:wait()
    assert.is_false(ok)
    assert.matches("caught$", err)
  end)

  it("task:result raises while the task runs", function()
    local t = orrery.spawn(function() orrery.sleep(1) end)
    assert.error_matches(function() t:result() end, "has not finished")
    t:wait()
  end)

  it("orrery.sleep at top level drives the loop", function()
    local ticked = false
    orrery.spawn(function() ticked = true end)
    local t0 = orrery.now()
    assert.is_true(orrery.sleep(30))
    assert.is_true(orrery.now() - t0 >= 29)
    assert.is_true(ticked) -- the loop ran the task while we slept
  end)

  it("orrery.now is a millisecond clock with sub-millisecond precision", function()
    local a = orrery.now()
    orrery.sleep(15)
    local b = orrery.now()
    assert.equal("float", math.type(a))
    assert.is_true(b - a >= 14, b - a)
    -- Readings taken back to back never go backwards, and some two of them
    -- differ by less than a millisecond but not by nothing: whole
    -- milliseconds were all it had before.
    local fine, prev = 0, orrery.now()
    for _ = 1, 50 do
      local t = orrery.now()
      assert.is_true(t >= prev)
      if t > prev and t - prev < 1 then fine = fine + 1 end
      prev = t
    end
    assert.is_true(fine > 0)
  end)

  it("refuses a bad sleep duration", function()
    assert.has_error(function() orrery.sleep(-1) end)
    assert.has_error(function() orrery.sleep("soon") end)
  end)

  it("orrery.run waits for every task and reports unseen failures", function()
    local done = 0
    for i = 1, 3 do
      orrery.spawn(function()
        orrery.sleep(i)
        done = done + 1
      end)
    end
    assert.is_true(orrery.run())
    assert.equal(3, done)
    -- A failure nobody waits for is printed to stderr ("orrery: task
    -- failed: ...") and counted until its error is read.
    local t = orrery.spawn(function() error("nobody waits for this (expected)") end)
    local ok, n = orrery.run()
    assert.is_false(ok)
    assert.equal(1, n)
    assert.is_false((t:result()))
    assert.is_true(orrery.run())
  end)

  describe("refuses to wait where uv_run cannot be re-entered", function()
    -- Waiting for a task running fn fails with an error matching pattern.
    local function wait_fails(fn, pattern)
      local t = orrery.spawn(fn)
      local ok, err = pcall(t.wait, t)
      assert.is_false(ok)
      assert.matches(pattern, err)
    end

    it("in a plain coroutine inside a task", function()
      wait_fails(function()
        local inner = coroutine.wrap(function() orrery.sleep(1) end)
        inner()
      end, "cannot wait inside an event callback or a non%-task coroutine; use orrery%.spawn")
    end)

    it("in a C call that cannot yield, inside a task", function()
      wait_fails(function()
        table.sort({ 3, 2, 1 }, function(a, b)
          orrery.sleep(0)
          return a < b
        end)
      end, "cannot wait here: the task is inside a call that cannot yield")
    end)

    it("orrery.run inside a task", function()
      local t = orrery.spawn(function() return orrery.run() end)
      assert.error_matches(function() t:wait() end, "orrery%.run: cannot be called from a task")
    end)

    it("a task waiting for itself", function()
      local me
      me = orrery.spawn(function()
        orrery.sleep(1)
        return me:wait()
      end)
      assert.error_matches(function() me:wait() end, "a task cannot wait for itself")
    end)
  end)

  it("fails a task that yields outside a waiting call", function()
    local t = orrery.spawn(function() coroutine.yield("stray") end)
    assert.error_matches(function() t:wait() end, "task yielded outside an orrery waiting call")
  end)

  it("lets a task spawn and wait for other tasks", function()
    local outer = orrery.spawn(function()
      local a = orrery.spawn(function() orrery.sleep(5) return "a" end)
      local b = orrery.spawn(function() return "b" end)
      local r = orrery.wait_all{ a, b }
      return r[1] .. r[2] .. b:wait()
    end)
    assert.equal("abb", outer:wait())
  end)
end)

-- `orrery run RECIPE`: the recipe runs as a task, then every task it
-- spawned runs to its end; any failure makes the exit status 1.
describe("orrery run", function()
  local ORRERY = os.getenv("ORRERY_BIN") or (orrery.build_dir .. "/orrery")

  local function run(text)
    local path, errfile = os.tmpname(), os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    local p = assert(io.popen(ORRERY .. " run " .. path .. " a b 2>" .. errfile))
    local out = p:read("a")
    local _, _, code = p:close()
    f = assert(io.open(errfile))
    local err = f:read("a")
    f:close()
    os.remove(path)
    os.remove(errfile)
    return out, err, code, path
  end

  it("runs the recipe as a task, then the tasks it spawned", function()
    local out, err, code = run([[
      local orrery = require("orrery")
      print("args", ...)
      local child = orrery.spawn(function() orrery.sleep(20) print("child done") end)
      orrery.sleep(5) -- yields: the recipe is a task
      print("child still running", not child:done())
    ]])
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("args\ta\tb\nchild still running\ttrue\nchild done\n", out)
  end)

  it("exits 1 with the recipe's error, position and traceback", function()
    local _, err, code, path = run([[
      local orrery = require("orrery")
      local function f() orrery.sleep(1) error("recipe failed") end
      f()
    ]])
    assert.equal(1, code)
    assert.truthy(err:find("orrery: " .. path .. ":2: recipe failed\nstack traceback:", 1, true), err)
    assert.truthy(err:find("in local 'f'", 1, true), err)
  end)

  it("exits 1 when a spawned task failed and nobody read its error", function()
    local out, err, code = run([[
      local orrery = require("orrery")
      orrery.spawn(function() error("child failed") end)
      orrery.sleep(5)
      print("recipe done")
    ]])
    assert.equal("recipe done\n", out)
    assert.equal(1, code)
    assert.truthy(err:find("orrery: task failed: .-child failed"), err)
    assert.truthy(err:find("orrery: 1 task(s) failed", 1, true), err)
  end)

  it("exits 0 when the recipe handles a task's failure", function()
    local _, err, code = run([[
      local orrery = require("orrery")
      local t = orrery.spawn(function() error("handled") end)
      assert(not pcall(t.wait, t))
    ]])
    assert.equal("", err)
    assert.equal(0, code)
  end)
end)
