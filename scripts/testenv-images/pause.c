/* The pod sandbox's pause process for the test cluster: it holds the pod's namespaces,
 * exits on SIGINT/SIGTERM and reaps orphaned children. Built with gcc -static, so the
 * pause image is one file. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction act = {0};
  act.sa_handler = stop;
  sigaction(SIGINT, &act, NULL);
  sigaction(SIGTERM, &act, NULL);
  act.sa_handler = reap;
  act.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &act, NULL);
  for (;;) pause();
  return 1;
}
