-- spoa's PostgreSQL actions for HAProxy 2.6 and 3.x (the same Lua API in both).
--
-- HAProxy cannot speak PostgreSQL, and spoa-agent only decides: these two tcp-request actions
-- write the few bytes PostgreSQL clients need to hear from whoever answers port 5432.
--
--   lua.spoa_pg_answer_no  the agent answered an SSLRequest or GSSENCRequest with
--                          txn.route.negotiation: remove the 8-byte request, answer 'N' (no
--                          encryption, go on in plaintext on this connection), so that the
--                          client's next packet (its StartupMessage) can be routed by database.
--   lua.spoa_pg_refuse     send a PostgreSQL ErrorResponse with txn.route.sqlstate and
--                          txn.route.reason, then close: psql prints the reason instead of
--                          "server closed the connection unexpectedly".
--
-- Load it with `lua-load` in the global section; haproxy/*/haproxy.cfg shows the rules.

-- libpq sends at most a GSSENCRequest and then an SSLRequest before its StartupMessage.
local max_negotiations = 2

-- SQLSTATE connection_failure: no decision could be made (agent down, SPOE error, timeout).
local connection_failure = "08006"
-- SQLSTATE protocol_violation: also what PostgreSQL answers a client that sends no whole
-- startup packet in time.
local protocol_violation = "08P01"

-- An ErrorResponse field holds a C string: no NUL byte, and a length that a client's buffer
-- is sure to take.
local max_text = 1000

local function field(code, text)
    text = string.gsub(tostring(text), "%z", "")
    if #text > max_text then text = string.sub(text, 1, max_text) end
    return code .. text .. "\0"
end

-- ErrorResponse ('E', Int32 length including itself, fields, a final zero byte), FATAL.
-- libpq prints the message and the detail, but a failed connection's SQLSTATE only in its
-- verbose mode, which psql cannot set before connecting: the detail names it.
local function error_response(sqlstate, message)
    local body = field("S", "FATAL") .. field("V", "FATAL") .. field("C", sqlstate)
        .. field("M", message) .. field("D", "refused by the routing proxy (SQLSTATE " .. sqlstate .. ")")
        .. "\0"
    return "E" .. string.pack(">I4", #body + 4) .. body
end

-- The SQLSTATE is kept in txn.route.sqlstate for the log line, whoever chose it.
local function refuse(txn, sqlstate, message)
    txn:set_var("txn.route.sqlstate", sqlstate)
    txn.res:send(error_response(sqlstate, message))
    txn:done()
end

core.register_action("spoa_pg_answer_no", {"tcp-req"}, function(txn)
    txn:unset_var("txn.route.negotiation")
    local answered = (txn:get_var("txn.pg.negotiations") or 0) + 1
    if answered > max_negotiations then
        refuse(txn, protocol_violation, "too many encryption requests before the startup packet")
        return
    end
    txn:set_var("txn.pg.negotiations", answered)
    txn.req:remove(0, 8)
    txn.res:send("N")
end)

core.register_action("spoa_pg_refuse", {"tcp-req"}, function(txn)
    if txn:get_var("txn.route.negotiation") then
        refuse(txn, protocol_violation, "an encryption request must wait for its answer")
        return
    end
    local sqlstate = txn:get_var("txn.route.sqlstate")
    local reason = txn:get_var("txn.route.reason")
    if sqlstate then
        refuse(txn, sqlstate, reason or "connection refused")
    elseif txn:get_var("txn.route.error") then
        -- SPOE's set-on-error: the agent was asked and did not answer in time, or is down.
        refuse(txn, connection_failure, "no routing decision (the routing agent did not answer)")
    else
        -- Nothing was asked: the inspect delay ran out before a whole packet arrived.
        refuse(txn, protocol_violation, "incomplete startup packet")
    end
end)
