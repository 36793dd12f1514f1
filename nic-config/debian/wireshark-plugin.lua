-- The SHAKE/1 dissector for every Wireshark and tshark on this machine: installed by the
-- shake package in Wireshark's global Lua plugin directory (`tshark -G folders`: "Global Lua
-- Plugins"), which both load at start. It loads /usr/share/shake/shake.lua (bench/shake.lua)
-- unless the run has a copy of its own: Wireshark refuses a second protocol named "shake",
-- and the copy a user or a test asked for is the one to use. So it stands aside when
-- - the user's own plugin directory has a shake.lua (README "Reading SHAKE/1 in Wireshark"),
--   which Wireshark loads after this one, or
-- - the command line loads a shake.lua (`-X lua_script:.../shake.lua`, as the project's
--   tests and README do), which Wireshark loads after the plugins too.
local DISSECTOR = "/usr/share/shake/shake.lua"

local function exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

local function own_copy()
    if exists(Dir.personal_plugins_path() .. "/shake.lua") then
        return true
    end
    local f = io.open("/proc/self/cmdline", "rb")
    if not f then
        return false
    end
    local cmdline = f:read("*a") or ""
    f:close()
    -- NUL-separated arguments; `-X lua_script:PATH` or `-Xlua_script:PATH`.
    for arg in cmdline:gmatch("[^%z]+") do
        if arg:find("lua_script:", 1, true) and arg:match("shake%.lua$") then
            return true
        end
    end
    return false
end

if not own_copy() then
    dofile(DISSECTOR)
end
