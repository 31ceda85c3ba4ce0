# PostgreSQL for the compose stack (docker-compose.yml), from Debian's packages: one server
# with two databases, app1 and app2, each with a table whoami naming it, as haproxy/demo.sh
# makes. Build from the repository's top directory (docker compose does):
#   docker build -f haproxy/container/postgres.Dockerfile -t spoa-demo-postgres .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY haproxy/container/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
# SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart) would wait for every client to leave.
STOPSIGNAL SIGINT
EXPOSE 5432
HEALTHCHECK --interval=2s --timeout=2s --start-period=30s --retries=3 \
    CMD ["pg_isready", "-q", "-h", "127.0.0.1", "-d", "app2"]
ENTRYPOINT ["postgres-entrypoint.sh"]
