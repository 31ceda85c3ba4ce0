#include "hello_command.hpp"

#include "json_text.hpp"
#include "spop_client.hpp"

namespace spoa::cli {

exit_code run_hello(const connection_options& conn, bool json, std::ostream& out) {
    spop_client client(conn.where, conn.timeout);
    const announced_hello h = client.handshake(conn.hello);
    client.disconnect();
    if (json) {
        out << "{\"version\":" << json_string(h.version)
            << ",\"max_frame_size\":" << h.max_frame_size
            << ",\"capabilities\":" << json_string(h.capabilities) << "}\n";
    } else {
        out << "version         " << h.version << '\n'
            << "max-frame-size  " << h.max_frame_size << '\n'
            << "capabilities    " << h.capabilities << '\n';
    }
    return exit_code::ok;
}

}  // namespace spoa::cli
