-- embed.lua NAME IN OUT: IN as a C byte array NAME (NUL-terminated) and
-- NAME_len in OUT, so that the binary carries the report's template.
local name, inp, out = arg[1], arg[2], arg[3]
local f = assert(io.open(inp, "rb"))
local data = f:read("*a")
f:close()
local parts = {"/* generated from " .. inp .. " by report/embed.lua */\n",
               "static const unsigned char " .. name .. "[] = {\n"}
for i = 1, #data, 16 do
    local row = {}
    for j = i, math.min(i + 15, #data) do
        row[#row + 1] = tostring(data:byte(j))
    end
    parts[#parts + 1] = table.concat(row, ",") .. ",\n"
end
parts[#parts + 1] = "0};\nstatic const size_t " .. name .. "_len = " .. #data .. ";\n"
local o = assert(io.open(out, "wb"))
o:write(table.concat(parts))
o:close()
