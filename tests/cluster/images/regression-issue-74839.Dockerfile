# registry.k8s.io/e2e-test-images/regression-issue-74839:1.2: the server of
# the Conntrack spec "should drop INVALID conntrack entries", on the slim root.
# Context (tests/cluster/images.sh): regression-issue-74839 (checked against
# SHA256SUMS).
FROM docker.io/library/debian:bookworm-slim
COPY regression-issue-74839 /regression-issue-74839
ENTRYPOINT ["/regression-issue-74839"]
