# Debian packages, built with `cpack -G DEB` from a Release build:
#   spoa-agent   the spoa-agent binary and the operator's client spoa-cli, its systemd unit,
#                /etc/spoa/routing.yaml and /etc/default/spoa-agent (conffiles), the spoa system
#                account, and the HAProxy configurations and reference control plane as examples;
#   libspoa-dev  headers, static libraries and the CMake package for find_package(spoa).
# Install components: `agent` (the binary and everything below) and `dev` (the install() rules
# of protocol/, agent/, handlers/ and the package configuration).

set(spoa_systemd_dir ${CMAKE_CURRENT_SOURCE_DIR}/haproxy/systemd)
set(spoa_agent_docdir ${CMAKE_INSTALL_DATAROOTDIR}/doc/spoa-agent)

# Files with a fixed place on a Debian system. Their destinations are absolute, so they stay out
# of a plain `cmake --install` (which must not write to /etc of the machine when given a
# --prefix); cpack installs them because it installs component by component.
install(FILES ${spoa_systemd_dir}/spoa-agent.service DESTINATION /lib/systemd/system
        COMPONENT agent EXCLUDE_FROM_ALL)
install(FILES ${spoa_systemd_dir}/spoa-agent.default DESTINATION /etc/default RENAME spoa-agent
        COMPONENT agent EXCLUDE_FROM_ALL)
install(FILES haproxy/routing.example.yaml DESTINATION /etc/spoa RENAME routing.yaml
        COMPONENT agent EXCLUDE_FROM_ALL)

# spoa-cli is defined with the agent (SPOA_BUILD_AGENT); operators get it with the agent.
if(TARGET spoa-cli)
    install(TARGETS spoa-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT agent)
endif()
install(FILES README.md DESTINATION ${spoa_agent_docdir} COMPONENT agent)
install(FILES haproxy/README.md DESTINATION ${spoa_agent_docdir} RENAME README.haproxy.md
        COMPONENT agent)
install(FILES LICENSE DESTINATION ${spoa_agent_docdir} RENAME copyright COMPONENT agent)
install(DIRECTORY haproxy/2.6 haproxy/3.x DESTINATION ${spoa_agent_docdir}/examples/haproxy
        COMPONENT agent)
install(FILES haproxy/spoa-postgres.lua haproxy/postgres-tls.cfg DESTINATION ${spoa_agent_docdir}/examples/haproxy
        COMPONENT agent)
install(FILES haproxy/routing.example.yaml DESTINATION ${spoa_agent_docdir}/examples
        COMPONENT agent)
install(FILES ${spoa_systemd_dir}/haproxy-unix-socket.conf
        DESTINATION ${spoa_agent_docdir}/examples/systemd COMPONENT agent)
install(FILES handlers/control_plane/PROTOCOL.md
        DESTINATION ${spoa_agent_docdir}/examples/control_plane COMPONENT agent)
install(PROGRAMS handlers/control_plane/spoa_control_plane.py
        DESTINATION ${spoa_agent_docdir}/examples/control_plane COMPONENT agent)

set(CPACK_PACKAGE_NAME spoa)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(SPOA_PACKAGE_CONTACT "spoa maintainers <maintainers@spoa.invalid>"
    CACHE STRING "Maintainer field of the Debian packages")
set(CPACK_PACKAGE_CONTACT "${SPOA_PACKAGE_CONTACT}")
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL agent dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # <name>_<version>-<release>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)  # 0644 data, 0755 scripts in control.tar

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME spoa-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION net)
# dpkg-shlibdeps turns the binary's shared libraries into Depends with the versions it needs.
set(CPACK_DEBIAN_AGENT_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")  # postinst creates the spoa account
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS "haproxy, python3-msgpack")
# The project description is the synopsis of both packages (CPack puts it first); these are
# the bodies.
set(CPACK_COMPONENT_AGENT_DESCRIPTION
    "spoa-agent, the routing agent: it answers HAProxy's Stream Processing
Offload Engine over SPOP 2.0 and maps an HTTP Host, a PostgreSQL database,
a TLS SNI or a destination port to a backend endpoint, with a shared cache,
SSRF checks and metrics. Runs as spoa-agent.service under the spoa account.
spoa-cli talks SPOP to an agent as HAProxy does: typed NOTIFYs, the
handshake, quick load checks, and replays of spoa-agent --record files.")
# dpkg keeps an administrator's changes to these files across upgrades.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/deb-agent/conffiles
     "/etc/default/spoa-agent\n/etc/spoa/routing.yaml\n")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_BINARY_DIR}/deb-agent/conffiles
    ${spoa_systemd_dir}/deb/postinst ${spoa_systemd_dir}/deb/prerm ${spoa_systemd_dir}/deb/postrm)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libspoa-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# The libraries are static: what they link is what spoaConfig.cmake looks for in a consumer.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libuv1-dev, libmicrohttpd-dev, libspdlog-dev, libyaml-cpp-dev, libcurl4-openssl-dev | libcurl-dev, libhiredis-dev, pkgconf | pkg-config")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "Development files of the spoa framework: headers, static libraries and
the CMake package (find_package(spoa)) of spoa::protocol, the SPOP 2.0
codec, spoa::agent, a libuv server dispatching SPOE messages to C++
handlers, and spoa::handlers, the routing service of spoa-agent.")

include(CPack)
