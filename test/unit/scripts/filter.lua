local m = mitm.filter("~m POST & ~h X-Multi")
function request(flow)
  flow.request.headers["X-Match"] = m(flow) and "yes" or "no"
end
