// Emulates a disk that completes one fsync/fdatasync at a time, each taking SLOWSYNC_US
// microseconds (default 3500: the issue measured "about 3.5 ms each on these disks").
// Used by compare-simulate.sh --slow-disk; a measurement aid, never linked into rollover.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
static pthread_mutex_t disk = PTHREAD_MUTEX_INITIALIZER;
static void slow_disk(void) {
  const char *s = getenv("SLOWSYNC_US");
  long us = s ? atol(s) : 3500;
  struct timespec t = { us / 1000000, (us % 1000000) * 1000 };
  pthread_mutex_lock(&disk);
  nanosleep(&t, 0);
  pthread_mutex_unlock(&disk);
}
int fsync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); slow_disk(); return real(fd); }
int fdatasync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); slow_disk(); return real(fd); }
