-- websocket hooks: the last message is the current one
function websocket_start(flow)
  flow.metadata.ws_started = true
end

function websocket_message(flow)
  local msgs = flow.websocket.messages
  local m = msgs[#msgs]
  if m.content == "drop" then m:drop() return end
  if m.content == "flag" then m.dropped = true return end
  if m.from_client and m.is_text then
    m.content = string.upper(m.content) .. " #" .. #msgs .. " " .. m.type
  end
  if not m.is_text then
    m.content = m.content .. (m.timestamp > 0 and "+ts" or "-ts")
  end
end

function websocket_end(flow)
  flow.metadata.ws_end = flow.websocket.close_code .. " " .. tostring(flow.websocket.closed_by_client)
    .. " " .. flow.websocket.close_reason
end
