// SPDX-License-Identifier: Apache-2.0
// The pod sandbox's process (the image registry.k8s.io/pause:3.9 of the
// real-cluster tests, tests/cluster/images.sh): it holds the pod's
// namespaces open, reaps the children that are reparented to it (it is PID 1
// of the pod's PID namespace when the pod shares one), and exits on SIGINT or
// SIGTERM, which is how the runtime stops a sandbox. Linked statically: its
// image holds nothing else.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "3.9-nlproxy"

int main(int argc, char **argv)
{
        sigset_t set;
        siginfo_t info;

        if (argc == 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
                printf("pause %s\n", PAUSE_VERSION);
                return 0;
        }
        if (argc > 1) {
                fprintf(stderr, "usage: pause [-v]\n");
                return 2;
        }
        // Synchronous signal handling: the signals stay blocked and are taken
        // one at a time, so a SIGCHLD that arrives while children are being
        // reaped is never lost and no handler races the loop.
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
                perror("pause: sigprocmask");
                return 1;
        }
        if (getpid() != 1)
                fprintf(stderr, "pause: warning: not PID 1, orphans are not reparented here\n");
        for (;;) {
                int sig = sigwaitinfo(&set, &info);

                if (sig < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("pause: sigwaitinfo");
                        return 1;
                }
                if (sig == SIGCHLD) {
                        // Signals coalesce: one SIGCHLD may stand for several exits.
                        while (waitpid(-1, NULL, WNOHANG) > 0)
                                ;
                        continue;
                }
                fprintf(stderr, "pause: shutting down, got signal %s\n", strsignal(sig));
                return 0;
        }
}
