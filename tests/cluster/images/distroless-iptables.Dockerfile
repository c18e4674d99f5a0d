# registry.k8s.io/build-image/distroless-iptables:v0.1.2: what the KubeProxy
# spec "should set TCP CLOSE_WAIT timeout" runs in it (privileged, host network):
# `sleep 600`, then `sh -c "conntrack -L ... | grep ..."` through kubectl exec.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends conntrack \
    && rm -rf /var/lib/apt/lists/*
