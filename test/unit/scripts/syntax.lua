function request(flow)
  if then
end
