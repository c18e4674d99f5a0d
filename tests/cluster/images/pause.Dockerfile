# registry.k8s.io/pause:3.9, the pod sandbox (containerd's sandbox_image, the
# kubelet's --pod-infra-container-image): tests/cluster/pause.c, static, alone.
# Context (tests/cluster/images.sh): pause, built by `make build/cluster/pause`.
FROM scratch
COPY pause /pause
# As upstream's: nobody's ids; the sandbox needs no privilege of its own.
USER 65535:65535
ENTRYPOINT ["/pause"]
