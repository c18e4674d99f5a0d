# registry.k8s.io/e2e-test-images/busybox:1.29-4: Debian's busybox-static and
# its applets in /bin (the Conntrack specs run `sh -c` with sleep and nc).
# Context (tests/cluster/images.sh): busybox (the host's /bin/busybox, checked
# to be static).
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /root /tmp /var/spool/mail \
    && chmod 1777 /tmp \
    && printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >/etc/passwd \
    && printf 'root:x:0:\nnobody:x:65534:\n' >/etc/group
CMD ["sh"]
