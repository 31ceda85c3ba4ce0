#include "recording_file.hpp"

#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <tuple>

#include "cli_error.hpp"
#include "spoa/protocol/recording.hpp"

namespace spoa::cli {
namespace {

using exchange_key = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>;

}  // namespace

recording_contents parse_recording(protocol::bytes_view file) {
    if (!protocol::has_recording_magic(file)) {
        throw std::invalid_argument("not a spoa-agent recording (no SPOAREC magic)");
    }
    protocol::bytes_view rest = file.subspan(protocol::recording_magic.size());
    recording_contents out;
    std::vector<recorded_exchange> pending;
    std::multimap<exchange_key, std::size_t> waiting;  // key -> index into `pending`
    std::vector<bool> answered;
    while (!rest.empty()) {
        protocol::record r;
        const auto res = protocol::decode_record(rest, r);
        if (res.status == protocol::decode_status::need_more) {
            out.truncated = true;
            break;
        }
        if (res.status == protocol::decode_status::error) {
            throw std::invalid_argument("bad record at byte " +
                                        std::to_string(file.size() - rest.size()) + ": " +
                                        std::string(protocol::to_string(res.err)));
        }
        rest = rest.subspan(res.size);
        const auto& h = r.header;
        const exchange_key key{h.connection_id, h.stream_id, h.frame_id};
        if (h.kind == protocol::record_kind::notify) {
            waiting.emplace(key, pending.size());
            pending.push_back({h.connection_id,
                               h.stream_id,
                               h.frame_id,
                               {r.payload.begin(), r.payload.end()},
                               {}});
            answered.push_back(false);
            continue;
        }
        // multimap keeps equal keys in insertion order: the first one is the earliest NOTIFY.
        const auto it = waiting.find(key);
        if (it == waiting.end()) {
            ++out.orphan_acks;
            continue;
        }
        pending[it->second].ack.assign(r.payload.begin(), r.payload.end());
        answered[it->second] = true;
        waiting.erase(it);
    }
    for (std::size_t i = 0; i < pending.size(); ++i) {
        if (answered[i]) {
            out.exchanges.push_back(std::move(pending[i]));
        } else {
            ++out.unanswered;
        }
    }
    return out;
}

recording_contents read_recording(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw cli_error(exit_code::bad_file, "cannot open " + path);
    const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in),
                                          std::istreambuf_iterator<char>()};
    try {
        return parse_recording({bytes.data(), bytes.size()});
    } catch (const std::invalid_argument& e) {
        throw cli_error(exit_code::bad_file, path + ": " + e.what());
    }
}

}  // namespace spoa::cli
