local function dump(t, n)
  local parts = {}
  for i = 1, n do parts[#parts + 1] = tostring(t[i]) end
  local keys = 0
  for k in pairs(t) do keys = keys + 1 end
  return table.concat(parts, ",") .. " #" .. #t .. " keys " .. keys
end
local function seq(n) local r = {} for i = 1, n do r[i] = i end return r end
local out = {}
out[#out + 1] = dump({unpack({1, 2, 3})}, 4)
out[#out + 1] = dump({unpack({1, nil, 3}, 1, 3)}, 4)
out[#out + 1] = dump({1, 2, nil, unpack({4, 5, 6})}, 7)
out[#out + 1] = dump({x = 1, unpack({7, 8})}, 3)
out[#out + 1] = dump({[1] = "h", [3] = "k", unpack({7, 8})}, 4)
out[#out + 1] = dump({nil, nil, unpack({1, 2})}, 5)
out[#out + 1] = dump({unpack({1, 2, nil, nil})}, 5)
local t = {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55, unpack(seq(20))}
out[#out + 1] = #t .. " " .. t[50] .. " " .. t[56] .. " " .. t[75]
local big = {unpack(seq(7000))}
local sum = 0
for i = 1, #big do sum = sum + big[i] end
out[#out + 1] = #big .. " " .. sum
local tail = {unpack(seq(6000)), unpack(seq(6000))}
out[#out + 1] = #tail .. " " .. tail[1] .. " " .. tail[2] .. " " .. tail[6001]
return table.concat(out, " | ")
