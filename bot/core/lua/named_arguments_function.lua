-- Library: the arguments of a script called with names (Lua.call in bot/core/scripting.py). KEYS hold the
-- keys; ARGV[1] is one JSON object: {script, keys = [the name of each of KEYS, in order], args = {name:
-- value}}. `named_arguments(key_names, arg_names)` returns two tables, keys and arguments by name. The
-- script declares every name it takes: a declared name not given (or given null) and a name given but
-- not declared are errors before the script writes anything, and reading a name not declared is one
-- too. Each error names the script and the name: a misspelt name never reads as nil.
-- (The helpers are made once, when the script is loaded, not on every call: a call per event.)
local function named_by(script, kind, declared, given)
  local found = {}
  for _, name in ipairs(declared) do
    local value = given[name]
    if value == nil or value == cjson.null then error(script .. ': ' .. kind .. ' missing: ' .. name) end
    found[name] = value
  end
  for name in pairs(given) do
    if found[name] == nil then error(script .. ': ' .. kind .. ' not declared: ' .. tostring(name)) end
  end
  return setmetatable(found, {
    __index = function(_, name) error(script .. ': ' .. kind .. ' not declared: ' .. tostring(name)) end,
  })
end
local function named_arguments(key_names, arg_names)
  local call = cjson.decode(ARGV[1])
  local script = tostring(call.script)
  local keys = {}
  for i, name in ipairs(call.keys) do keys[name] = KEYS[i] end
  return named_by(script, 'key', key_names, keys), named_by(script, 'argument', arg_names, call.args)
end
