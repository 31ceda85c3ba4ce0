# The Python services of the compose stack (docker-compose.yml): the reference control plane
# and the demo backends (demo_services.py). Debian packages only. Build from the repository's
# top directory (docker compose does):
#   docker build -f haproxy/container/demo.Dockerfile -t spoa-demo .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-msgpack \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system demo \
 && useradd --system --gid demo --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin demo \
 && mkdir -p /run/control-plane \
 && chown demo:demo /run/control-plane
COPY handlers/control_plane/spoa_control_plane.py haproxy/container/demo_services.py /opt/spoa/
USER demo
# No output buffering: service logs reach `docker compose logs` as they happen.
ENV PYTHONUNBUFFERED=1
CMD ["/usr/bin/python3", "/opt/spoa/demo_services.py"]
