/* sockwire bench: the physical floor. Round trips and one-way throughput
   between two processes over one connection, in C, with optional pinning.
   usage: pingpong MODE SIZE RTT_COUNT ONEWAY_COUNT CPU_PARENT CPU_CHILD
   MODE: unix-stream | unix-seqpacket | tcp;  CPU -1 = not pinned.
   prints: rtt_us=<mean> p50_us=<p50> p99_us=<p99> msgs_per_s=<n> bytes_per_s=<n> */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}
static void full_send(int fd, const char *b, size_t n) {
  while (n) {
    ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
    if (k <= 0) { perror("send"); exit(1); }
    b += k; n -= (size_t)k;
  }
}
static void full_recv(int fd, char *b, size_t n, int stream) {
  while (n) {
    ssize_t k = recv(fd, b, n, 0);
    if (k <= 0) { perror("recv"); exit(1); }
    if (!stream) return;
    b += k; n -= (size_t)k;
  }
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 7) { fprintf(stderr, "usage: pingpong MODE SIZE RTT ONEWAY CPU_P CPU_C\n"); return 2; }
  const char *mode = argv[1];
  size_t size = (size_t)atol(argv[2]);
  long count = atol(argv[3]), tcount = atol(argv[4]);
  int cpu_parent = atoi(argv[5]), cpu_child = atoi(argv[6]);
  int sv[2], stream = 1, one = 1;
  if (!strcmp(mode, "tcp")) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, (void *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(l, (void *)&a, &al);
    listen(l, 1);
    sv[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(sv[0], (void *)&a, sizeof a)) { perror("connect"); return 1; }
    sv[1] = accept(l, 0, 0);
    close(l);
    setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  } else {
    int t = !strcmp(mode, "unix-seqpacket") ? SOCK_SEQPACKET : SOCK_STREAM;
    stream = t == SOCK_STREAM;
    if (socketpair(AF_UNIX, t, 0, sv)) { perror("socketpair"); return 1; }
  }
  char *buf = malloc(size);
  memset(buf, 'x', size);
  pid_t p = fork();
  if (p == 0) {
    close(sv[0]);
    pin(cpu_child);
    for (long i = 0; i < count; i++) { full_recv(sv[1], buf, size, stream); full_send(sv[1], buf, size); }
    for (long i = 0; i < tcount; i++) full_recv(sv[1], buf, size, stream);
    full_send(sv[1], "k", 1);
    _exit(0);
  }
  close(sv[1]);
  pin(cpu_parent);
  double *lat = malloc(sizeof(double) * (size_t)(count ? count : 1));
  double t0 = now();
  for (long i = 0; i < count; i++) {
    double s = now();
    full_send(sv[0], buf, size);
    full_recv(sv[0], buf, size, stream);
    lat[i] = now() - s;
  }
  double t1 = now();
  double t2 = now();
  for (long i = 0; i < tcount; i++) full_send(sv[0], buf, size);
  char k;
  if (recv(sv[0], &k, 1, 0) != 1) { perror("ack"); return 1; }
  double t3 = now();
  qsort(lat, (size_t)count, sizeof(double), cmp);
  printf("rtt_us=%.3f p50_us=%.3f p99_us=%.3f", count ? (t1 - t0) / count * 1e6 : 0.0,
         count ? lat[count / 2] * 1e6 : 0.0, count ? lat[(count * 99) / 100] * 1e6 : 0.0);
  if (tcount) printf(" msgs_per_s=%.0f bytes_per_s=%.0f", tcount / (t3 - t2), (double)size * tcount / (t3 - t2));
  printf("\n");
  int status;
  wait(&status);
  return 0;
}
