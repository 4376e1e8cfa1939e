-- websocket.lua: drop the client's "heartbeat" messages, censor a word in
-- what the server sends, and log how each WebSocket connection ended.
local function websocket_message(flow)
  local msgs = flow.websocket.messages
  local m = msgs[#msgs]               -- the last message is the current one
  if m.from_client and m.is_text and m.content == "heartbeat" then
    m:drop()                          -- recorded, but not forwarded
  elseif not m.from_client and m.is_text then
    m.content = (m.content:gsub("secret", "******"))
  end
end

local function websocket_end(flow)
  local ws = flow.websocket
  mitm.log.info(string.format("%s: %d messages, closed by the %s with %d", flow.request.url,
    #ws.messages, ws.closed_by_client and "client" or "server", ws.close_code or 0))
end

return {
  websocket_message = websocket_message,
  websocket_end = websocket_end,
}
