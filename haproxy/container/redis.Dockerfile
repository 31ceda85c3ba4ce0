# Redis for the compose stack (docker-compose.yml), from Debian's redis-server 7.0: the agents'
# shared state (README "Running several agents"). A cache and counters only: nothing is saved
# to disk, and a restarted Redis starts empty (the agents resynchronise). Build from the
# repository's top directory (docker compose does):
#   docker build -f haproxy/container/redis.Dockerfile -t spoa-demo-redis .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
HEALTHCHECK --interval=2s --timeout=2s --retries=3 CMD ["redis-cli", "-p", "6379", "ping"]
# No password and protected mode off: the server is reachable on the stack's own network only
# (it is not published). Give it an ACL user (and the agents redis.user/password) before
# exposing it anywhere else.
ENTRYPOINT ["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"]
CMD ["--port", "6379", "--bind", "0.0.0.0"]
