-- SHAKE/1 for Wireshark and tshark: every field of the request and the answer (SPEC section 2,
-- "Wire protocol SHAKE/1"), outcome and kind names, the CONFIG_STALE flag, requests matched
-- to their answers, and expert info for every request a node would drop.
--
-- Install (either):
--   cp bench/shake.lua ~/.local/lib/wireshark/plugins/      (Wireshark and tshark load it)
--   tshark -X lua_script:bench/shake.lua -r capture.pcapng -V
--
-- Registered on UDP port 7000 (Edit > Preferences > Protocols > SHAKE/1 changes it) and as a
-- heuristic on UDP: any 64-byte payload that starts "SK", version 1, kind SHAKE or RESULT.
-- Filter with `shake`, e.g. `shake.outcome == 2` (RED_PACKET), `shake.user_id == 42`,
-- `shake.drop_reason` (what the node's shake_drops_total{reason} would count).
--
-- Direction: a datagram to the port is a request (the node reads it as one, whatever its
-- kind byte says); one from the port is an answer; elsewhere (found by the heuristic) the
-- kind byte decides.

local shake = Proto("shake", "SHAKE/1")

local PAYLOAD_LEN = 64
local KIND_SHAKE = 0x01
local KIND_RESULT = 0x81
local FLAG_CONFIG_STALE = 0x01

local kinds = { [KIND_SHAKE] = "SHAKE", [KIND_RESULT] = "RESULT" }
local outcomes = {
    [0] = "NOTHING",
    [1] = "GREETING",
    [2] = "RED_PACKET",
    [3] = "THROTTLED",
    [4] = "CLOSED",
    [5] = "DENIED",
    [6] = "REDIRECT",
}
local RED_PACKET, GREETING, REDIRECT = 2, 1, 6

shake.prefs.port = Pref.uint("UDP port", 7000, "The node's UDP port: requests go to it, answers come from it")

local f = shake.fields
f.magic = ProtoField.uint16("shake.magic", "Magic", base.HEX, { [0x534b] = "SK" }, nil, "\"SK\" (0x53 0x4b)")
f.version = ProtoField.uint8("shake.version", "Version", base.DEC)
f.kind = ProtoField.uint8("shake.kind", "Kind", base.HEX, kinds)
f.direction = ProtoField.string("shake.direction", "Direction")
-- Request
f.shakes = ProtoField.uint16("shake.shakes", "Shakes", base.DEC, nil, nil, "Shakes the phone counted since its last request, at least 1")
f.reserved = ProtoField.bytes("shake.reserved", "Reserved", base.SPACE, "Must be 0 (the node ignores it)")
f.user_id = ProtoField.uint64("shake.user_id", "User id", base.DEC)
f.seq = ProtoField.uint32("shake.seq", "Sequence", base.DEC, nil, nil, "The client's sequence number, echoed in the answer")
f.config_version = ProtoField.uint32("shake.config_version", "Config version", base.DEC)
f.client_ts = ProtoField.uint64("shake.client_ts", "Client timestamp", base.DEC, nil, nil, "Opaque to the node, echoed in the answer")
f.token_expiry = ProtoField.uint32("shake.token_expiry", "Token expiry", base.DEC, nil, nil, "Unix seconds")
f.token = ProtoField.uint64("shake.token", "Token", base.HEX, nil, nil, "SipHash-2-4(token_key, user_id || token_expiry)")
f.padding = ProtoField.bytes("shake.padding", "Padding", base.SPACE, "Zeros")
-- Answer
f.outcome = ProtoField.uint8("shake.outcome", "Outcome", base.DEC, outcomes)
f.flags = ProtoField.uint8("shake.flags", "Flags", base.HEX)
f.config_stale = ProtoField.bool("shake.flags.config_stale", "CONFIG_STALE", 8, { "the node's config is newer than the request's", "the request's config is current" }, FLAG_CONFIG_STALE)
f.flags_unknown = ProtoField.uint8("shake.flags.unknown", "Unknown flags", base.HEX, nil, 0xfe)
f.resource_id = ProtoField.uint16("shake.resource_id", "Resource id", base.DEC, nil, nil, "Pre-pushed resource package to show; REDIRECT: the owner node's index")
f.owner_node = ProtoField.uint16("shake.owner_node", "Owner node", base.DEC, nil, nil, "REDIRECT: the index of the node that owns the user (user_id mod node_count)")
f.retry_after_ms = ProtoField.uint32("shake.retry_after_ms", "Retry after (ms)", base.DEC)
f.packet_id = ProtoField.uint64("shake.packet_id", "Packet id", base.DEC)
f.amount_cents = ProtoField.uint32("shake.amount_cents", "Amount (cents)", base.DEC)
f.sponsor_id = ProtoField.uint32("shake.sponsor_id", "Sponsor id", base.DEC)
f.claim_mac = ProtoField.uint64("shake.claim_mac", "Claim MAC", base.HEX, nil, nil, "SipHash-2-4(claim_key, packet_id || user_id || amount_cents || sponsor_id)")
f.round_id = ProtoField.uint32("shake.round_id", "Round id", base.DEC)
-- Derived
f.drop_reason = ProtoField.string("shake.drop_reason", "Node drops it", "The node's drop reason (shake_drops_total{reason})")
f.request_in = ProtoField.framenum("shake.request_in", "Request in", base.NONE, frametype.REQUEST)
f.response_in = ProtoField.framenum("shake.response_in", "Answer in", base.NONE, frametype.RESPONSE)
f.time = ProtoField.relative_time("shake.time", "Time since request")
f.trailing = ProtoField.bytes("shake.trailing", "Past the 64 bytes")

local e = {
    payload_length = ProtoExpert.new("shake.drop.payload_length", "Payload length is not 64", expert.group.MALFORMED, expert.severity.ERROR),
    magic = ProtoExpert.new("shake.drop.magic", "Wrong magic", expert.group.PROTOCOL, expert.severity.ERROR),
    version = ProtoExpert.new("shake.drop.version", "Wrong version", expert.group.PROTOCOL, expert.severity.ERROR),
    kind = ProtoExpert.new("shake.drop.kind", "Wrong kind", expert.group.PROTOCOL, expert.severity.ERROR),
    zero_shakes = ProtoExpert.new("shake.drop.zero_shakes", "shakes = 0", expert.group.PROTOCOL, expert.severity.ERROR),
    source = ProtoExpert.new("shake.drop.source", "A source that never gets an answer", expert.group.SECURITY, expert.severity.WARN),
    reserved = ProtoExpert.new("shake.reserved_not_zero", "Reserved or padding bytes not zero", expert.group.PROTOCOL, expert.severity.NOTE),
    answer = ProtoExpert.new("shake.bad_answer", "Not an answer a node sends", expert.group.PROTOCOL, expert.severity.WARN),
}
shake.experts = { e.payload_length, e.magic, e.version, e.kind, e.zero_shakes, e.source, e.reserved, e.answer }

-- The packet's innermost addresses, for the source rule (SPEC 2: never answer 0.0.0.0/8,
-- loopback, multicast, 240/4 and broadcast, ::, ::1, IPv4-mapped, or a group Ethernet source).
local ip_src = Field.new("ip.src")
local ipv6_src = Field.new("ipv6.src")
local eth_src = Field.new("eth.src")

local function last(extractor)
    local all = { extractor() }
    return all[#all]
end

-- Why the node would refuse to answer this source, or nil.
local function source_problem(pinfo)
    if pinfo.src_port == 0 then
        return "UDP source port 0"
    end
    local eth = last(eth_src)
    if eth and eth.range:range(0, 1):uint() % 2 == 1 then
        return "a group (multicast) Ethernet source"
    end
    -- The innermost IP header is the one the node answers; prefer whichever came last.
    local v4, v6 = last(ip_src), last(ipv6_src)
    if v6 and (not v4 or v6.range:offset() > v4.range:offset()) then
        local b = v6.range:bytes()
        local zero10 = true
        for i = 0, 9 do
            if b:get_index(i) ~= 0 then zero10 = false end
        end
        if b:get_index(0) == 0xff then
            return "a multicast source"
        end
        if zero10 and b:get_index(10) == 0xff and b:get_index(11) == 0xff then
            return "an IPv4-mapped source"
        end
        if zero10 and b:get_index(10) == 0 and b:get_index(11) == 0 and b:get_index(12) == 0
            and b:get_index(13) == 0 and b:get_index(14) == 0 and b:get_index(15) <= 1 then
            return b:get_index(15) == 0 and "the unspecified source ::" or "the loopback source ::1"
        end
    elseif v4 then
        local a = v4.range:range(0, 1):uint()
        if a == 0 then return "a 0.0.0.0/8 source" end
        if a == 127 then return "a loopback source" end
        if a >= 224 and a < 240 then return "a multicast source" end
        if a >= 240 then return "a reserved or broadcast source" end
    end
    return nil
end

-- Requests seen, by user, sequence and client timestamp: what an answer echoes.
local requests, answers = {}, {}

function shake.init()
    requests, answers = {}, {}
end

local function key(tvb)
    return tostring(tvb(8, 8):uint64()) .. "/" .. tvb(16, 4):uint() .. "/" .. tostring(tvb(24, 8):uint64())
end

local function all_zero(range)
    local b = range:bytes()
    for i = 0, b:len() - 1 do
        if b:get_index(i) ~= 0 then return false end
    end
    return true
end

-- Adds `field` over `len` bytes at `at` if the payload has them.
local function add(tree, field, tvb, at, len)
    if tvb:len() >= at + len then
        return tree:add(field, tvb(at, len))
    end
    return nil
end

-- The first reason the node's checks (in their order: source, payload length, magic,
-- version, kind, shakes) would drop a request with; each also gets its expert info.
local function dissect_request(tvb, pinfo, tree)
    local len = tvb:len()
    local reason
    -- The node counts a drop once, under the first check that fails; later ones are told
    -- as such.
    local function drop(name, expert_field, at_item, text)
        if not reason then
            reason = name
            at_item:add_proto_expert_info(expert_field, text .. ": the node drops it (" .. name .. ")")
        else
            at_item:add_proto_expert_info(expert_field, text .. " (also wrong; the node counts the drop as " .. reason .. ")")
        end
    end
    local why = source_problem(pinfo)
    if why then
        drop("source", e.source, tree, "From " .. why .. ", which never gets an answer")
    end
    if len ~= PAYLOAD_LEN then
        drop("payload_length", e.payload_length, tree, "Payload is " .. len .. " bytes, not 64")
    end
    local magic = add(tree, f.magic, tvb, 0, 2)
    if magic and tvb(0, 2):uint() ~= 0x534b then
        drop("magic", e.magic, magic, "Magic is 0x" .. tvb(0, 2):bytes():tohex() .. ", not \"SK\"")
    end
    local version = add(tree, f.version, tvb, 2, 1)
    if version and tvb(2, 1):uint() ~= 1 then
        drop("version", e.version, version, "Version " .. tvb(2, 1):uint() .. ", not 1")
    end
    local kind = add(tree, f.kind, tvb, 3, 1)
    if kind and tvb(3, 1):uint() ~= KIND_SHAKE then
        drop("kind", e.kind, kind, string.format("Kind 0x%02x sent to the node, not SHAKE (0x01)", tvb(3, 1):uint()))
    end
    local shakes = add(tree, f.shakes, tvb, 4, 2)
    if shakes and tvb(4, 2):uint() == 0 then
        drop("zero_shakes", e.zero_shakes, shakes, "shakes = 0, at least 1")
    end
    local r0 = add(tree, f.reserved, tvb, 6, 2)
    add(tree, f.user_id, tvb, 8, 8)
    add(tree, f.seq, tvb, 16, 4)
    local cv = add(tree, f.config_version, tvb, 20, 4)
    if cv then cv:append_text(" (the last the client has)") end
    add(tree, f.client_ts, tvb, 24, 8)
    local expiry = add(tree, f.token_expiry, tvb, 32, 4)
    if expiry then
        expiry:append_text(os.date("! (%Y-%m-%d %H:%M:%S UTC)", tvb(32, 4):uint()))
    end
    local r1 = add(tree, f.reserved, tvb, 36, 4)
    add(tree, f.token, tvb, 40, 8)
    local pad = add(tree, f.padding, tvb, 48, 16)
    for _, it in ipairs({ { r0, 6, 2 }, { r1, 36, 4 }, { pad, 48, 16 } }) do
        if it[1] and not all_zero(tvb(it[2], it[3])) then
            it[1]:add_proto_expert_info(e.reserved, "Not zero (the node ignores it; a later version may not)")
        end
    end
    if len > PAYLOAD_LEN then
        tree:add(f.trailing, tvb(PAYLOAD_LEN))
    end
    if reason then
        tree:add(f.drop_reason, reason):set_generated()
        pinfo.cols.info:set("SHAKE/1 request, dropped by the node (" .. reason .. ")")
        return
    end
    -- A request the node answers: remember it for the answer.
    local k = key(tvb)
    if not pinfo.visited then
        requests[k] = { frame = pinfo.number, time = pinfo.rel_ts }
    end
    local answer = answers[k]
    if answer then
        tree:add(f.response_in, answer):set_generated()
    end
    pinfo.cols.info:set(string.format("SHAKE user=%s seq=%u shakes=%u", tostring(tvb(8, 8):uint64()), tvb(16, 4):uint(), tvb(4, 2):uint()))
end

local function dissect_answer(tvb, pinfo, tree)
    local len = tvb:len()
    if len ~= PAYLOAD_LEN then
        tree:add_proto_expert_info(e.answer, "Payload is " .. len .. " bytes, not 64")
    end
    local magic = add(tree, f.magic, tvb, 0, 2)
    if magic and tvb(0, 2):uint() ~= 0x534b then
        magic:add_proto_expert_info(e.answer, "Magic is not \"SK\"")
    end
    local version = add(tree, f.version, tvb, 2, 1)
    if version and tvb(2, 1):uint() ~= 1 then
        version:add_proto_expert_info(e.answer, "Version is not 1")
    end
    local kind = add(tree, f.kind, tvb, 3, 1)
    if kind and tvb(3, 1):uint() ~= KIND_RESULT then
        kind:add_proto_expert_info(e.answer, "Kind is not RESULT (0x81)")
    end
    local outcome = add(tree, f.outcome, tvb, 4, 1)
    local o = outcome and tvb(4, 1):uint()
    if outcome and not outcomes[o] then
        outcome:add_proto_expert_info(e.answer, "Unknown outcome " .. o)
    end
    local flags = add(tree, f.flags, tvb, 5, 1)
    if flags then
        flags:add(f.config_stale, tvb(5, 1))
        local unknown = flags:add(f.flags_unknown, tvb(5, 1))
        -- Arithmetic, not bit32: Lua 5.2's bit32 is gone from the Lua 5.4 newer Wiresharks use.
        if tvb(5, 1):uint() >= 2 then
            unknown:add_proto_expert_info(e.answer, "Unknown flag bits set")
        end
        if tvb(5, 1):uint() % 2 == FLAG_CONFIG_STALE then
            flags:append_text(" (CONFIG_STALE)")
        end
    end
    if o == REDIRECT then
        add(tree, f.owner_node, tvb, 6, 2)
    else
        add(tree, f.resource_id, tvb, 6, 2)
    end
    add(tree, f.user_id, tvb, 8, 8)
    add(tree, f.seq, tvb, 16, 4)
    add(tree, f.retry_after_ms, tvb, 20, 4)
    add(tree, f.client_ts, tvb, 24, 8)
    add(tree, f.packet_id, tvb, 32, 8)
    local amount = add(tree, f.amount_cents, tvb, 40, 4)
    if amount then
        local c = tvb(40, 4):uint()
        amount:append_text(string.format(" (%d.%02d)", math.floor(c / 100), c % 100))
    end
    add(tree, f.sponsor_id, tvb, 44, 4)
    add(tree, f.claim_mac, tvb, 48, 8)
    local cv = add(tree, f.config_version, tvb, 56, 4)
    if cv then cv:append_text(" (the node's)") end
    add(tree, f.round_id, tvb, 60, 4)
    if len > PAYLOAD_LEN then
        tree:add(f.trailing, tvb(PAYLOAD_LEN))
    end
    if len < PAYLOAD_LEN or not o then
        pinfo.cols.info:set("SHAKE/1 answer, truncated")
        return
    end
    if not outcomes[o] then
        pinfo.cols.info:set("SHAKE/1 answer, unknown outcome " .. o)
        return
    end
    -- What each outcome must and must not carry (as the bundled client checks it).
    local paid = not all_zero(tvb(32, 12)) or not all_zero(tvb(48, 8))
    local sponsor = tvb(44, 4):uint() ~= 0
    if o == RED_PACKET and (all_zero(tvb(32, 8)) or tvb(40, 4):uint() == 0 or not sponsor) then
        outcome:add_proto_expert_info(e.answer, "RED_PACKET without a packet, amount or sponsor")
    elseif o == GREETING and (paid or not sponsor) then
        outcome:add_proto_expert_info(e.answer, "GREETING must carry a sponsor and no packet")
    elseif o ~= RED_PACKET and o ~= GREETING and (paid or sponsor) then
        outcome:add_proto_expert_info(e.answer, "Only RED_PACKET and GREETING carry packet or sponsor fields")
    end
    local k = key(tvb)
    local request = requests[k]
    if request then
        if not pinfo.visited then
            answers[k] = pinfo.number
        end
        tree:add(f.request_in, request.frame):set_generated()
        -- Relative to the first frame: a double keeps nanoseconds there, not in epoch time.
        local d = pinfo.rel_ts - request.time
        local secs = math.floor(d)
        tree:add(f.time, NSTime.new(secs, math.floor((d - secs) * 1e9 + 0.5))):set_generated()
    end
    local info = string.format("RESULT %s user=%s seq=%u", outcomes[o], tostring(tvb(8, 8):uint64()), tvb(16, 4):uint())
    if o == RED_PACKET then
        local c = tvb(40, 4):uint()
        info = info .. string.format(" amount=%d.%02d packet=%s", math.floor(c / 100), c % 100, tostring(tvb(32, 8):uint64()))
    elseif o == REDIRECT then
        info = info .. " owner=" .. tvb(6, 2):uint()
    end
    info = info .. " retry_after=" .. tvb(20, 4):uint() .. "ms"
    pinfo.cols.info:set(info)
end

-- Which way this datagram goes: "request", "answer", or nil (not SHAKE/1 by the kind byte,
-- off the port).
local function direction(tvb, pinfo)
    local port = shake.prefs.port
    local to_node, from_node = pinfo.dst_port == port, pinfo.src_port == port
    if to_node and not from_node then
        return "request"
    elseif from_node and not to_node then
        return "answer"
    end
    if tvb:len() >= 4 then
        local k = tvb(3, 1):uint()
        if k == KIND_SHAKE then return "request" end
        if k == KIND_RESULT then return "answer" end
    end
    return to_node and "request" or nil
end

function shake.dissector(tvb, pinfo, tree)
    local dir = direction(tvb, pinfo)
    if not dir then
        return 0
    end
    pinfo.cols.protocol:set("SHAKE/1")
    local item = tree:add(shake, tvb(), "SHAKE/1 " .. (dir == "request" and "request" or "answer"))
    item:add(f.direction, dir == "request" and "to the node" or "from the node"):set_generated()
    if dir == "request" then
        dissect_request(tvb, pinfo, item)
    else
        dissect_answer(tvb, pinfo, item)
    end
    return tvb:len()
end

-- The heuristic: exactly the 64 bytes, "SK", version 1, kind SHAKE or RESULT. Strict, as a
-- heuristic must not claim other protocols' datagrams (a node's port other than the
-- preference still dissects this way).
local function heuristic(tvb, pinfo, tree)
    if tvb:len() ~= PAYLOAD_LEN or tvb(0, 2):uint() ~= 0x534b or tvb(2, 1):uint() ~= 1 then
        return false
    end
    local k = tvb(3, 1):uint()
    if k ~= KIND_SHAKE and k ~= KIND_RESULT then
        return false
    end
    shake.dissector(tvb, pinfo, tree)
    return true
end

local udp_port = DissectorTable.get("udp.port")
local registered = shake.prefs.port
udp_port:add(registered, shake)
shake:register_heuristic("udp", heuristic)

function shake.prefs_changed()
    if registered ~= shake.prefs.port then
        if registered ~= 0 then udp_port:remove(registered, shake) end
        registered = shake.prefs.port
        if registered ~= 0 then udp_port:add(registered, shake) end
    end
end
