-- objects read from a flow: the same object on every read, a response
-- assigned from another flow copied (not shared), header objects that
-- outlive the response object they came from
first = nil

function request(flow)
  local same = flow.request == flow.request and flow.request.headers == flow.request.headers
    and flow.request.headers ~= flow.request.trailers
  flow.request.headers["X-Same"] = same and "yes" or "no"
end

function response(flow)
  if not first then
    first = flow
    return
  end
  -- the second flow: its response goes to the first as a copy
  first.response = flow.response
  flow.response.status_code = 299
  flow.request.headers["X-Mid"] = first.response.status_code .. "/" .. flow.response.status_code
  -- headers of a response object that is then replaced and collected
  local h = flow.response.headers
  flow.response = mitm.response(204, {["X-Made"] = "1"})
  collectgarbage()
  collectgarbage()
  h["X-After-Replace"] = "1"
  -- headers read before a made response is adopted, written after
  local made = mitm.response(203)
  local mh = made.headers
  mh["X-Before"] = "1"
  first.response = made
  made = nil
  collectgarbage()
  collectgarbage()
  mh["X-After-Adopt"] = "1"
  first.response.headers["X-Read-Again"] = first.response == first.response and "same" or "other"
end
