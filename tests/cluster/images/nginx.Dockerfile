# registry.k8s.io/e2e-test-images/nginx:1.14-4 (EndpointSlice specs, outside
# the default focus): Debian's nginx serving its default page on port 80 in
# the foreground, logs to the container's output. Built only when asked
# (IMAGES_WANT, tests/cluster/images.sh).
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
