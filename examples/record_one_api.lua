-- record_one_api.lua: proxy everything, record only one API.  The trailing
-- filter expression already selects what -w saves:
--   mitmlua -w api.mitmlua '~d api.example.com & ~u ^https?://[^/]+/v1/'
-- This script does the same from Lua, for rules a filter cannot say: flows
-- that are not wanted are marked, and the filter leaves them out:
--   mitmlua -s examples/record_one_api.lua -w api.mitmlua '!~meta skip'
local wanted = mitm.filter("~u /api/ & !~m OPTIONS")

local function mark(flow)
  if not wanted(flow) then flow.metadata.skip = true end
end

-- failed flows follow the same rule
return { response = mark, error = mark }
