/* stamp START END SECONDS: the command of `python -m stress up`'s stamped rounds (stress/up.py).
 * Writes the wall clock (seconds since the epoch, microseconds) to START as soon as it runs,
 * sleeps SECONDS, writes the clock to END, exits 0. Compiled by the harness (static if it
 * can): it starts as fast as `sleep` itself, where `bash -c 'echo $EPOCHREALTIME > ...'`
 * spent ~1 ms of CPU starting bash before its stamp. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int stamp(const char *path) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    FILE *file = fopen(path, "w");
    if (file == NULL) return 1;
    fprintf(file, "%lld.%06ld\n", (long long)now.tv_sec, now.tv_nsec / 1000);
    return fclose(file) != 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: stamp START END SECONDS\n");
        return 2;
    }
    if (stamp(argv[1])) return 1;
    double seconds = atof(argv[3]);
    struct timespec pause = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    while (nanosleep(&pause, &pause) != 0) {
    }
    return stamp(argv[2]);
}
