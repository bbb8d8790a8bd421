-- The installed tree. By default `cmake --install` of the build under test
-- into a private prefix; with ORRERY_PREFIX set (CI, after installing the
-- Debian packages: ORRERY_PREFIX=/usr), that tree as it is. Every part is
-- where Debian puts such parts, no installed file holds a path of the
-- source or build tree, stock lua5.4 and the installed orrery find each
-- other's parts from there alone, a partial install says what is missing,
-- C users get liborrery with only the public API and orrery.pc, and the
-- man pages and the bash completion cover the command line.
local T = require("orrery.testing")
local q, sh, spit, slurp = T.q, T.sh, T.spit, T.slurp

local GIVEN = os.getenv("ORRERY_PREFIX")
local SYSTEM = GIVEN == "/usr"
-- The Debian packages, whose files are the installed tree under /usr.
local PACKAGES = { "orrery", "lua-orrery", "liborrery0", "liborrery-dev", "orrery-guest" }

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

local function exists(path) return T.run("test -e " .. q(path)) end
local function chomp(s) return (s:gsub("\n$", "")) end

local dir, P, MA, BIN, LUADIR, CMODDIR, GUEST, EXAMPLES
local FILES = {} -- every installed file

setup(function()
  dir = T.tmpdir()
  P = GIVEN
  if not P then
    P = dir .. "/prefix"
    local out, err, code = run("cmake --install " .. q(T.build_dir()) .. " --prefix " .. q(P))
    assert(code == 0, "cmake --install failed: " .. out .. err)
  end
  -- The multiarch directory is wherever the module went: lib/<triplet>.
  local so = chomp(sh("ls " .. q(P) .. "/lib/*/lua/5.4/orrery.so 2>/dev/null | head -1"))
  assert(so ~= "", "no lib/<multiarch>/lua/5.4/orrery.so under " .. P)
  MA = so:match("^" .. P:gsub("%p", "%%%0") .. "/lib/([^/]+)/lua/5%.4/orrery%.so$")
  BIN = P .. "/bin/orrery"
  LUADIR = P .. "/share/lua/5.4"
  CMODDIR = P .. "/lib/" .. MA .. "/lua/5.4"
  GUEST = P .. "/share/orrery/guest"
  EXAMPLES = P .. "/share/doc/orrery/examples"
  local list = SYSTEM and sh("dpkg -L " .. table.concat(PACKAGES, " ") .. " | sort -u")
    or sh("find " .. q(P) .. " -type f -o -type l")
  for f in list:gmatch("[^\n]+") do
    if T.run("test -f " .. q(f)) then FILES[#FILES + 1] = f end
  end
end)

teardown(function() os.execute("rm -rf " .. q(dir)) end)

-- lua5.4 in an empty directory. Under /usr nothing is added to its paths
-- (Debian's defaults must do); under a private prefix the same layout is
-- put first. extra: more environment.
local function lua(chunk, extra)
  local env = ""
  if not SYSTEM then
    env = string.format("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s ",
      q(LUADIR .. "/?.lua;" .. LUADIR .. "/?/init.lua;;"), q(CMODDIR .. "/?.so;;"))
  end
  local d = T.tmpdir()
  local out, err, code = run("cd " .. q(d) .. " && env " .. env .. (extra or "")
    .. " lua5.4 -e " .. q(chunk))
  os.execute("rm -rf " .. q(d))
  return out, err, code
end

describe("the installed tree", function()
  it("puts every part where Debian puts such parts", function()
    local function has(path)
      assert.is_true(exists(path) or exists(path .. ".gz"), "missing: " .. path)
    end
    assert.is_true(T.run("test -x " .. q(BIN)), BIN)
    has(CMODDIR .. "/orrery.so")
    for _, f in ipairs{ "init", "guest", "pretty", "session" } do
      has(LUADIR .. "/orrery/" .. f .. ".lua")
    end
    -- The repository's own busted helpers are not part of the library.
    assert.is_false(exists(LUADIR .. "/orrery/testing.lua"))
    assert.is_false(exists(LUADIR .. "/orrery/leakcheck.lua"))
    -- The guest: its manifest and the files it names, and not the build's
    -- download cache or work area.
    local manifest = require("cjson").decode((slurp(GUEST .. "/orrery-guest.json")))
    for _, key in ipairs{ "kernel", "bzimage", "initrd" } do
      has(GUEST .. "/" .. manifest[key])
    end
    assert.is_false(exists(GUEST .. "/debs"))
    assert.is_false(exists(GUEST .. "/work"))
    for _, h in ipairs{ "api", "error", "document", "builder", "vm", "guest", "guest_image",
                        "install" } do
      has(P .. "/include/orrery/" .. h .. ".h")
    end
    has(P .. "/lib/" .. MA .. "/liborrery.so")
    assert.matches("^liborrery%.so%.0", chomp(sh("readlink " .. q(P .. "/lib/" .. MA .. "/liborrery.so"))))
    has(P .. "/lib/" .. MA .. "/pkgconfig/orrery.pc")
    has(P .. "/share/man/man1/orrery.1")
    has(P .. "/share/man/man3/orrery-lua.3")
    has(P .. "/share/bash-completion/completions/orrery")
    for _, r in ipairs{ "quickstart.lua", "minimal.lua", "linux-vm.lua" } do
      has(EXAMPLES .. "/" .. r)
    end
  end)

  it("holds no path of the source or build tree", function()
    local forbidden = {}
    if not GIVEN then
      forbidden[#forbidden + 1] = chomp(sh("cd " .. q(T.build_dir()) .. " && pwd -P"))
      forbidden[#forbidden + 1] = chomp(sh("pwd -P")) -- the source tree (specs run there)
    end
    for p in (os.getenv("ORRERY_FORBIDDEN_PATHS") or ""):gmatch("[^:]+") do
      forbidden[#forbidden + 1] = p
    end
    assert.is_true(#forbidden > 0, "nothing to look for: set ORRERY_FORBIDDEN_PATHS")
    assert.is_true(#FILES > 20, #FILES .. " files")
    local patterns = spit(dir .. "/forbidden", table.concat(forbidden, "\n") .. "\n")
    -- A sanitizer build (the ASan pass runs this spec too) is never shipped,
    -- and GCC's ASan records every source file's full name for its reports:
    -- there only the files that are not ELF objects are held to the rule.
    local sanitized = sh("ldd " .. q(P .. "/lib/" .. MA .. "/liborrery.so")):find("libasan", 1, true)
    local hits = {}
    for _, f in ipairs(FILES) do
      if sanitized and T.run("head -c 4 " .. q(f) .. " | grep -q ELF") then goto next end
      local cat = f:match("%.gz$") and "zcat " or "cat "
      if T.run(cat .. q(f) .. " | grep -aqF -f " .. q(patterns)) then hits[#hits + 1] = f end
      ::next::
    end
    assert.same({}, hits)
  end)

  it("stock lua5.4 loads the module and finds the installed guest", function()
    local out, err, code = lua([[
local orrery = require("orrery")
print(package.searchpath("orrery", package.path))
print(orrery.default_guest().KernelFilePath)
print(orrery.build_dir, type(orrery.Guest.wait_scsi_disk))
local b = orrery.builder{ owner = "installed" }
b:set_memory{ SizeInMB = 128 }
b:set_linux_kernel_direct_boot(orrery.default_guest())
local vm <close> = assert(orrery.create("installed", b, { backend = "plan" }))
print(table.concat(vm:plan_log()[1].value, " "):find("org.qemu.guest_agent.0", 1, true) ~= nil)
]])
    assert.equal(0, code, err)
    assert.equal(LUADIR .. "/orrery/init.lua\n" .. GUEST .. "/vmlinux\nnil\tfunction\ntrue\n", out)
  end)

  it("the installed orrery finds its own library and guest, and plans the examples", function()
    local out, err, code = run("cd / && " .. q(BIN)
      .. " -e 'print(package.searchpath(\"orrery\", package.path))'")
    assert.equal(0, code, err)
    assert.equal(LUADIR .. "/orrery/init.lua\n", out)
    out = run(q(BIN) .. " doctor")
    assert.truthy(out:find("ok    guest        " .. GUEST .. " (orrery-guest.json", 1, true), out)
    for _, r in ipairs{ "quickstart.lua", "minimal.lua", "linux-vm.lua" } do
      out, err, code = run(q(BIN) .. " plan --compact " .. q(EXAMPLES .. "/" .. r))
      assert.equal(0, code, r .. ": " .. err)
      assert.matches('^{"', out)
    end
  end)

  it("a partial install says which half is missing", function()
    -- The C core alone (its Lua library not on the path).
    local out, err, code = lua("require('orrery')",
      string.format("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s", q(dir .. "/none/?.lua"), q(CMODDIR .. "/?.so")))
    assert.equal(1, code)
    assert.truthy(err:find("found only the C core (orrery.so)", 1, true), err)
    assert.truthy(err:find("It is in " .. LUADIR, 1, true), err)
    -- The Lua library alone.
    out, err, code = lua("require('orrery')", string.format("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s",
      q(LUADIR .. "/?.lua;" .. LUADIR .. "/?/init.lua"), q(dir .. "/none/?.so")))
    assert.equal(1, code)
    assert.truthy(err:find("but not its C core, orrery.so, on package.cpath", 1, true), err)
    -- The executable without its Lua library.
    assert(T.run("mkdir -p " .. q(dir .. "/partial/bin") .. " && cp " .. q(BIN) .. " "
      .. q(dir .. "/partial/bin/")))
    out, err, code = run("LUA_PATH_5_4=" .. q(dir .. "/none/?.lua") .. " "
      .. q(dir .. "/partial/bin/orrery") .. " -e 'print(1)'")
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find("the Lua library that goes with this executable (orrery/init.lua in "
      .. dir .. "/partial/share/lua/5.4) cannot be loaded", 1, true), err)
  end)
end)

describe("liborrery for C users", function()
  it("exports the public API and nothing else", function()
    local lib = P .. "/lib/" .. MA .. "/liborrery.so"
    local exported = {}
    for name in sh("nm -D --defined-only " .. q(lib) .. " | awk '{print $3}'"):gmatch("[^\n]+") do
      assert.matches("^orr_[a-z]", name)
      exported[name] = true
    end
    -- Every ORR_API declaration of the installed headers is there.
    local declared = 0
    for h in sh("ls " .. q(P .. "/include/orrery") .. "/*.h"):gmatch("[^\n]+") do
      local text = slurp(h):gsub("\n%s+", " ")
      for name in text:gmatch("ORR_API [^;(]-%*?(orr_[%w_]+)%s*%(") do
        declared = declared + 1
        assert.is_true(exported[name] == true, name .. " (" .. h .. ") is not exported")
      end
    end
    assert.is_true(declared > 50, declared .. " declarations")
  end)

  it("builds and runs a program with orrery.pc that finds the installed guest", function()
    local src = spit(dir .. "/user.c", [[
#include <stdio.h>
#include <stdlib.h>
#include <orrery/builder.h>
#include <orrery/guest_image.h>

int main(void) {
  orr_builder *b;
  orr_error e = {0, ""};
  orr_guest_image img;
  json_t *mem = json_pack("{s:i}", "SizeInMB", 256);
  char *text;
  if (orr_builder_new("c-user", NULL, &b, &e) != 0 ||
      orr_builder_set_memory(b, mem, &e) != 0) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  text = orr_doc_dump(orr_builder_doc(b), 0);
  printf("%s\n", text);
  if (orr_guest_image_default(&img, &e) != 0) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  printf("%s %d\n", img.kernel, orr_guest_image_is_kernel(img.kernel));
  free(text);
  json_decref(mem);
  orr_builder_free(b);
  return 0;
}
]])
    local pc = "PKG_CONFIG_PATH=" .. q(P .. "/lib/" .. MA .. "/pkgconfig")
    -- A sanitized build's library needs its runtime first: build the program so too.
    local lib = P .. "/lib/" .. MA .. "/liborrery.so"
    local flags = sh("ldd " .. q(lib)):find("libasan", 1, true)
      and "-fsanitize=address,undefined " or ""
    local out, err, code = run(string.format("cc %s-o %s %s $(%s pkg-config --cflags --libs orrery)",
      flags, q(dir .. "/user"), q(src), pc))
    assert.equal(0, code, out .. err)
    out, err, code = run("LD_LIBRARY_PATH=" .. q(P .. "/lib/" .. MA) .. " " .. q(dir .. "/user"))
    assert.equal(0, code, err)
    assert.matches('^{"Owner":"c%-user"', out)
    assert.truthy(out:find("\n" .. GUEST .. "/vmlinux 1\n", 1, true), out)
    -- The program's library is the installed one.
    out = sh("LD_LIBRARY_PATH=" .. q(P .. "/lib/" .. MA) .. " ldd " .. q(dir .. "/user"))
    assert.truthy(out:find(P .. "/lib/" .. MA .. "/liborrery.so.0", 1, true), out)
  end)
end)

describe("the man pages and the bash completion", function()
  local function page(path)
    return exists(path) and slurp(path) or sh("zcat " .. q(path .. ".gz"))
  end

  it("render without warnings", function()
    for _, m in ipairs{ "/share/man/man1/orrery.1", "/share/man/man3/orrery-lua.3" } do
      local text = page(P .. m)
      local f = spit(dir .. "/page", text)
      local _, err, code = run("groff -man -Tutf8 -ww -z " .. q(f))
      assert.equal(0, code, m)
      assert.equal("", err, m)
    end
  end)

  it("orrery(1) has every command, every option of every --help and every exit code", function()
    local man = page(P .. "/share/man/man1/orrery.1"):gsub("\\%-", "-"):gsub("\\f[BIRP]", "")
    for _, cmd in ipairs{ "run", "plan", "repl", "doctor", "template", "ps", "console", "stop", "kill", "version", "help" } do
      assert.truthy(man:find("\n.B " .. cmd .. "\n", 1, true) or man:find(".B " .. cmd .. " ", 1, true),
        "command " .. cmd)
      local help = cmd == "help" and "" or sh(q(BIN) .. " " .. cmd .. " --help")
      for opt in help:gmatch("%s(%-%-?[%a][%w-]*)") do
        assert.truthy(man:find(opt, 1, true), cmd .. " option " .. opt)
      end
    end
    for _, code in ipairs{ "0", "1", "2", "130" } do
      assert.truthy(man:find("\n.B " .. code .. "\n", 1, true), "exit code " .. code)
    end
  end)

  it("orrery(1) documents every ORRERY_* variable the code reads", function()
    if GIVEN then return pending("needs the source tree") end
    local used = sh("grep -rhoE 'getenv\\(\"ORRERY_[A-Z_]+' engine/src bindings vendor/guest; "
      .. "grep -rhoE 'ORRERY_[A-Z_]+' vendor/guest/build-guest.sh; "
      .. "for f in scripts/lib/orrery/*.lua; do case $f in */testing.lua|*/leakcheck.lua) ;; "
      .. "*) grep -hoE 'getenv\\(\"ORRERY_[A-Z_]+' \"$f\" ;; esac; done")
    local man = page(P .. "/share/man/man1/orrery.1")
    local n = 0
    for var in used:gmatch("ORRERY_[A-Z_]+") do
      n = n + 1
      assert.truthy(man:find("\n.B " .. var .. "\n", 1, true), var .. " is not in orrery(1)")
    end
    assert.is_true(n >= 5, n .. " variables found")
  end)

  it("the completion offers commands, each command's options and recipes", function()
    local work = T.tmpdir()
    spit(work .. "/r.lua", "")
    assert(T.run("mkdir " .. q(work .. "/sub")))
    -- The sorted words offered for line (a trailing space starts a new word).
    local function complete(line)
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = q(w) end
      if line:sub(-1) == " " then words[#words + 1] = "''" end
      local out = sh("cd " .. q(work) .. " && bash -c " .. q("source "
        .. q(P .. "/share/bash-completion/completions/orrery")
        .. "; COMP_WORDS=(" .. table.concat(words, " ") .. "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1));"
        .. " _orrery; printf '%s\\n' \"${COMPREPLY[@]}\""))
      local got = {}
      for w in out:gmatch("[^\n]+") do got[#got + 1] = w end
      table.sort(got)
      return got
    end
    assert.same({ "plan" }, complete("orrery pl"))
    assert.same({ "doctor" }, complete("orrery help do"))
    assert.same({ "--help", "--json", "--refresh" }, complete("orrery doctor --"))
    assert.same({ "--compact" }, complete("orrery plan --c"))
    assert.same({ "--help", "-h", "ls", "rm" }, complete("orrery template "))
    assert.same({ "--json" }, complete("orrery template ls --"))
    assert.same({ "--help", "--json" }, complete("orrery ps --"))
    assert.same({ "--help", "--timeout=" }, complete("orrery stop --"))
    assert.same({ "r.lua", "sub" }, complete("orrery run "))
    assert.same({ "--allow-write=", "--events=", "--help", "--log-file=", "--quiet", "--sandbox",
      "--verbose", "-e", "-h", "-i", "-l", "-q", "-v" },
      complete("orrery run -"))
    -- After the recipe the words are its own: any file.
    assert.same({ "r.lua", "sub" }, complete("orrery run r.lua "))
    os.execute("rm -rf " .. q(work))
  end)
end)
