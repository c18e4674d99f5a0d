# registry.k8s.io/e2e-test-images/agnhost:2.43: upstream's layout (its
# test/images/agnhost/Dockerfile) on a Debian slim root instead of Alpine: the
# tools the e2e suite runs inside agnhost pods (sh, bash, nc from
# netcat-openbsd, curl, wget, nslookup and dig, ip, iperf), the agnhost binary
# as entrypoint, the porter's TLS pair, the netexec upload folder and the user
# and group the "user defined in image" specs look for.
# Context (tests/cluster/images.sh): agnhost (checked against SHA256SUMS),
# localhost.crt, localhost.key.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        bash curl wget netcat-openbsd dnsutils iproute2 iperf ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd -g 50000 group-defined-in-image \
    && useradd -u 1000 -g group-defined-in-image -m -s /bin/sh user-defined-in-image \
    && mkdir /uploads
COPY localhost.crt localhost.key agnhost /
RUN ln -s agnhost /agnhost-2
# test-webserver, netexec, nettest, serve-hostname, guestbook.
EXPOSE 80 8080 8081 9376 5000
ENTRYPOINT ["/agnhost"]
CMD ["pause"]
