#pragma once
/// Small helpers shared by the routing tests: a private temporary directory, files in it, and the
/// path of the source tree (for the shipped haproxy/ configurations).

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace spoa::handlers::routing::test {

/// The source tree (set by CMake); $SPOA_TEST_SOURCE_DIR overrides it, to run the contract
/// tests against a modified copy of haproxy/ (e.g. to see them catch a renamed variable).
inline std::filesystem::path source_dir() {
    if (const char* dir = std::getenv("SPOA_TEST_SOURCE_DIR"); dir && *dir) return dir;
    return SPOA_SOURCE_DIR;
}

/// Whole text of a file; throws when it cannot be read.
inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + p.string());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A fresh directory under $TMPDIR, removed with everything in it at destruction.
class temp_dir {
  public:
    temp_dir() {
        std::string templ =
            (std::filesystem::temp_directory_path() / "spoa-handlers-XXXXXX").string();
        if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = templ;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

    /// Writes (replaces) `name` with `text`; returns its full path.
    std::string write(std::string_view name, std::string_view text) const {
        const auto p = path_ / name;
        // Write a sibling and rename it over, as an operator's editor or deploy would: a reader
        // never sees half a file.
        const auto tmp = path_ / (std::string(name) + ".tmp");
        {
            std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
            out << text;
            if (!out) throw std::runtime_error("cannot write " + tmp.string());
        }
        std::filesystem::rename(tmp, p);
        return p.string();
    }

  private:
    std::filesystem::path path_;
};

}  // namespace spoa::handlers::routing::test
