-- wrk script for the HTTP benchmark (bench/http.py): every write carries `depth` pipelined
-- requests (default 16), the standard wrk pipeline.lua approach. wrk parses the returned string
-- to learn how many responses to expect before it writes again, and counts each response.
--   wrk -s bench/http_pipeline.lua URL -- [depth]
init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format()
   end
   req = table.concat(r)
end

request = function()
   return req
end
