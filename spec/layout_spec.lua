-- How Orrery finds its parts: the default guest is known by the manifest
-- next to its kernel (orrery-guest.json), wherever it lies, and loading the
-- module with only one of its halves on the Lua paths fails saying which
-- half is missing instead of handing out a core without the guest waits.
-- spec/install_spec.lua checks the same against an installed tree.
local orrery = require("orrery")
local cjson = require("cjson")

local T = require("orrery.testing")
local q, sh, spit, slurp = T.q, T.sh, T.spit, T.slurp

local ORRERY = T.orrery_bin()

-- Runs a shell command; returns stdout, stderr and the exit code.
local function run(cmd)
  local err = os.tmpname()
  local p = assert(io.popen(cmd .. " 2>" .. q(err)))
  local out = p:read("a")
  local _, _, code = p:close()
  local e = slurp(err)
  os.remove(err)
  return out, e, code
end

-- A copy of the default guest in dir: hard links, so 70 MB cost nothing.
local function copy_guest(dir)
  local g = orrery.default_guest()
  local src = g.KernelFilePath:match("^(.*)/[^/]+$")
  assert(T.run("mkdir -p " .. q(dir)))
  for _, f in ipairs{ "vmlinux", "initramfs.cpio", "orrery-guest.json" } do
    assert(T.run(string.format("cp -l %s/%s %s/ 2>/dev/null || cp %s/%s %s/",
      q(src), f, q(dir), q(src), f, q(dir))))
  end
  return dir
end

-- The recipe printing whether a plan VM booting kernel (or the default
-- guest) gets the guest agent port.
local AGENT = [[
local b = orrery.builder{ owner = "layout" }
b:set_memory{ SizeInMB = 128 }
b:set_processor{ Count = 1 }
b:set_linux_kernel_direct_boot(KERNEL or orrery.default_guest())
local vm <close> = assert(orrery.create("layout", b, { backend = "plan" }))
local argv = table.concat(vm:plan_log()[1].value, " ")
print(vm:document().VirtualMachine.Chipset.LinuxKernelDirect.KernelFilePath)
print(argv:find("org.qemu.guest_agent.0", 1, true) and "agent" or "no agent")
]]

describe("the default guest", function()
  local dir
  before_each(function() dir = T.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. q(dir)) end)

  it("is this build's, booted with its manifest's command line", function()
    local g = orrery.default_guest()
    local manifest = cjson.decode((slurp(orrery.build_dir .. "/guest/orrery-guest.json")))
    assert.equal(orrery.build_dir .. "/guest/" .. manifest.kernel, g.KernelFilePath)
    assert.equal(orrery.build_dir .. "/guest/" .. manifest.initrd, g.InitRdPath)
    assert.equal(manifest.cmdline, g.KernelCmdLine)
  end)

  it("keeps its agent port when moved: recognised by its manifest, not its path", function()
    copy_guest(dir .. "/moved")
    local recipe = spit(dir .. "/agent.lua", AGENT)
    local out, err, code = run("ORRERY_GUEST_DIR=" .. q(dir .. "/moved") .. " " .. ORRERY
      .. " run " .. q(recipe))
    assert.equal(0, code, err)
    assert.equal(dir .. "/moved/vmlinux\nagent\n", out)
    -- Through a symlink to the kernel from elsewhere: the same kernel.
    assert(T.run("ln -s " .. q(dir .. "/moved/vmlinux") .. " " .. q(dir .. "/k")))
    out, err, code = run(ORRERY .. " -e " .. q("KERNEL = { KernelFilePath = '" .. dir
      .. "/k', InitRdPath = '" .. dir .. "/moved/initramfs.cpio' }") .. " " .. q(recipe))
    assert.equal(0, code, err)
    assert.equal(dir .. "/k\nagent\n", out)
  end)

  it("is not any kernel: no manifest, or one that names another file, no agent port", function()
    copy_guest(dir .. "/g")
    assert(T.run("cp -l " .. q(dir .. "/g/vmlinux") .. " " .. q(dir .. "/g/other")))
    local recipe = spit(dir .. "/agent.lua", AGENT)
    for _, kernel in ipairs{ dir .. "/g/other", dir .. "/bare" } do
      spit(dir .. "/bare", "not a kernel")
      local out, err, code = run(ORRERY .. " -e " .. q("KERNEL = { KernelFilePath = '"
        .. kernel .. "', InitRdPath = '" .. dir .. "/g/initramfs.cpio' }") .. " " .. q(recipe))
      assert.equal(0, code, err)
      assert.equal(kernel .. "\nno agent\n", out)
    end
  end)

  it("fails clearly when ORRERY_GUEST_DIR holds no guest", function()
    local out, err, code = run("ORRERY_GUEST_DIR=" .. q(dir) .. " " .. ORRERY
      .. " -e 'orrery.default_guest()'")
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find("default_guest: no default guest in $ORRERY_GUEST_DIR: no "
      .. "orrery-guest.json in " .. dir, 1, true), err)
    -- doctor says the same, as a warning with the fix.
    out = run("ORRERY_GUEST_DIR=" .. q(dir) .. " " .. ORRERY .. " doctor")
    assert.matches("\nwarn%s+guest%s+no default guest in %$ORRERY_GUEST_DIR[^\n]*; fix: ", out)
  end)

  it("boots from anywhere with its agent answering (real QEMU)", function()
    copy_guest(dir .. "/moved")
    local recipe = spit(dir .. "/boot.lua", [[
local b = orrery.builder{ owner = "layout-boot" }
b:set_memory{ SizeInMB = 256 }
b:set_processor{ Count = 1 }
b:set_linux_kernel_direct_boot(orrery.default_guest())
local vm <close> = assert(orrery.create("layout-boot", b, { accel = "tcg", runtime_dir = ... }))
assert(vm:start())
local g = assert(vm:guest{ timeout_ms = 120000 })
print(assert(g:exec{ "cat", "/proc/cmdline" }).stdout:match("console=ttyS0") and "booted" or "?")
g:close()
]])
    local out, err, code = run("ORRERY_GUEST_DIR=" .. q(dir .. "/moved") .. " " .. ORRERY
      .. " run -q " .. q(recipe) .. " " .. q(dir .. "/run"))
    assert.equal(0, code, err)
    assert.equal("booted\n", out)
  end)
end)

describe("loading the module", function()
  local BUILD = T.build_dir()
  local LIB = sh("cd scripts/lib && pwd"):gsub("\n$", "")

  -- lua5.4 from an empty directory with only the given paths added.
  local function lua(cpath, lpath, chunk)
    local dir = T.tmpdir()
    local out, err, code = run("cd " .. q(dir) .. " && lua5.4 -e "
      .. q(string.format("package.cpath = %q .. package.cpath; package.path = %q .. package.path",
        cpath, lpath)) .. " -e " .. q(chunk))
    os.execute("rm -rf " .. q(dir))
    return out, err, code
  end

  it("works with both halves on the paths", function()
    local out, err, code = lua(BUILD .. "/?.so;", LIB .. "/?.lua;" .. LIB .. "/?/init.lua;",
      "local o = require 'orrery'; print(type(o.default_guest), type(o.Guest.wait_scsi_disk))")
    assert.equal(0, code, err)
    assert.equal("function\tfunction\n", out)
  end)

  it("with only the C core on the cpath, says the Lua library is missing and where it is", function()
    local out, err, code = lua(BUILD .. "/?.so;", "", "require 'orrery'")
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find('require("orrery") found only the C core (orrery.so): its Lua '
      .. "library, orrery/init.lua, is not on package.path", 1, true), err)
    assert.truthy(err:find("It is in " .. LIB, 1, true), err)
    -- The core itself stays loadable under its own name.
    out, err, code = lua(BUILD .. "/?.so;", "", "print(type(require('orrery.core').create))")
    assert.equal(0, code, err)
    assert.equal("function\n", out)
  end)

  it("with only the Lua library on the path, says the C core is missing", function()
    local out, err, code = lua("", LIB .. "/?.lua;" .. LIB .. "/?/init.lua;", "require 'orrery'")
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find("found the Lua library (" .. LIB .. "/orrery/init.lua) but not its C "
      .. "core, orrery.so, on package.cpath", 1, true), err)
  end)

  it("the orrery executable uses the Lua library of its own tree", function()
    local out, err, code = run("cd / && " .. ORRERY .. " -e 'print(package.searchpath(\"orrery\", package.path))'")
    assert.equal(0, code, err)
    assert.equal(LIB .. "/orrery/init.lua\n", out)
  end)
end)
